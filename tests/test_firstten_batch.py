"""Batch results as A1111 writes them: every image of a batch of several says its batch size and place."""
from webui.generation.request import GenerationRequest
from webui.infotext import build_infotext, parse_infotext


def test_infotext_names_batch_size_and_position_only_for_batches():
    single = build_infotext(GenerationRequest().validate(), 1, 2, "m", "h", "p", "")
    assert "Batch size" not in single and "Batch pos" not in single
    text = build_infotext(GenerationRequest(batch_size=3).validate(), 1, 2, "m", "h", "p", "", batch_pos=2)
    assert "Model: m, Batch size: 3, Batch pos: 2," in text


def test_generated_batch_numbers_its_images(app_context, tiny_sd15):
    app_context.models.select(str(tiny_sd15.single_file))
    request = GenerationRequest(prompt="a red circle", seed=7, steps=1, width=64, height=64, batch_size=2, n_iter=2,
                                sampler_name="Euler a", save_images=False)
    result = app_context.queue.run(request)
    params = [parse_infotext(text) for text in result.infotexts]
    assert [(p["Batch size"], p["Batch pos"], p["Seed"]) for p in params] == [
        ("2", "0", "7"), ("2", "1", "8"), ("2", "0", "9"), ("2", "1", "10")]
