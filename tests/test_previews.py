"""Live previews: exact decode for small VAEs, the published linear factors for real-size ones."""
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from PIL import Image

from webui.generation import previews


@dataclass
class FakeModel:
    arch: str
    pipe: object


def test_small_vae_is_decoded_exactly(tiny_sd15):
    pipe = tiny_sd15.load_pretrained()
    make = previews.make_previewer(FakeModel("sd15", pipe))
    latents = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    image = make(latents)
    with torch.no_grad():
        expected = pipe.vae.decode(latents[:1] / pipe.vae.config.scaling_factor).sample
    expected = pipe.image_processor.postprocess(expected, output_type="pil")[0]
    assert image.size == (64, 64) and list(image.getdata()) == list(expected.getdata())


def test_large_vae_uses_linear_factors(monkeypatch):
    monkeypatch.setattr(previews, "SMALL_VAE_PARAMS", -1)
    vae = torch.nn.Linear(1, 1)
    vae.config = SimpleNamespace(latent_channels=4)
    make = previews.make_previewer(FakeModel("sdxl", SimpleNamespace(vae=vae)))
    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 0] = 1.0  # channel 0 maps to roughly equal R, G, B in SDXL's fit
    image = make(latents)
    assert isinstance(image, Image.Image) and image.size == (8, 8)
    r, g, b = image.getpixel((0, 0))
    assert abs(r - g) < 10 and r > 150
    assert previews.make_previewer(FakeModel("custom", SimpleNamespace(vae=vae))) is None
