"""Networks as a generation-core feature: `NetworksFeature(manager).prepare(p)` for every job.

In `prepare` (before the prompt is encoded) it holds `manager.activate(...)` for the job
(`p.enter`: VAE in place, LoRA weights patched, hypernetworks attached), hands the core the
job's embeddings (`p.embeddings`, passed to `encode_prompts`), and records infotext keys
(`VAE hash`, `VAE`, `Lora hashes`, `TI hashes`) and comments. `p.prompt` is left as written so
the infotext keeps the tags (PNG Info restores them); `encode_prompts` drops them itself.
"""
from __future__ import annotations

from webui.models.networks.manager import NetworkManager


class NetworksFeature:
    """Plugs a NetworkManager into each job through the core's Processing seams."""

    name = "networks"

    def __init__(self, manager: NetworkManager):
        self.manager = manager

    def prepare(self, p) -> None:
        overrides = getattr(p.request, "override_settings", None) or {}
        job = p.enter(self.manager.activate(p.model, p.prompt, p.negative_prompt, overrides))
        pipe = p.model.pipe
        tokenizer = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
        if tokenizer is not None:
            job.embeddings.scan(tokenizer, [job.prompt, job.negative])
        p.embeddings = job.embeddings
        if job.vae_name:
            p.extra_infotext["VAE hash"] = job.vae_hash
            p.extra_infotext["VAE"] = job.vae_name
        p.extra_infotext.update(job.infotext())
        p.comments.extend(job.comments)
