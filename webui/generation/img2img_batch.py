"""img2img "Batch": one request per image of an input folder, masks from an optional mask folder.

As in A1111: a mask is the file in the mask folder with the image's name (any extension); with an
output folder the results go straight into it (no date subfolder, no grid), named after the input
image, otherwise to the usual img2img output folder.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from webui.generation.request import FieldError, GenerationRequest, RequestError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise RequestError([FieldError("input_dir", f"{path.name} is not a readable image: {exc}")]) from None


def batch_requests(template: GenerationRequest, input_dir: str, output_dir: str = "",
                   mask_dir: str = "", allow_dirs: bool = True) -> list[GenerationRequest]:
    """Requests for every image in ``input_dir`` (sorted by name), built on ``template``'s settings.

    ``allow_dirs`` False (the server runs with --hide-ui-dir-config) refuses every folder.
    """
    if not allow_dirs:
        raise RequestError([FieldError("input_dir", "batch from server folders is disabled on this server "
                                                    "(--hide-ui-dir-config)")])
    folder = Path(str(input_dir or "").strip()).expanduser()
    if not str(input_dir or "").strip() or not folder.is_dir():
        raise RequestError([FieldError("input_dir", f"not a folder: {input_dir!r}")])
    masks = None
    if str(mask_dir or "").strip():
        mask_folder = Path(mask_dir.strip()).expanduser()
        if not mask_folder.is_dir():
            raise RequestError([FieldError("mask_dir", f"not a folder: {mask_dir!r}")])
        masks = {p.stem: p for p in _images(mask_folder)}
    files = _images(folder)
    if not files:
        raise RequestError([FieldError("input_dir", f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")])
    requests = []
    for path in files:
        overrides = dict(template.override_settings or {})
        if str(output_dir or "").strip():
            many = template.n_iter * template.batch_size > 1
            overrides.update({"outdir_img2img_samples": str(Path(output_dir.strip()).expanduser()),
                              "save_to_dirs": False, "grid_save": False,
                              "samples_filename_pattern": f"{path.stem}-[seed]" if many else path.stem})
        mask_path = masks.get(path.stem) if masks is not None else None
        request = dataclasses.replace(template, init_images=[_load(path)], override_settings=overrides,
                                      mode="inpaint" if mask_path is not None else "img2img",
                                      mask=_load(mask_path) if mask_path is not None else None)
        requests.append(request.validate())
    return requests
