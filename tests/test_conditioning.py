"""A1111-style prompt encoding on tiny random CLIP encoders with the real tokenizer."""

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from webui.generation.conditioning import Conditioning, count_tokens, encode_prompts, tokenize_prompt

BOS, EOS = 49406, 49407


def clip_config(hidden, projection=16):
    return CLIPTextConfig(
        vocab_size=49408, max_position_embeddings=77, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=2, num_attention_heads=4, projection_dim=projection,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS,
    )


def text_encoder(model_class, hidden):
    """Random encoder; LayerNorms get non-trivial scale/bias like trained CLIP.

    With default init (weight 1, bias 0) every output vector has mean ~0, so the
    mean A1111's weighting restores would be noise.
    """
    model = model_class(clip_config(hidden)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.3, 0.1)
    return model


def tiny_unet(cross_dim, sdxl=False):
    extra = dict(addition_embed_type="text_time", addition_time_embed_dim=4,
                 projection_class_embeddings_input_dim=6 * 4 + 16) if sdxl else {}
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=4, norm_num_groups=8, **extra,
    )


def tiny_vae():
    return AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=8)


@pytest.fixture(scope="module")
def sd_pipe():
    torch.manual_seed(0)
    return StableDiffusionPipeline(
        vae=tiny_vae(), text_encoder=text_encoder(CLIPTextModel, 32),
        tokenizer=CLIPTokenizer.from_pretrained("configs/tokenizers/clip"), unet=tiny_unet(32),
        scheduler=EulerDiscreteScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


@pytest.fixture(scope="module")
def sdxl_pipe():
    torch.manual_seed(1)
    return StableDiffusionXLPipeline(
        vae=tiny_vae(), text_encoder=text_encoder(CLIPTextModel, 32),
        text_encoder_2=text_encoder(CLIPTextModelWithProjection, 48),
        tokenizer=CLIPTokenizer.from_pretrained("configs/tokenizers/clip"),
        tokenizer_2=CLIPTokenizer.from_pretrained("configs/tokenizers/clip-pad-bang"),
        unet=tiny_unet(80, sdxl=True), scheduler=EulerDiscreteScheduler(),
    )


def words(n, word="cat"):
    return " ".join([word] * n)


def plain_hidden(encoder, ids, layer=-1, norm=True):
    """Reference encoding of one 77-token chunk, straight from the encoder."""
    with torch.no_grad():
        out = encoder(torch.tensor([ids]), output_hidden_states=True)
    z = out.hidden_states[layer]
    return getattr(encoder, "text_model", encoder).final_layer_norm(z) if norm else z


# --- chunking -----------------------------------------------------------------------


@pytest.mark.parametrize("n, n_chunks", [(0, 1), (5, 1), (75, 1), (76, 2), (150, 2), (200, 3)])
def test_chunk_count_and_layout(sd_pipe, n, n_chunks):
    chunks, count = tokenize_prompt(sd_pipe.tokenizer, words(n))
    assert len(chunks) == n_chunks and count == n
    for chunk in chunks:
        assert len(chunk.tokens) == len(chunk.weights) == 77
        assert chunk.tokens[0] == BOS and chunk.tokens[-1] == EOS
    assert sum(t == 2368 for c in chunks for t in c.tokens) == n  # "cat</w>" is token 2368
    cond = encode_prompts(sd_pipe, words(n), "")
    assert cond.prompt_embeds.shape == cond.negative_prompt_embeds.shape == (1, 77 * n_chunks, 32)


def test_break_starts_a_new_chunk(sd_pipe):
    chunks, count = tokenize_prompt(sd_pipe.tokenizer, "cat BREAK dog")
    assert len(chunks) == 2 and count == 76
    assert chunks[0].tokens[:3] == [BOS, 2368, EOS] and chunks[1].tokens[1] == 1929  # dog
    assert len(tokenize_prompt(sd_pipe.tokenizer, "cat BREAK")[0]) == 1
    assert len(tokenize_prompt(sd_pipe.tokenizer, "cat BREAK BREAK dog")[0]) == 3
    chunks, count = tokenize_prompt(sd_pipe.tokenizer, "BREAK")
    assert len(chunks) == 1 and count == 75 and chunks[0].tokens == [BOS] + [EOS] * 76


def test_comma_backtrack_moves_the_boundary(sd_pipe):
    prompt = f"{words(70)}, (dog:1.5) {words(9, 'dog')}"  # comma at 70, dogs at 71..80
    chunks, _ = tokenize_prompt(sd_pipe.tokenizer, prompt, comma_backtrack=20)
    assert chunks[0].tokens[71] == 267 and chunks[0].tokens[72:] == [EOS] * 5  # cut after the comma
    assert chunks[1].tokens[1:11] == [1929] * 10 and chunks[1].weights[1] == 1.5
    chunks, _ = tokenize_prompt(sd_pipe.tokenizer, prompt, comma_backtrack=0)
    assert chunks[0].tokens[72:76] == [1929] * 4 and chunks[1].tokens[1:7] == [1929] * 6
    chunks, _ = tokenize_prompt(sd_pipe.tokenizer, prompt, comma_backtrack=4)  # comma 5 back: too far
    assert chunks[0].tokens[72:76] == [1929] * 4


def test_count_tokens_like_a1111(sd_pipe):
    tok = sd_pipe.tokenizer
    assert count_tokens(tok, "") == (0, 75)
    assert count_tokens(tok, words(12)) == (12, 75)
    assert count_tokens(tok, words(80)) == (80, 150)
    assert count_tokens(tok, "cat BREAK dog") == (76, 150)
    # the longest text of the editing schedule counts
    assert count_tokens(tok, f"[{words(80)}:cat:0.5]", steps=10) == (80, 150)


# --- encoding, SD 1.x ---------------------------------------------------------------


def test_unweighted_equals_diffusers_encode_prompt(sd_pipe):
    ours = encode_prompts(sd_pipe, "a photo of a cat, best quality", "blurry, lowres")
    ref, ref_neg = sd_pipe.encode_prompt("a photo of a cat, best quality", "cpu", 1, True, "blurry, lowres")
    torch.testing.assert_close(ours.prompt_embeds, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.negative_prompt_embeds, ref_neg, rtol=0, atol=1e-6)
    assert ours.pooled_prompt_embeds is None and ours.negative_pooled_prompt_embeds is None
    # (diffusers 0.42's own clip_skip path reads text_encoder.text_model, which
    # transformers 5's CLIPTextModel no longer has; clip skip is checked directly below.)


def test_weight_scales_its_tokens_and_restores_the_mean(sd_pipe):
    plain = encode_prompts(sd_pipe, "a cat photo", "").prompt_embeds
    weighted = encode_prompts(sd_pipe, "a (cat:1.5) photo", "").prompt_embeds
    # same tokens, so the only difference is the weighting: z * w * (mean / new mean)
    ratio = weighted / plain
    scale = ratio[0, 0].mean()
    torch.testing.assert_close(ratio[0, 2], torch.full_like(ratio[0, 2], 1.5 * scale), rtol=1e-4, atol=1e-4)
    for position in (0, 1, 3, 4, 76):
        torch.testing.assert_close(ratio[0, position], torch.full_like(ratio[0, 2], scale), rtol=1e-4, atol=1e-4)
    assert weighted[0, 2].norm() / weighted[0, 1].norm() > plain[0, 2].norm() / plain[0, 1].norm()
    torch.testing.assert_close(weighted.mean(), plain.mean(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(weighted, plain)


def test_unweighted_chunk_is_untouched_even_with_zero_mean():
    torch.manual_seed(3)
    encoder = CLIPTextModel(clip_config(32)).eval()  # default LayerNorm: output means near 0
    tokenizer = CLIPTokenizer.from_pretrained("configs/tokenizers/clip")

    class Pipe:
        pass

    pipe = Pipe()
    pipe.tokenizer, pipe.text_encoder = tokenizer, encoder
    ids = tokenizer("a cat", padding="max_length", max_length=77).input_ids
    ours = encode_prompts(pipe, "a cat", "").prompt_embeds
    torch.testing.assert_close(ours, plain_hidden(encoder, ids), rtol=0, atol=0)


def test_emphasis_modes(sd_pipe):
    plain = encode_prompts(sd_pipe, "a cat photo", "").prompt_embeds
    no_norm = encode_prompts(sd_pipe, "a (cat:1.5) photo", "", emphasis="No norm").prompt_embeds
    torch.testing.assert_close(no_norm[0, 2], plain[0, 2] * 1.5)
    torch.testing.assert_close(no_norm[0, 3], plain[0, 3])
    ignored = encode_prompts(sd_pipe, "a (cat:1.5) photo", "", emphasis="Ignore").prompt_embeds
    torch.testing.assert_close(ignored, plain)
    literal = encode_prompts(sd_pipe, "a (cat:1.5) photo", "", emphasis="None").prompt_embeds
    assert not torch.allclose(literal, plain)  # brackets encoded as text
    with pytest.raises(ValueError, match="emphasis"):
        encode_prompts(sd_pipe, "a", "", emphasis="Loud")


def test_clip_skip_two_is_normed_penultimate_layer(sd_pipe):
    ids = sd_pipe.tokenizer("a cat", padding="max_length", max_length=77).input_ids
    skip1 = encode_prompts(sd_pipe, "a cat", "", clip_skip=1).prompt_embeds
    skip2 = encode_prompts(sd_pipe, "a cat", "", clip_skip=2).prompt_embeds
    assert not torch.allclose(skip1, skip2)
    torch.testing.assert_close(skip2, plain_hidden(sd_pipe.text_encoder, ids, layer=-2), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="clip skip"):
        encode_prompts(sd_pipe, "a", "", clip_skip=3)


def test_shorter_side_is_padded_with_empty_chunks(sd_pipe):
    empty = encode_prompts(sd_pipe, "", "").prompt_embeds
    blurry = encode_prompts(sd_pipe, "blurry", "").prompt_embeds
    cond = encode_prompts(sd_pipe, words(200), "blurry")
    assert cond.negative_prompt_embeds.shape == cond.prompt_embeds.shape == (1, 231, 32)
    torch.testing.assert_close(cond.negative_prompt_embeds[:, :77], blurry, rtol=0, atol=1e-6)
    torch.testing.assert_close(cond.negative_prompt_embeds[:, 77:154], empty, rtol=0, atol=1e-6)
    torch.testing.assert_close(cond.negative_prompt_embeds[:, 154:], empty, rtol=0, atol=1e-6)
    flipped = encode_prompts(sd_pipe, "blurry", words(100))
    assert flipped.prompt_embeds.shape == flipped.negative_prompt_embeds.shape == (1, 154, 32)
    torch.testing.assert_close(flipped.prompt_embeds[:, 77:], empty, rtol=0, atol=1e-6)


def test_steps_resolves_prompt_editing_to_the_final_text(sd_pipe):
    dog = encode_prompts(sd_pipe, "a dog", "").prompt_embeds
    edited = encode_prompts(sd_pipe, "a [cat:dog:0.5]", "", steps=10).prompt_embeds
    torch.testing.assert_close(edited, dog)


def test_token_expander_seam(sd_pipe):
    dog = encode_prompts(sd_pipe, "a dog", "").prompt_embeds
    swap = encode_prompts(sd_pipe, "a cat", "", expand_tokens=lambda ids: [1929 if t == 2368 else t for t in ids])
    torch.testing.assert_close(swap.prompt_embeds, dog)


def test_pipeline_accepts_the_kwargs(sd_pipe):
    cond = encode_prompts(sd_pipe, words(100) + ", (red:1.2)", "blurry")
    assert set(cond.as_pipeline_kwargs()) == {"prompt_embeds", "negative_prompt_embeds"}
    out = sd_pipe(**cond.as_pipeline_kwargs(), num_inference_steps=1, height=16, width=16,
                  num_images_per_prompt=2, output_type="latent", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 4, 16, 16) and torch.isfinite(out.images).all()


# --- SDXL ---------------------------------------------------------------------------


def test_sdxl_concatenates_both_encoders(sdxl_pipe):
    cond = encode_prompts(sdxl_pipe, "a photo of a cat", "blurry")
    assert cond.prompt_embeds.shape == cond.negative_prompt_embeds.shape == (1, 77, 80)
    assert cond.pooled_prompt_embeds.shape == cond.negative_pooled_prompt_embeds.shape == (1, 16)
    ref = sdxl_pipe.encode_prompt("a photo of a cat", device="cpu", num_images_per_prompt=1,
                                  do_classifier_free_guidance=True, negative_prompt="blurry")
    for ours, theirs in zip((cond.prompt_embeds, cond.negative_prompt_embeds,
                             cond.pooled_prompt_embeds, cond.negative_pooled_prompt_embeds), ref):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # clip skip does not apply to SDXL (A1111 default)
    torch.testing.assert_close(encode_prompts(sdxl_pipe, "a photo of a cat", "blurry", clip_skip=2).prompt_embeds,
                               cond.prompt_embeds)


def test_sdxl_long_prompt_pools_first_chunk_and_pads_with_bang(sdxl_pipe):
    cond = encode_prompts(sdxl_pipe, words(100), "")
    assert cond.prompt_embeds.shape == (1, 154, 80)
    first = [BOS] + [2368] * 75 + [EOS]
    with torch.no_grad():
        pooled = sdxl_pipe.text_encoder_2(torch.tensor([first])).text_embeds
    torch.testing.assert_close(cond.pooled_prompt_embeds, pooled, rtol=0, atol=1e-6)
    # second chunk: 25 cats, EOS, then "!" (id 0) for the second encoder only
    second = [BOS] + [2368] * 25 + [EOS] + [0] * 50
    expected = plain_hidden(sdxl_pipe.text_encoder_2, second, layer=-2, norm=False)
    torch.testing.assert_close(cond.prompt_embeds[:, 77:, 32:], expected, rtol=0, atol=1e-6)
    # empty negative is zeros, as in A1111
    assert cond.negative_prompt_embeds.shape == (1, 154, 80) and not cond.negative_prompt_embeds.any()
    assert not cond.negative_pooled_prompt_embeds.any()


def test_sdxl_pipeline_accepts_the_kwargs(sdxl_pipe):
    cond = encode_prompts(sdxl_pipe, "a (cat:1.3) BREAK in a hat", "blurry")
    assert isinstance(cond, Conditioning) and cond.prompt_embeds.shape == (1, 154, 80)
    assert set(cond.as_pipeline_kwargs()) == {"prompt_embeds", "negative_prompt_embeds",
                                              "pooled_prompt_embeds", "negative_pooled_prompt_embeds"}
    out = sdxl_pipe(**cond.as_pipeline_kwargs(), num_inference_steps=1, height=16, width=16,
                    output_type="latent", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 4, 16, 16) and torch.isfinite(out.images).all()


def test_refiner_uses_second_encoder_only(sdxl_pipe):
    class Refiner:  # the attributes a StableDiffusionXLImg2ImgPipeline refiner has
        tokenizer = text_encoder = None
        tokenizer_2 = sdxl_pipe.tokenizer_2
        text_encoder_2 = sdxl_pipe.text_encoder_2

    cond = encode_prompts(Refiner(), "a cat", "blurry")
    assert cond.prompt_embeds.shape == (1, 77, 48) and cond.pooled_prompt_embeds.shape == (1, 16)
    full = encode_prompts(sdxl_pipe, "a cat", "blurry")
    torch.testing.assert_close(cond.prompt_embeds, full.prompt_embeds[..., 32:])
