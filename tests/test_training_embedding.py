"""Textual inversion: create (A1111 init + format), train a few steps through the queue, samples, bad input."""
import pytest
import torch

from webui.training.embedding import (EmbeddingError, VectorHook, initial_vectors, load_embedding,
                                      with_placeholders)
from webui.training.embedding_run import EmbeddingSettings
from webui.training.schedules import a1111_multiplier, parse_a1111_rate
from webui.training.settings import SettingsError


def test_create_embedding_uses_init_text_and_a1111_layout(app_context):
    ctx = app_context
    path = ctx.training.create_embedding("emb-init", "red circle", 3)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}
    assert raw["name"] == "emb-init" and raw["step"] == 0 and raw["sd_checkpoint_name"] == "tiny-sd15"
    vec = raw["string_to_param"]["*"]
    pipe = ctx.models.current().pipe
    table = pipe.text_encoder.get_input_embeddings().weight
    red, circle = pipe.tokenizer("red circle", add_special_tokens=False).input_ids
    # A1111 spreads the init tokens over the vectors: 2 tokens over 3 vectors -> red, red, circle.
    assert torch.equal(vec[0], table[red]) and torch.equal(vec[1], table[red]) and torch.equal(vec[2], table[circle])
    assert torch.count_nonzero(ctx.training.create_embedding("emb-zero", "", 2, overwrite=True) and
                               load_embedding(ctx.paths.embeddings_dir / "emb-zero.pt").vectors) == 0
    with pytest.raises(EmbeddingError, match="already exists"):
        ctx.training.create_embedding("emb-init", "blue", 1)
    with pytest.raises(EmbeddingError, match="from 1 to 75"):
        ctx.training.create_embedding("emb-bad", "x", 0)


def test_vector_hook_replaces_placeholders_and_keeps_prompts_without_them(app_context):
    pipe = app_context.models.current().pipe
    vec = torch.randn(2, pipe.text_encoder.config.hidden_size)
    hook = VectorHook(pipe.text_encoder, vec, pipe.tokenizer.bos_token_id)
    text = with_placeholders("a photo of my-emb, red", "my-emb", 2)
    assert text.count("<|startoftext|>") == 2 and "my-emb" not in text
    ids = pipe.tokenizer([text, "a photo of x, red"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    layer = pipe.text_encoder.get_input_embeddings()
    with torch.no_grad():
        plain = layer(ids)
        with hook.installed():
            hooked = layer(ids)
    where = (ids[0] == pipe.tokenizer.bos_token_id).nonzero().flatten().tolist()
    assert len(where) == 3 and where[0] == 0
    assert torch.equal(hooked[0, where[1]], vec[0]) and torch.equal(hooked[0, where[2]], vec[1])
    assert torch.equal(hooked[0, 0], plain[0, 0]) and torch.equal(hooked[1], plain[1])


def test_train_embedding_job_changes_vectors_saves_every_n_and_samples(app_context, train_folder):
    ctx = app_context
    ctx.training.create_embedding("emb-train", "shape", 2, overwrite=True)
    before = load_embedding(ctx.paths.embeddings_dir / "emb-train.pt").vectors
    submitted = ctx.training.submit_embedding({
        "embedding_name": "emb-train", "learn_rate": "0.05:2, 0.01", "data_root": str(train_folder), "steps": 4,
        "batch_size": 2, "save_embedding_every": 2, "create_image_every": 2, "template_filename": "subject_filewords.txt",
        "training_width": 64, "training_height": 64, "id_task": "task(abc)", "preview_from_txt2img": False,
    }, ctx.queue)
    state = submitted.job.wait(300)
    assert state.state == "done" and [s for s, _ in state.losses] == [1, 2, 3, 4]
    saved = load_embedding(ctx.paths.embeddings_dir / "emb-train.pt")
    assert saved.step == 4 and saved.name == "emb-train" and not torch.equal(saved.vectors, before)
    steps_saved = sorted(p.name for p in (state.run_dir / "embeddings").glob("*.pt"))
    assert steps_saved == ["emb-train-2.pt", "emb-train-4.pt"]
    assert [s.step for s in state.samples] == [2, 4] and all(s.path.exists() for s in state.samples)
    # Training on continues from the file's step (A1111 does the same).
    again = ctx.training.submit_embedding({"embedding_name": "emb-train", "data_root": str(train_folder), "steps": 5,
                                           "create_image_every": 0, "save_embedding_every": 0}, ctx.queue)
    state = again.job.wait(300)
    assert state.start_step == 4 and [s for s, _ in state.losses] == [5]
    assert load_embedding(ctx.paths.embeddings_dir / "emb-train.pt").step == 5


def test_a1111_learning_rate_syntax():
    pairs = parse_a1111_rate("0.005:100, 1e-3:1000, 1e-5", 3000)
    assert pairs == [(0.005, 100), (0.001, 1000), (1e-05, 3000)]
    f = a1111_multiplier(pairs)
    assert f(0) == 1 and f(99) == 1 and f(100) == pytest.approx(0.2) and f(2999) == pytest.approx(0.002)
    for bad, message in (("fast", "'fast' is not a number"), ("0.1:ten", "not a whole number"), ("", "empty"),
                         ("-1", "positive")):
        with pytest.raises(ValueError, match=message):
            parse_a1111_rate(bad, 10)


def test_embedding_settings_and_submit_errors(app_context, train_folder, tmp_path):
    with pytest.raises(SettingsError, match="learn_rate: learning rate 'abc' is not a number"):
        EmbeddingSettings.from_dict({"embedding_name": "x", "data_root": str(train_folder), "learn_rate": "abc"})
    with pytest.raises(SettingsError, match="template_filename: no template"):
        EmbeddingSettings.from_dict({"embedding_name": "x", "data_root": "d", "template_filename": "nope.txt"})
    with pytest.raises(SettingsError, match="create it first"):
        app_context.training.submit_embedding({"embedding_name": "never-made", "data_root": str(train_folder)},
                                              app_context.queue)
    app_context.training.create_embedding("emb-empty", "", 1, overwrite=True)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SettingsError, match="no readable images"):
        app_context.training.submit_embedding({"embedding_name": "emb-empty", "data_root": str(tmp_path / "nothing")},
                                              app_context.queue)
