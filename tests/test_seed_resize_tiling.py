"""A1111's "Resize seed from width/height" (seeds.make_noise resize_from) and "Tiling" (tiling.tiled)."""
import pytest
import torch

from webui.generation import seeds as S
from webui.generation.tiling import tiled


def randn(seed, shape):
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def test_smaller_seed_noise_is_pasted_in_the_centre_of_the_images_own_noise():
    noise = S.make_noise((4, 8, 10), [42], resize_from=(4, 6))[0]
    own = randn(42, (4, 8, 10))  # the image's generator still draws the full-size noise first
    small = randn(42, (4, 4, 6))  # A1111: randn(seed, seed-size shape) from a fresh generator
    expected = own.clone()
    expected[:, 2:6, 2:8] = small
    assert torch.equal(noise, expected)


def test_larger_seed_noise_is_cropped_around_its_centre():
    noise = S.make_noise((4, 6, 6), [7], resize_from=(10, 12))[0]
    assert torch.equal(noise, randn(7, (4, 10, 12))[:, 2:8, 3:9])


def test_mixed_sizes_paste_one_axis_and_crop_the_other():
    noise = S.make_noise((4, 8, 8), [3], resize_from=(4, 12))[0]
    expected = randn(3, (4, 8, 8)).clone()
    expected[:, 2:6, :] = randn(3, (4, 4, 12))[:, :, 2:10]
    assert torch.equal(noise, expected)


def test_resize_to_the_same_size_or_zero_is_plain_noise():
    plain = S.make_noise((4, 8, 8), [5, 6])
    assert torch.equal(S.make_noise((4, 8, 8), [5, 6], resize_from=(8, 8)), plain)
    assert torch.equal(S.make_noise((4, 8, 8), [5, 6], resize_from=(0, 0)), plain)


def test_resize_keeps_the_generators_where_plain_noise_leaves_them():
    plain_gens, resized_gens = S.make_generators([9]), S.make_generators([9])
    S.make_noise((4, 8, 8), [9], generators=plain_gens)
    S.make_noise((4, 8, 8), [9], generators=resized_gens, resize_from=(4, 4))
    assert torch.equal(torch.randn(5, generator=plain_gens[0]), torch.randn(5, generator=resized_gens[0]))


def test_variation_seed_is_mixed_at_the_seed_size_then_pasted():
    noise = S.make_noise((4, 8, 8), [11], subseeds=[99], subseed_strength=0.3, resize_from=(4, 4))[0]
    mixed = S.slerp(0.3, randn(11, (4, 4, 4)), randn(99, (4, 4, 4)))
    torch.testing.assert_close(noise[:, 2:6, 2:6], mixed)
    torch.testing.assert_close(noise[:, 0, :], randn(11, (4, 8, 8))[:, 0, :])


def test_resized_noise_reproduces_the_seed_composition_at_a_new_size():
    # The point of the feature: the 64x64 seed's noise sits in the middle of the 96x96 image's noise.
    small = S.make_noise((4, 8, 8), [1234])[0]
    bigger = S.make_noise((4, 12, 12), [1234], resize_from=(8, 8))[0]
    assert torch.equal(bigger[:, 2:10, 2:10], small)


# --- tiling --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipe(tiny_sd15):
    return tiny_sd15.load_pretrained()


def test_tiling_makes_every_unet_and_vae_conv_circular_and_restores_them(pipe):
    convs = [m for part in (pipe.unet, pipe.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.padding_mode == "zeros" for c in convs)
    with tiled(pipe):
        assert all(c.padding_mode == "circular" for c in convs)
    assert all(c.padding_mode == "zeros" for c in convs)
    with tiled(pipe, enabled=False):
        assert all(c.padding_mode == "zeros" for c in convs)


def _roll(x, shift):
    return torch.roll(x, shifts=(shift, shift), dims=(-2, -1))


def test_tiled_vae_decode_is_translation_equivariant(pipe):
    # On a torus a shifted latent decodes to the shifted image: the picture has no edges, it tiles.
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    factor = pipe.vae_scale_factor
    with torch.no_grad():
        with tiled(pipe):
            a, b = pipe.vae.decode(_roll(z, 3)).sample, _roll(pipe.vae.decode(z).sample, 3 * factor)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        plain_a, plain_b = pipe.vae.decode(_roll(z, 3)).sample, _roll(pipe.vae.decode(z).sample, 3 * factor)
    assert (plain_a - plain_b).abs().max() > 1e-3  # zero padding: the edges give it away


def test_tiled_unet_is_translation_equivariant(pipe):
    down = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    x = torch.randn(1, 4, 8 * down, 8 * down, generator=torch.Generator().manual_seed(1))
    text = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    shift = 2 * down
    with torch.no_grad(), tiled(pipe):
        a = pipe.unet(_roll(x, shift), 500, encoder_hidden_states=text).sample
        b = _roll(pipe.unet(x, 500, encoder_hidden_states=text).sample, shift)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# --- through the core, the infotext and the API --------------------------------------------------

def _req(**kw):
    from webui.generation.request import GenerationRequest

    base = dict(prompt="a red circle", negative_prompt="blue", seed=77, steps=3, width=64, height=64,
                sampler_name="Euler", save_images=False)
    base.update(kw)
    return GenerationRequest(**base)


def test_seed_resize_and_tiling_through_the_core_are_recorded_and_undone(sd15):
    import numpy as np

    from webui.infotext import infotext_to_request_fields, parse_infotext

    plain = sd15.queue.run(_req())
    resized = sd15.queue.run(_req(seed_resize_from_w=32, seed_resize_from_h=48))
    tiled_result = sd15.queue.run(_req(tiling=True))
    text = resized.infotexts[0]
    assert "Seed resize from: 32x48" in text and "Tiling" not in text
    assert "Tiling: True" in tiled_result.infotexts[0]
    for result in (resized, tiled_result):
        assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(result.images[0]))
    fields = infotext_to_request_fields(parse_infotext(tiled_result.infotexts[0]))
    assert fields["tiling"] is True
    fields = infotext_to_request_fields(parse_infotext(text))
    assert (fields["seed_resize_from_w"], fields["seed_resize_from_h"]) == (32, 48)
    with sd15.models.active() as model:  # the job's circular padding is gone afterwards
        assert all(m.padding_mode == "zeros" for m in model.pipe.unet.modules() if isinstance(m, torch.nn.Conv2d))
    again = sd15.queue.run(_req())
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))


def test_api_accepts_tiling_and_seed_resize(app_context, tiny_sd15):
    from tests.test_api import client_for

    app_context.models.select(str(tiny_sd15.single_file))
    client = client_for(app_context)
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 5, "tiling": True,
            "seed_resize_from_w": 64, "seed_resize_from_h": 32}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    import json

    info = json.loads(response.json()["info"])
    assert "Tiling: True" in info["infotexts"][0] and "Seed resize from: 64x32" in info["infotexts"][0]
    assert (info["seed_resize_from_w"], info["seed_resize_from_h"]) == (64, 32)
