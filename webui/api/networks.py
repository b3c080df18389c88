"""A1111's network routes: /sd-vae, /loras, /embeddings, /hypernetworks and their refresh-* twins.

Shapes are A1111's (`/embeddings` answers `{"loaded": {...}, "skipped": {...}}` for the loaded
model; we add `failed` for files that could not be read). `sd_vae` changes from `/options` go
through `apply_vae_option`, queued like a checkpoint swap so they land between generations.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from webui.api.errors import ApiError
from webui.jobs import JobFailed


def check_vae_override(ctx, value: Any) -> str | None:
    """None when `value` names a usable sd_vae, else the message (for override_settings validation)."""
    networks = getattr(ctx, "networks", None)
    if networks is None or not isinstance(value, str):
        return None
    return networks.vaes.check_choice(value)


async def apply_vae_option(ctx, value: str) -> None:
    """POST /options with sd_vae: validate, then swap in queue order; ApiError(422) if refused."""
    from webui.api.routes import wait_for

    problem = check_vae_override(ctx, value)
    if problem:
        raise ApiError.field(422, "sd_vae", problem)
    try:
        await wait_for(ctx.submit_vae(value, source="api"))
    except JobFailed as exc:
        raise ApiError.field(422, "sd_vae", str(exc)) from None


def _embeddings(ctx) -> dict[str, Any]:
    networks = ctx.networks
    model = ctx.models.current()
    if model is None:
        loaded, skipped = {}, {e.name: e for e in networks.embeddings.all()}
    else:
        loaded, skipped = networks.embeddings.split(model.pipe)
    return {"loaded": {n: e.api_dict() for n, e in loaded.items()},
            "skipped": {n: e.api_dict() for n, e in skipped.items()},
            "failed": dict(networks.embeddings.failed)}


def build_networks_router(ctx) -> APIRouter:
    """The network routes for one AppContext (same auth and error shape as the other /sdapi routes)."""
    from webui.api.routes import api_router  # routes imports this module

    router = api_router(ctx, tags=["networks"])
    networks = ctx.networks

    @router.get("/sd-vae")
    def sd_vae() -> list[dict[str, str]]:
        """VAE files (models/VAE, and *.vae.* files beside checkpoints)."""
        return [{"model_name": f.name, "filename": str(f.filename)} for f in networks.vaes.files()]

    @router.post("/refresh-vae")
    def refresh_vae():
        """Rescan the VAE folders."""
        networks.vaes.refresh()

    @router.get("/loras")
    def loras() -> list[dict[str, Any]]:
        """LoRA / LyCORIS files with their kohya alias and safetensors metadata."""
        out = []
        for f in networks.loras.files():
            metadata = f.metadata() if f.is_safetensors else {}
            out.append({"name": f.name, "alias": str(metadata.get("ss_output_name", f.name)),
                        "path": str(f.filename), "metadata": metadata})
        return out

    @router.post("/refresh-loras")
    def refresh_loras():
        """Rescan the LoRA folders."""
        networks.loras.refresh()

    @router.get("/embeddings")
    def embeddings() -> dict[str, Any]:
        """Embeddings that fit the loaded model (`loaded`) and those that do not (`skipped`)."""
        return _embeddings(ctx)

    @router.post("/refresh-embeddings")
    def refresh_embeddings():
        """Rescan and reload the embeddings folder."""
        networks.embeddings.refresh()

    @router.get("/hypernetworks")
    def hypernetworks() -> list[dict[str, str]]:
        """Hypernetwork files."""
        return [{"name": f.name, "path": str(f.filename)} for f in networks.hypernetworks.files()]

    @router.post("/refresh-hypernetworks")
    def refresh_hypernetworks():
        """Rescan the hypernetworks folder (ours; A1111 refreshes them with the checkpoints)."""
        networks.hypernetworks.refresh()

    return router
