"""``modules.hashes``: file hashes, read from the model registry's cache when it has them."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(filename, title=None, use_addnet_hash=False):
    digest = hashlib.sha256()
    with open(filename, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_from_cache(filename, title=None, use_addnet_hash=False):
    """The cached SHA-256 of a checkpoint the registry knows, else None (A1111 returns None too)."""
    from webui.compat.a1111 import active

    ctx = active.bridge().host.ctx
    if ctx is None:
        return None
    info = ctx.models.find(str(Path(filename)))
    return getattr(info, "sha256", None) if info is not None else None
