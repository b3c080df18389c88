"""Outpainting: extend the canvas in chosen directions and inpaint the new border (A1111's two scripts).

- "Poor man's outpainting": pad the image (new area filled by "Masked content"), split it into
  processing-size tiles that overlap by the padding, inpaint only the tiles touching the new
  border, blend them back together.
- "Outpainting mk2": one direction at a time, pre-fill the new strip with noise whose spectrum
  and colours follow the image, inpaint a processing-size window at that edge with
  "Masked content: original", paste it back.

Both run inside one queue job (``run_outpaint``), calling ``generate`` once per tile/direction,
and save the final canvas like any img2img result. When the scripts mechanism lands, A1111's
``script_name`` for these two maps onto ``OutpaintJob``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from webui.generation.progress import Progress
from webui.generation.request import FieldError, GenerationRequest, GenerationResult, RequestError
from webui.infotext import parse_infotext

POOR_MAN, MK2 = "Poor man's outpainting", "Outpainting mk2"
METHODS = (POOR_MAN, MK2)
DIRECTIONS = ("left", "right", "up", "down")


@dataclass
class OutpaintJob:
    """An img2img request (init image, prompt, sampler, seed; width/height = processing size) plus how to extend it."""

    request: GenerationRequest
    method: str = POOR_MAN
    pixels: int = 128
    directions: tuple[str, ...] = DIRECTIONS
    mask_blur: int = 4
    inpainting_fill: int = 0  # poor man's only; mk2 always uses "original" over its matched noise
    noise_q: float = 1.0  # mk2: fall-off exponent of the noise spectrum
    color_variation: float = 0.05  # mk2: how far the noise colours wander from the image's

    def validate(self) -> "OutpaintJob":
        errors = []
        if self.method not in METHODS:
            errors.append(FieldError("outpaint_method", f"must be one of {', '.join(METHODS)}"))
        if not isinstance(self.pixels, int) or not 8 <= self.pixels <= 256:
            errors.append(FieldError("outpaint_pixels", f"must be 8 to 256, got {self.pixels!r}"))
        directions = tuple(d for d in DIRECTIONS if d in (self.directions or ()))
        if not directions or set(self.directions) - set(DIRECTIONS):
            errors.append(FieldError("outpaint_directions", f"pick one or more of {', '.join(DIRECTIONS)}"))
        try:
            request = dataclasses.replace(self.request, mode="img2img", mask=None).validate()
        except RequestError as exc:
            errors += exc.errors
            request = self.request
        if errors:
            raise RequestError(errors)
        return dataclasses.replace(self, request=request, directions=directions)


def _margins(size: tuple[int, int], pixels: int, directions) -> tuple[int, int, int, int, int, int]:
    """(left, right, up, down, width, height): the padding rounded so the canvas is a multiple of 64."""
    w, h = size
    left, right = (pixels if "left" in directions else 0), (pixels if "right" in directions else 0)
    up, down = (pixels if "up" in directions else 0), (pixels if "down" in directions else 0)
    target_w, target_h = math.ceil((w + left + right) / 64) * 64, math.ceil((h + up + down) / 64) * 64
    if left:
        left = left * (target_w - w) // (left + right)
    if right:
        right = target_w - w - left
    if up:
        up = up * (target_h - h) // (up + down)
    if down:
        down = target_h - h - up
    return left, right, up, down, target_w, target_h


def _inset_mask(size, box, inset: int, sides, fill_outside=255) -> Image.Image:
    """White everywhere except the original's box, shrunk by ``inset`` on the sides that grow."""
    left, up, right, down = box
    mask = Image.new("L", size, fill_outside)
    ImageDraw.Draw(mask).rectangle(
        (left + (inset if "left" in sides else 0), up + (inset if "up" in sides else 0),
         size[0] - right - (inset if "right" in sides else 0) - 1,
         size[1] - down - (inset if "down" in sides else 0) - 1), fill=0)
    return mask


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    # Evenly spread starts so tiles cover ``length`` and neighbours overlap by at least ``overlap``.
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / max(tile - overlap, 1))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return sorted({min(int(i * step), length - tile) for i in range(count)})


