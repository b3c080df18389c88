"""LoRA and VAE cost on the real-size random SD 1.5, as ratios in one run.

Makes (once, under tmp/bench-networks/) two random kohya LoRA files of SD 1.5's real layer shapes:
`lora-r32` (rank 32 on kohya's default targets: every Linear / 1x1 conv in the UNet's transformer
blocks and the text encoder's attention and MLP) and `locon-r128` (rank 128, the same targets plus
the 3x3 convs of the ResNet blocks, down- and upsamplers, as LyCORIS LoCon does), and one random
VAE of SD 1.5's shape. Then, with the checkpoint loaded through the model manager:

- per-step time: one UNet forward (a sampler step: batch 2 for CFG) with both LoRAs' changes in
  the weights vs the original weights, same RAM held in both states, in A B B A rounds (median of
  the rounds' ratios); goal <= 1.01x; plus the RAM the exact-restore copies take;
- apply time of both (first time: read + parse + patch; again with other weights: patch only),
  remove time (restore every layer), and that restore is bit-exact, fp32 and fp16;
- VAE swap time (file -> model, cached file -> model, back to the checkpoint's own).

    .venv/bin/python tools/make_random_sd15.py      # once, about 2 GB under tmp/
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/networks.py [--size 256] [--rounds 4]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

CHECKPOINT = REPO / "tmp" / "random-sd15" / "random-sd15.safetensors"
WORK = REPO / "tmp" / "bench-networks"


def lora_targets(pipe, with_convs: bool) -> list[tuple[str, str, torch.nn.Module]]:
    """(kohya key, component, module) of kohya's default LoRA targets (+ LoCon's 3x3 convs)."""
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    out = []
    parents = (Transformer2DModel,) + ((ResnetBlock2D, Downsample2D, Upsample2D) if with_convs else ())
    for name, parent in pipe.unet.named_modules():
        if isinstance(parent, parents):
            for child, module in parent.named_modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and child:
                    if isinstance(module, torch.nn.Conv2d) and module.kernel_size != (1, 1) and not with_convs:
                        continue
                    full = f"{name}.{child}"
                    out.append(("lora_unet_" + full.replace(".", "_"), "unet", module))
    for name, module in pipe.text_encoder.named_modules():
        if isinstance(module, torch.nn.Linear) and (".self_attn." in name or ".mlp." in name):
            out.append(("lora_te_text_model_" + name.replace(".", "_"), "text_encoder", module))
    return out


def write_lora(pipe, path: Path, rank: int, with_convs: bool, seed: int) -> int:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    state = {}
    targets = lora_targets(pipe, with_convs)
    for key, _, module in targets:
        w = module.weight
        r = min(rank, w.shape[0], w.shape[1])
        down_shape = (r, w.shape[1], *w.shape[2:]) if w.ndim == 4 else (r, w.shape[1])
        up_shape = (w.shape[0], r, 1, 1) if w.ndim == 4 else (w.shape[0], r)
        state[f"{key}.lora_down.weight"] = (torch.randn(down_shape, generator=g) * 0.01).half()
        state[f"{key}.lora_up.weight"] = (torch.randn(up_shape, generator=g) * 0.01).half()
        state[f"{key}.alpha"] = torch.tensor(float(r / 2)).half()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"ss_base_model_version": "sd_v1", "ss_network_dim": str(rank)})
    return len(targets)


def write_vae(pipe, path: Path) -> None:
    import copy

    from safetensors.torch import save_file

    from webui.models.convert import vae_to_ldm

    vae = copy.deepcopy(pipe.vae)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_file({k: v.half().contiguous() for k, v in vae_to_ldm(vae, prefix="").items()}, str(path))


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def unet_step(pipe, latents, t, context) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        pipe.unet(latents, t, encoder_hidden_states=context)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--size", type=int, default=128, help="image side the UNet step is timed at")
    parser.add_argument("--rounds", type=int, default=15, help="A B B A rounds (A: original weights, B: LoRAs)")
    parser.add_argument("--out", type=Path, default=WORK / "results.json")
    args = parser.parse_args(argv)
    if not args.checkpoint.exists():
        print(f"{args.checkpoint} missing: run tools/make_random_sd15.py first", file=sys.stderr)
        return 2
    from webui.devices import choose_policy, detect
    from webui.models.manager import ModelManager
    from webui.models.networks.manager import NetworkDirs, NetworkManager
    from webui.paths import Paths
    from webui.settings import Settings

    data = WORK / "data"
    for sub in ("Lora", "VAE", "embeddings", "hypernetworks"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    paths = Paths(data_dir=data, ckpt_dir=args.checkpoint.parent, vae_dir=data / "VAE", lora_dir=data / "Lora",
                  embeddings_dir=data / "embeddings", controlnet_dir=data / "ControlNet", outputs_dir=data / "out",
                  config_file=data / "config.json", styles_file=data / "styles.csv", cache_file=data / "cache.json",
                  bundled_ckpt_dir=args.checkpoint.parent)
    settings = Settings(path=None)
    models = ModelManager(paths, settings, choose_policy(detect()))
    t0 = time.perf_counter()
    model = models.select(args.checkpoint)
    results: dict = {"checkpoint_load_s": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads()}
    pipe = model.pipe
    networks = NetworkManager(NetworkDirs([data / "Lora"], data / "embeddings", data / "hypernetworks", data / "VAE",
                                          args.checkpoint.parent), settings, paths.cache_file)
    files = {"lora-r32": (32, False, 1), "locon-r128": (128, True, 2)}
    for name, (rank, convs, seed) in files.items():
        path = data / "Lora" / f"{name}.safetensors"
        if not path.exists():
            results[f"{name}_layers"] = write_lora(pipe, path, rank, convs, seed)
        results[f"{name}_MB"] = round(path.stat().st_size / 2**20, 1)
    if not (data / "VAE" / "bench-vae.safetensors").exists():
        write_vae(pipe, data / "VAE" / "bench-vae.safetensors")
    networks.refresh()
    before = {c: digest(getattr(pipe, c)) for c in ("unet", "text_encoder")}

    def activate(prompt: str):
        with networks.activate(model, prompt, "") as job:
            return job

    t = time.perf_counter()
    job = activate("x <lora:lora-r32:0.8> <lora:locon-r128:0.6>")
    results["apply_first_s"] = round(time.perf_counter() - t, 2)  # read + parse + patch
    assert not job.comments, job.comments
    results["layers_patched"] = job.patch.layers_patched
    t = time.perf_counter()
    job = activate("x <lora:lora-r32:0.5> <lora:locon-r128:0.9>")
    results["apply_switch_weights_s"] = round(time.perf_counter() - t, 2)  # restore + patch, files cached
    t = time.perf_counter()
    job = activate("x <lora:lora-r32:0.5> <lora:locon-r128:0.9>")
    results["apply_same_set_s"] = round(time.perf_counter() - t, 4)  # nothing to do
    t = time.perf_counter()
    activate("x")
    results["remove_s"] = round(time.perf_counter() - t, 2)
    results["restore_exact_fp32"] = before == {c: digest(getattr(pipe, c)) for c in ("unet", "text_encoder")}

    side = args.size // 8
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, side, side, generator=g)
    context = torch.randn(2, 77, 768, generator=g)
    # Same memory in both states: with the LoRAs applied, keep a copy of the patched weights and
    # switch by copying originals / patched values in (a plain restore would also free the
    # backups, and on a RAM-starved shared machine the freed memory alone moves step times).
    activate("x <lora:lora-r32:0.5> <lora:locon-r128:0.9>")
    patcher = networks.patcher(pipe)
    results["backup_MB"] = round(patcher.backup_bytes() / 2**20)
    layers = [(module, original, module.weight.detach().clone()) for module, original in patcher.originals()]

    def state(loras: bool) -> None:
        with torch.no_grad():
            for module, original, patched_weight in layers:
                module.weight.copy_(patched_weight if loras else original)

    plain, patched, pair_ratios = [], [], []
    unet_step(pipe, latents, 500, context)  # warm-up
    # Each round runs A B B A back to back, so other jobs' load on the shared cores hits both
    # states alike; the round's ratio is (B + B) / (A + A), and the median over rounds is reported.
    for _ in range(args.rounds):
        times = {False: [], True: []}
        for loras in (False, True, True, False):
            state(loras)
            times[loras].append(unet_step(pipe, latents, 500, context))
        plain += times[False]
        patched += times[True]
        pair_ratios.append(sum(times[True]) / sum(times[False]))
    state(True)  # as the patcher left it, then a real restore
    del layers
    activate("x")
    results.update(step_ratio_abba_median=round(statistics.median(pair_ratios), 3),
                   step_ratio_abba_rounds=[round(r, 3) for r in pair_ratios],
                   step_s_none_median=round(statistics.median(plain), 3),
                   step_s_two_loras_median=round(statistics.median(patched), 3),
                   step_ratio_median=round(statistics.median(patched) / statistics.median(plain), 3),
                   step_ratio_min=round(min(patched) / min(plain), 3),
                   step_samples_none=[round(x, 3) for x in plain], step_samples_loras=[round(x, 3) for x in patched],
                   step_size=args.size)

    t = time.perf_counter()
    networks.apply_vae(model, "bench-vae.safetensors")
    results["vae_swap_first_s"] = round(time.perf_counter() - t, 2)  # read + convert + copy
    t = time.perf_counter()
    networks.apply_vae(model, "None")
    results["vae_back_to_own_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    networks.apply_vae(model, "bench-vae.safetensors")
    results["vae_swap_cached_s"] = round(time.perf_counter() - t, 3)
    networks.apply_vae(model, "None")

    # fp16 weights: the same set on and off again must give back every bit.
    pipe.unet.half()
    pipe.text_encoder.half()
    half_before = {c: digest(getattr(pipe, c)) for c in ("unet", "text_encoder")}
    networks.patcher(pipe).restore()
    networks._patchers.clear()  # the fp32 patch state no longer describes these tensors
    activate("x <lora:lora-r32:0.8> <lora:locon-r128:0.6>")
    activate("x")
    results["restore_exact_fp16"] = half_before == {c: digest(getattr(pipe, c)) for c in ("unet", "text_encoder")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
