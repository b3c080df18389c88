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


def test_gallery_shows_the_grid_first_with_lists_kept_in_step(app_context):
    from PIL import Image

    from webui.ui.shared_controls import with_grid

    images = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue")]
    shown, infos, seeds = with_grid(app_context, images, ["i1", "i2", "i3"], [1, 2, 3])
    assert shown[0].size == (128, 128) and shown[1:] == images
    assert infos == ["i1", "i1", "i2", "i3"] and seeds == [1, 1, 2, 3]  # the grid speaks for the first image
    assert with_grid(app_context, images[:1], ["i1"], [1]) == (images[:1], ["i1"], [1])  # one image: no grid
    mixed = [images[0], Image.new("RGB", (32, 64))]
    assert with_grid(app_context, mixed, ["a", "b"], [1, 2])[0] == mixed  # sizes differ: no grid
    app_context.settings.update({"return_grid": False}, save=False)
    try:
        assert with_grid(app_context, images, ["i1", "i2", "i3"], [1, 2, 3])[0] == images
    finally:
        app_context.settings.update({"return_grid": True}, save=False)


def test_skipped_images_are_saved_only_when_asked(app_context, tiny_sd15):
    from webui.generation.core import save_images

    app_context.models.select(str(tiny_sd15.single_file))
    request = GenerationRequest(prompt="a red circle", seed=7, steps=1, width=64, height=64, n_iter=2,
                                sampler_name="Euler a", save_images=True).validate()
    result = app_context.queue.run(request)
    args = (app_context.core, request, result.images, result.infotexts, result.seeds, "m", "p", False)
    paths = save_images(*args, incomplete=[0])
    assert [p.name.split("-")[-1] for p in paths] == ["8.png"]
    app_context.settings.update({"save_incomplete_images": True}, save=False)
    try:
        assert len(save_images(*args, incomplete=[0])) == 2
    finally:
        app_context.settings.update({"save_incomplete_images": False}, save=False)