def _blend_paste(canvas: Image.Image, tile: Image.Image, x: int, y: int, overlap: int) -> None:
    """Paste ``tile`` with a linear ramp over the ``overlap`` pixels that lie on an earlier tile."""
    ramp = np.ones((tile.height, tile.width), np.float32)
    if x > 0 and overlap > 0:
        ramp[:, :overlap] *= np.linspace(0, 1, overlap, endpoint=False)[None, :]
    if y > 0 and overlap > 0:
        ramp[:overlap, :] *= np.linspace(0, 1, overlap, endpoint=False)[:, None]
    canvas.paste(tile, (x, y), Image.fromarray((ramp * 255).astype(np.uint8), "L"))


def poor_mans(job: OutpaintJob, generate, progress: Progress) -> tuple[Image.Image, GenerationResult | None]:
    req = job.request
    source = req.init_images[0].convert("RGB")
    left, right, up, down, width, height = _margins(source.size, job.pixels, job.directions)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(source, (left, up))
    box = (left, up, right, down)
    mask = _inset_mask(canvas.size, box, job.mask_blur * 2, job.directions)
    latent_mask = _inset_mask(canvas.size, box, job.mask_blur // 2, job.directions)
    tile_w, tile_h = min(req.width, width), min(req.height, height)
    first, seed = None, req.seed
    out = canvas.copy()
    tiles = [(x, y) for y in _tile_starts(height, tile_h, job.pixels) for x in _tile_starts(width, tile_w, job.pixels)
             if not (x >= left and x + tile_w <= width - right and y >= up and y + tile_h <= height - down)]
    for number, (x, y) in enumerate(tiles):  # tiles of the original only are skipped: nothing to paint
        if progress.interrupted:
            break
        progress.prefix = f"Outpainting tile {number + 1} of {len(tiles)}: "
        crop = (x, y, x + tile_w, y + tile_h)
        tile_req = dataclasses.replace(
            req, mode="inpaint", init_images=[canvas.crop(crop)], mask=mask.crop(crop),
            latent_mask=latent_mask.crop(crop), width=tile_w, height=tile_h, n_iter=1, batch_size=1,
            mask_blur=job.mask_blur * 2, inpainting_fill=job.inpainting_fill, inpaint_full_res=False,
            save_images=False, seed=seed, scale_by=None)
        result = generate(tile_req)
        if not result.images:
            break
        first = first or result
        seed = result.seeds[0] + 1  # A1111: the next tile uses the next seed
        _blend_paste(out, result.images[0], x, y, job.pixels)
    return out, first


def matched_noise(image: np.ndarray, known: np.ndarray, noise_q: float, color_variation: float,
                  seed: int = 0) -> np.ndarray:
    """Fill where ``known`` is False with noise shaped like the known pixels (mk2's pre-fill).

    The noise's spectrum is the known area's spectrum raised to ``noise_q`` (so its textures have
    the image's scale), and its values are mapped onto the known pixels' colour distribution per
    channel (histogram matching), with ``color_variation`` of extra per-pixel colour jitter.
    """
    rng = np.random.default_rng(seed)
    h, w, _ = image.shape
    out = image.astype(np.float64).copy()
    if not known.any():
        return out
    for c in range(3):
        channel = image[..., c].astype(np.float64)
        mean = channel[known].mean()
        spectrum = np.abs(np.fft.fft2(np.where(known, channel - mean, 0.0)))
        shaped = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((h, w))) * spectrum ** noise_q))
        # Histogram matching: rank the noise, give each rank the known pixels' value at that quantile.
        values = np.sort(channel[known])
        ranks = np.argsort(np.argsort(shaped, axis=None)).reshape(h, w) / max(h * w - 1, 1)
        matched = values[np.clip((ranks * (values.size - 1)).round().astype(int), 0, values.size - 1)]
        matched = matched + rng.standard_normal((h, w)) * color_variation * 255
        out[..., c] = np.where(known, channel, np.clip(matched, 0, 255))
    return out


