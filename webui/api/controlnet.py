"""sd-webui-controlnet's REST routes (``/controlnet/*``), the shapes its bots and plug-ins read.

``version``, ``model_list``, ``module_list``, ``control_types``, ``settings`` and ``detect``
(run a preprocessor on base64 images). Units in txt2img/img2img arrive through
``alwayson_scripts`` and are parsed by ``webui.generation.controlnet``.
"""
from __future__ import annotations

import base64
import io
import logging

import numpy as np
from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from webui.api.errors import ApiError
from webui.generation import controlnet as cn
from webui.generation import preprocessors

log = logging.getLogger(__name__)
API_VERSION = 2  # what sd-webui-controlnet's /controlnet/version answers


def _png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def module_detail(module: preprocessors.Preprocessor) -> dict:
    """One module's entry of ``module_detail``: sliders in the extension's shape, plus availability."""
    detail = {"model_free": module.fn is not None and module.name not in ("none",),
              "sliders": [s.as_api() for s in module.sliders()], "available": module.available}
    if not module.available:
        detail["reason"] = module.unavailable
    return detail


def request_units(scripts, ctx, errors: list) -> list:
    """The enabled units of a body's ``alwayson_scripts`` (checked: fields, model names, unit count)."""
    from webui.generation.request import FieldError

    units, unit_errors = cn.units_from_alwayson(scripts)
    if unit_errors:  # reported here with their alwayson_scripts path, not again by the request check
        errors.extend(unit_errors)
        return []
    where = "alwayson_scripts.controlnet.args"
    limit = int(ctx.settings.get("control_net_unit_count"))
    if len(units) > limit:
        errors.append(FieldError(where, f"{len(units)} units are enabled; the setting control_net_unit_count "
                                        f"allows {limit}"))
    for unit in units:
        if unit.model not in ("", "None") and ctx.controlnets.find(unit.model) is None:
            errors.append(FieldError(f"{where}.model", f"no ControlNet model matches {unit.model!r}; "
                                                       f"GET /controlnet/model_list lists them"))
    return units


def detected_map_images(result, ctx) -> list[str]:
    """The units' detected maps as base64 PNGs, unless the control_net_no_detectmap setting is on."""
    if ctx.settings.get("control_net_no_detectmap"):
        return []
    return [_png(np.asarray(image.convert("RGB"))) for image in getattr(result, "extra_images", [])]


def build_controlnet_router(ctx) -> APIRouter:
    """The /controlnet routes for one AppContext (closures over ctx)."""
    from webui.api.routes import api_router  # routes imports this module

    router = api_router(ctx, prefix="/controlnet", tags=["controlnet"])  # the API's auth, limits and errors

    @router.get("/version")
    def version():
        """The sd-webui-controlnet API version this server speaks."""
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = Query(True, description="rescan the ControlNet folders first")):
        """ControlNet models as ``<name> [<hash>]``."""
        if update:
            ctx.controlnets.refresh()
        return {"model_list": ctx.controlnets.titles()}

    @router.get("/module_list")
    def module_list(alias_names: bool = Query(False, description="UI labels instead of module names")):
        """Preprocessors (modules) and their sliders; unavailable ones carry the reason."""
        modules = list(preprocessors.PREPROCESSORS.values())
        names = [m.label if alias_names else m.name for m in modules]
        return {"module_list": names, "module_detail": {n: module_detail(m) for n, m in zip(names, modules)}}

    @router.get("/control_types")
    def control_types():
        """Per control type: its modules, the models whose names match, and the default picks."""
        titles = ctx.controlnets.titles()
        return {"control_types": {name: cn.control_type_choices(name, titles) for name in cn.CONTROL_TYPES}}

    @router.get("/settings")
    def settings():
        """How many units a request may enable (the UI shows as many)."""
        return {"control_net_unit_count": int(ctx.settings.get("control_net_unit_count"))}

    @router.post("/detect")
    async def detect(
        controlnet_module: str = Body("none"),
        controlnet_input_images: list[str] = Body(default_factory=list),
        controlnet_processor_res: float = Body(-1),
        controlnet_threshold_a: float = Body(-1),
        controlnet_threshold_b: float = Body(-1),
        controlnet_masks: list[str] = Body(default_factory=list),
        low_vram: bool = Body(False),
    ):
        """Run a preprocessor on each image; returns the detected maps as base64 PNGs."""
        module = preprocessors.find(controlnet_module)
        if module is None:
            raise ApiError.field(422, "controlnet_module", f"Module not available: {controlnet_module!r}; "
                                                           f"see /controlnet/module_list")
        if not module.available:
            raise ApiError.field(422, "controlnet_module", f"{module.name} is unavailable: {module.unavailable}")
        if not controlnet_input_images:
            raise ApiError.field(422, "controlnet_input_images", "No image selected")
        try:
            preprocessors.resolve_params(module, controlnet_processor_res, controlnet_threshold_a,
                                         controlnet_threshold_b)
        except preprocessors.PreprocessorError as exc:
            raise ApiError.field(422, "controlnet_threshold_a", str(exc)) from None
        arrays = []
        for i, text in enumerate(controlnet_input_images):
            try:
                arrays.append(cn.decode_image(text, f"controlnet_input_images[{i}]"))
            except ValueError as exc:
                raise ApiError.field(422, f"controlnet_input_images[{i}]", str(exc)) from None
        masks = []
        for i, text in enumerate(controlnet_masks):
            try:
                masks.append(cn.mask_from(text, f"controlnet_masks[{i}]"))
            except ValueError as exc:
                raise ApiError.field(422, f"controlnet_masks[{i}]", str(exc)) from None

        def work() -> list[str]:
            out = []
            for i, array in enumerate(arrays):
                detected = preprocessors.run(module, array, controlnet_processor_res, controlnet_threshold_a,
                                             controlnet_threshold_b)
                if module.needs_mask and i < len(masks):  # show what inpaint_only will redraw
                    from webui.generation.controlnet_run import fit

                    mask = fit(masks[i], detected.shape[1], detected.shape[0], "Just Resize")
                    shown = detected.copy()
                    shown[mask > 127] = 0
                    detected = shown
                out.append(_png(detected))
            return out

        try:
            images = await run_in_threadpool(work)
        except preprocessors.PreprocessorError as exc:
            raise ApiError.field(422, "controlnet_module", str(exc)) from None
        return {"images": images, "info": "Success"}

    @router.post("/render_openpose_json")
    def render_openpose_json(pose_data: list[dict] = Body(default_factory=list)):
        """Draw OpenPose JSON (sd-webui-openpose-editor's format) as pose maps."""
        from webui.generation.openpose import PoseError, render_pose_json

        if not pose_data:
            return {"info": "No pose data detected."}
        images = []
        for i, pose in enumerate(pose_data):
            try:
                images.append(_png(render_pose_json(pose)))
            except PoseError as exc:
                raise ApiError.field(422, f"pose_data[{i}]", str(exc)) from None
        return {"images": images, "info": "Success"}

    return router
