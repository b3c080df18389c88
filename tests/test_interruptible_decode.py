"""VAE decode stops between images and tiles on interrupt; tiles equal diffusers' tiled decode exactly."""
import threading

import pytest
import torch

from webui.generation import interruptible_decode, vae_codec
from webui.generation.interruptible_decode import decode_latents
from webui.generation.request import GenerationRequest


@pytest.fixture(scope="module")
def pipe(tiny_sd15):
    return tiny_sd15.load_single_file()


class CountingDecoder:
    """Counts vae.decoder calls (a forward hook) and flips `interrupt` after `stop_after` calls."""

    def __init__(self, vae, stop_after=None):
        self.vae, self.calls, self.stop_after, self.interrupt = vae, 0, stop_after, False

    def called(self) -> None:
        self.calls += 1
        if self.stop_after is not None and self.calls >= self.stop_after:
            self.interrupt = True

    def __enter__(self):
        self.handle = self.vae.decoder.register_forward_hook(lambda *args: self.called())
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def latents_for(pipe, batch, size, seed=0):
    channels = pipe.vae.config.latent_channels
    return torch.randn((batch, channels, size, size), generator=torch.Generator().manual_seed(seed))


def tile_count(vae, size):
    step = int(vae.tile_latent_min_size * (1 - vae.tile_overlap_factor))
    return len(range(0, size, step)) ** 2


def test_small_batches_decode_as_before(pipe):
    latents = latents_for(pipe, 3, 8)
    assert torch.allclose(decode_latents(pipe, latents, lambda: False), vae_codec.decode(pipe, latents), atol=1e-5)


def test_tiles_equal_diffusers_tiled_decode(pipe, monkeypatch):
    size = pipe.vae.tile_latent_min_size * 3  # several tiles each way
    latents = latents_for(pipe, 2, size, seed=1)
    monkeypatch.setattr(interruptible_decode, "TILE_ABOVE", 0)  # tile everything, whatever the tiny size
    ours = decode_latents(pipe, latents, lambda: False)
    pipe.vae.enable_tiling()
    try:
        theirs = torch.cat([vae_codec.decode(pipe, latents[i:i + 1]) for i in range(2)])
    finally:
        pipe.vae.disable_tiling()
    assert torch.equal(ours, theirs)
    assert not pipe.vae.use_tiling and "tiled_decode" not in vars(pipe.vae)  # restored


def test_interrupt_during_decode_stops_at_the_next_tile(pipe, monkeypatch):
    size = pipe.vae.tile_latent_min_size * 3
    monkeypatch.setattr(interruptible_decode, "TILE_ABOVE", 0)
    latents = latents_for(pipe, 2, size)
    assert tile_count(pipe.vae, size) > 3
    with CountingDecoder(pipe.vae, stop_after=2) as counter:
        result = decode_latents(pipe, latents, lambda: counter.interrupt)
    assert result is None and counter.calls == 2  # 2 of the first image's tiles, then stopped
    assert "tiled_decode" not in vars(pipe.vae) and not pipe.vae.use_tiling


def test_interrupt_during_sampling_keeps_only_the_first_image(pipe):
    latents = latents_for(pipe, 4, 8)
    with CountingDecoder(pipe.vae) as counter:
        result = decode_latents(pipe, latents, lambda: True)
    assert result.shape[0] == 1 and counter.calls == 1


def test_interrupt_after_the_first_image_keeps_what_is_finished(pipe):
    latents = latents_for(pipe, 4, 8)
    with CountingDecoder(pipe.vae, stop_after=2) as counter:
        result = decode_latents(pipe, latents, lambda: counter.interrupt)
    assert result.shape[0] == 2 and counter.calls == 2


def test_job_interrupted_while_decoding_a_batch_ends_early(app_context, tiny_sd15):
    """Through the queue: an interrupt that lands in the decode of a batch of 8 frees the worker at once."""
    app_context.models.select(str(tiny_sd15.single_file))
    request = GenerationRequest(prompt="a cube", seed=7, steps=1, width=64, height=64, batch_size=8, n_iter=3,
                                save_images=False)
    vae = app_context.models.current().pipe.vae
    job_box = {}
    decoded = threading.Event()

    class InterruptOnSecondImage(CountingDecoder):
        def called(self) -> None:
            super().called()
            if self.calls == 2:
                job_box["job"].progress.interrupt()
                decoded.set()

    with InterruptOnSecondImage(vae) as counter:
        job = app_context.queue.submit(request)
        job_box["job"] = job
        result = job.wait(120)
    assert decoded.is_set() and result.interrupted
    assert len(result.images) == 2 and counter.calls == 2  # not 24 decodes