def _floor8(value: int) -> int:
    return max(64, value // 8 * 8)


def mk2(job: OutpaintJob, generate, progress: Progress) -> tuple[Image.Image, GenerationResult | None]:
    req = job.request
    image = req.init_images[0].convert("RGB")
    left, right, up, down, _, _ = _margins(image.size, job.pixels, job.directions)
    blur_x = job.mask_blur if (left or right) else 0
    blur_y = job.mask_blur if (up or down) else 0
    first = None
    for side, amount in (("left", left), ("right", right), ("up", up), ("down", down)):
        if not amount or progress.interrupted:
            continue
        progress.prefix = f"Outpainting {side}: "
        horizontal = side in ("left", "right")
        blur = blur_x if horizontal else blur_y
        grow_w, grow_h = (amount, 0) if horizontal else (0, amount)
        canvas = Image.new("RGB", (image.width + grow_w, image.height + grow_h))
        offset = (grow_w if side == "left" else 0, grow_h if side == "up" else 0)
        canvas.paste(image, offset)
        known = np.zeros((canvas.height, canvas.width), bool)
        known[offset[1]:offset[1] + image.height, offset[0]:offset[0] + image.width] = True
        noisy = Image.fromarray(matched_noise(np.asarray(canvas), known, job.noise_q, job.color_variation)
                                .astype(np.uint8))
        # The window: processing-size deep at the growing edge, the whole canvas along it (as A1111).
        win_w = min(req.width, canvas.width) if horizontal else canvas.width
        win_h = canvas.height if horizontal else min(req.height, canvas.height)
        x = canvas.width - win_w if side == "right" else 0
        y = canvas.height - win_h if side == "down" else 0
        window = (x, y, x + win_w, y + win_h)
        new_area = {"left": (grow_w, 0, 0, 0), "right": (0, 0, grow_w, 0), "up": (0, grow_h, 0, 0),
                    "down": (0, 0, 0, grow_h)}[side]
        mask = _inset_mask(canvas.size, new_area, blur, (side,))
        latent_mask = _inset_mask(canvas.size, new_area, 2 * blur, (side,))
        tile_req = dataclasses.replace(
            req, mode="inpaint", init_images=[noisy.crop(window)], mask=mask.crop(window),
            latent_mask=latent_mask.crop(window), width=_floor8(win_w), height=_floor8(win_h), n_iter=1,
            batch_size=1, mask_blur_x=blur_x * 4, mask_blur_y=blur_y * 4, mask_blur=None, inpainting_fill=1,
            inpaint_full_res=False, save_images=False, scale_by=None)
        result = generate(tile_req)
        if not result.images:
            break
        first = first or result
        patch = result.images[0]
        if patch.size != (win_w, win_h):  # processed at a multiple of 8: resize back, keep the rest exact
            patch = Image.composite(patch.resize((win_w, win_h)), canvas.crop(window), mask.crop(window))
        noisy.paste(patch, (x, y))
        image = noisy
    return image, first


def run_outpaint(job: OutpaintJob, core, progress: Progress | None = None) -> GenerationResult:
    """Run an outpainting job in the worker: one generate() per tile/direction, then save the canvas."""
    from webui.generation.core import generate, save_images

    from webui.generation.seeds import resolve_seed

    progress = progress or Progress()
    job = job.validate()
    # One seed for the whole job (A1111 fixes it once): mk2's directions share it, tiles count up from it.
    job = dataclasses.replace(job, request=dataclasses.replace(job.request, seed=resolve_seed(job.request.seed)))
    run = (lambda request: generate(request, core, progress))
    canvas, first = (poor_mans if job.method == POOR_MAN else mk2)(job, run, progress)
    if first is None:
        raise RequestError([FieldError("outpaint_directions", "nothing to outpaint")])
    request = dataclasses.replace(job.request, seed=first.seeds[0], subseed=first.subseeds[0])
    infotexts = [first.infotexts[0]]
    interrupted = progress.interrupted
    model_name = parse_infotext(infotexts[0]).get("Model", "")
    paths = save_images(core, request, [canvas], infotexts, [first.seeds[0]], model_name, first.prompts[0],
                        interrupted)
    return GenerationResult(images=[canvas], infotexts=infotexts, seeds=[first.seeds[0]],
                            subseeds=[first.subseeds[0]], prompts=first.prompts[:1],
                            negative_prompts=first.negative_prompts[:1], timings={}, request=request,
                            interrupted=interrupted, paths=paths, comments=list(first.comments))
