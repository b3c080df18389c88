"""Textual-inversion embeddings: every file layout, fit/skip per model, and encoding that equals the
words whose token vectors an embedding holds."""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from tests.kit import build_pipeline
from webui.generation.conditioning import encode_prompts, tokenize_prompt
from webui.models.errors import ModelLoadError
from webui.models.networks.embeddings import EmbeddingDatabase, embedding_from_data, fits
from webui.models.networks.files import NetworkFolder, SectionedHashCache


@pytest.fixture(scope="module")
def pipes():
    return {arch: build_pipeline(arch) for arch in ("sd15", "sdxl")}


def token_rows(encoder, tokenizer, words: str) -> torch.Tensor:
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    table = getattr(encoder, "text_model", encoder).embeddings.token_embedding.weight
    return table[ids].detach().clone()


def database(folder, tmp_path) -> EmbeddingDatabase:
    cache = SectionedHashCache(tmp_path / "cache.json")
    return EmbeddingDatabase(NetworkFolder("embedding", [folder], (".pt", ".bin", ".safetensors"), cache))


def write_all_layouts(folder, pipes):
    """One file per layout A1111 reads, each holding the token vectors of two words."""
    sd = pipes["sd15"]
    xl = pipes["sdxl"]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": token_rows(sd.text_encoder, sd.tokenizer, "red car")},
                "name": "a1111style", "step": 1500, "sd_checkpoint": "abcdef12", "sd_checkpoint_name": "v1-5"},
               folder / "a1111style.pt")
    save_file({"emb_params": token_rows(sd.text_encoder, sd.tokenizer, "blue sky")}, str(folder / "safe-emb.safetensors"))
    (folder / "concepts").mkdir(exist_ok=True)
    torch.save({"<cat-toy>": token_rows(sd.text_encoder, sd.tokenizer, "green")[0]}, folder / "concepts" / "learned_embeds.bin")
    save_file({"clip_l": token_rows(xl.text_encoder, xl.tokenizer, "red car"),
               "clip_g": token_rows(xl.text_encoder_2, xl.tokenizer_2, "red car")}, str(folder / "xl-emb.safetensors"))


def test_layouts_load_and_split_by_model(pipes, tmp_path):
    folder = tmp_path / "embeddings"
    write_all_layouts(folder, pipes)
    db = database(folder, tmp_path)
    loaded, skipped = db.split(pipes["sd15"])
    assert sorted(loaded) == ["a1111style", "learned_embeds", "safe-emb"] and sorted(skipped) == ["xl-emb"]
    assert loaded["a1111style"].api_dict() == {"step": 1500, "sd_checkpoint": "abcdef12", "sd_checkpoint_name": "v1-5",
                                               "shape": 32, "vectors": 2}
    assert loaded["learned_embeds"].count == 1
    loaded, skipped = db.split(pipes["sdxl"])
    assert list(loaded) == ["xl-emb"] and loaded["xl-emb"].shape == 32 + 64
    assert sorted(skipped) == ["a1111style", "learned_embeds", "safe-emb"]


def test_bad_files_are_listed_as_failed_not_fatal(pipes, tmp_path):
    folder = tmp_path / "embeddings"
    write_all_layouts(folder, pipes)
    (folder / "truncated.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{")

    class Payload:
        def __reduce__(self):
            return (print, ("this ran",))

    with open(folder / "evil.pt", "wb") as fh:
        pickle.dump({"string_to_param": {"*": Payload()}}, fh)
    db = database(folder, tmp_path)
    loaded, _ = db.split(pipes["sd15"])
    assert "safe-emb" in loaded
    assert "truncated" in db.failed["truncated"] and "refused" in db.failed["evil"]


def test_an_embedding_encodes_like_the_words_it_holds(pipes, tmp_path):
    folder = tmp_path / "embeddings"
    write_all_layouts(folder, pipes)
    db = database(folder, tmp_path)
    for arch, name in (("sd15", "a1111style"), ("sdxl", "xl-emb")):
        pipe = pipes[arch]
        lookup = db.lookup(pipe)
        with_emb = encode_prompts(pipe, f"a (photo of {name}:1.2), sunny", f"ugly {name}", embeddings=lookup)
        words = encode_prompts(pipe, "a (photo of red car:1.2), sunny", "ugly red car")
        assert torch.allclose(with_emb.prompt_embeds, words.prompt_embeds, atol=1e-6), arch
        assert torch.allclose(with_emb.negative_prompt_embeds, words.negative_prompt_embeds, atol=1e-6), arch
        if arch == "sdxl":
            assert torch.allclose(with_emb.pooled_prompt_embeds, words.pooled_prompt_embeds, atol=1e-6)
        assert list(lookup.used) == [name]
        other = encode_prompts(pipe, "a (photo of red bus:1.2), sunny", "ugly red car")
        assert not torch.allclose(other.prompt_embeds, words.prompt_embeds)  # the comparison can fail


def test_an_embedding_is_never_split_across_chunks(pipes, tmp_path):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    pipe = pipes["sd15"]
    save_file({"emb_params": torch.randn(5, 32)}, str(folder / "fivevec.safetensors"))
    lookup = database(folder, tmp_path).lookup(pipe)
    prompt = " ".join(["cat"] * 73) + " fivevec"
    chunks, count = tokenize_prompt(pipe.tokenizer, prompt, comma_backtrack=0, expand_tokens=lookup.expander(pipe.tokenizer))
    assert len(chunks) == 2 and count == 75 + 5
    first, second = chunks[0].tokens[1:76], chunks[1].tokens[1:76]
    assert all(t < 1 << 30 for t in first)  # the first chunk is all cats, padded
    assert sum(t >= 1 << 30 for t in second) == 5


def test_unknown_layout_is_refused_with_its_keys():
    with pytest.raises(ModelLoadError, match="not a textual-inversion embedding"):
        embedding_from_data({"a": torch.zeros(2), "b": torch.zeros(2)}, "two")
    emb = embedding_from_data({"clip_l": torch.zeros(1, 768), "clip_g": torch.zeros(1, 1280)}, "xl")
    assert fits(emb, [768, 1280], True) and not fits(emb, [768], False) and not fits(emb, [1024], False)


def test_token_counter_skips_network_tags_and_counts_embedding_vectors(pipes, tmp_path):
    from webui.generation.conditioning import count_tokens

    folder = tmp_path / "embeddings"
    folder.mkdir()
    pipe = pipes["sd15"]
    save_file({"emb_params": torch.randn(5, 32)}, str(folder / "fivevec.safetensors"))
    lookup = database(folder, tmp_path).lookup(pipe)
    assert count_tokens(pipe.tokenizer, "a cat <lora:some-style:0.8>") == (2, 75)
    assert count_tokens(pipe.tokenizer, "a fivevec", expand_tokens=lookup.expander(pipe.tokenizer)) == (6, 75)
