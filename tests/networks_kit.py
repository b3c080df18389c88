"""Random network files of every supported type, shaped for the tiny kit models (and real ones).

Each `make_*` returns a state dict in a file layout (kohya / LDM-named kohya / peft) plus the
expected weight change per layer, computed here with the plain formula of the type, written
independently of `webui.models.networks` (einsum / explicit kron / loops where it helps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Layers the tests change: (component, module name). Linear, 1x1 / 3x3 conv, norms, both text encoders.
UNET_LINEAR = ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
               "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
               "up_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj")
UNET_CONV3 = ("down_blocks.0.resnets.0.conv1",)
UNET_CONV1 = ("up_blocks.1.resnets.0.conv_shortcut",)
UNET_NORM = ("down_blocks.0.resnets.0.norm1",)
TE_LINEAR = ("encoder.layers.0.self_attn.q_proj", "encoder.layers.3.mlp.fc1")
TE_NORM = ("encoder.layers.1.layer_norm1",)

# The LDM (sgm) names kohya uses for SDXL UNet layers, written out by hand for the tiny SDXL
# (layers_per_block=1: input_blocks 1 = down 0 resnet, 2 = downsampler, 3 = down 1; mid = middle_block 1;
# up 0 -> output_blocks 0-1, up 1 -> output_blocks 2-3).
SDXL_LDM = {
    "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": "input_blocks_3_1_transformer_blocks_0_attn2_to_k",
    "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0": "middle_block_1_transformer_blocks_0_attn1_to_out_0",
    "up_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj": "output_blocks_1_1_transformer_blocks_0_ff_net_0_proj",
    "down_blocks.0.resnets.0.conv1": "input_blocks_1_0_in_layers_2",
    "up_blocks.1.resnets.0.conv_shortcut": "output_blocks_2_0_skip_connection",
    "down_blocks.0.resnets.0.norm1": "input_blocks_1_0_in_layers_0",
}


@dataclass
class Layer:
    component: str  # "unet" | "text_encoder" | "text_encoder_2"
    name: str
    module: torch.nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight.detach().float()


def layers(pipe, names=UNET_LINEAR + UNET_CONV3 + UNET_CONV1, te=TE_LINEAR) -> list[Layer]:
    out = [Layer("unet", n, pipe.unet.get_submodule(n)) for n in names]
    out += [Layer("text_encoder", n, pipe.text_encoder.get_submodule(n)) for n in te]
    second = getattr(pipe, "text_encoder_2", None)
    if second is not None:
        out += [Layer("text_encoder_2", n, second.get_submodule("text_model." + n)) for n in te]
    return out


def kohya_key(layer: Layer, sdxl: bool, ldm: bool = False) -> str:
    """kohya's module key; SDXL UNet keys in LDM names when `ldm`."""
    if layer.component == "unet":
        if ldm:
            return "lora_unet_" + SDXL_LDM[layer.name]
        return "lora_unet_" + layer.name.replace(".", "_")
    prefix = {"text_encoder": "lora_te1_" if sdxl else "lora_te_", "text_encoder_2": "lora_te2_"}[layer.component]
    return prefix + "text_model_" + layer.name.replace(".", "_")


def peft_key(layer: Layer) -> str:
    if layer.component == "unet":
        return "unet." + layer.name
    return f"{layer.component}.text_model.{layer.name}"


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed: int, scale: float = 0.1) -> torch.Tensor:
    return torch.randn(*shape, generator=_g(seed)) * scale


def lora_tensors(layer: Layer, rank: int, seed: int, tucker: bool = False) -> tuple[dict, torch.Tensor]:
    """kohya LoRA / LoCon tensors for one layer and the raw change up@down (before alpha/rank)."""
    w = layer.weight
    out_dim, in_dim = w.shape[0], w.shape[1]
    if w.ndim == 4 and tucker:
        kh, kw = w.shape[2:]
        down = rand(rank, in_dim, 1, 1, seed=seed)
        mid = rand(rank, rank, kh, kw, seed=seed + 1)
        up = rand(out_dim, rank, 1, 1, seed=seed + 2)
        change = torch.zeros_like(w)
        for n in range(rank):  # sum over the core, term by term
            for m in range(rank):
                change += up[:, n, 0, 0][:, None, None, None] * mid[n, m][None, None] * down[m, :, 0, 0][None, :, None, None]
        return {"lora_down.weight": down, "lora_mid.weight": mid, "lora_up.weight": up}, change
    if w.ndim == 4:
        down = rand(rank, in_dim, *w.shape[2:], seed=seed)
        up = rand(out_dim, rank, 1, 1, seed=seed + 2)
        change = torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
    else:
        down = rand(rank, in_dim, seed=seed)
        up = rand(out_dim, rank, seed=seed + 2)
        change = torch.einsum("or,ri->oi", up, down)
    return {"lora_down.weight": down, "lora_up.weight": up}, change


def loha_tensors(layer: Layer, rank: int, seed: int) -> tuple[dict, torch.Tensor]:
    w = layer.weight
    flat_in = w[0].numel()
    t = {"hada_w1_a": rand(w.shape[0], rank, seed=seed), "hada_w1_b": rand(rank, flat_in, seed=seed + 1),
         "hada_w2_a": rand(w.shape[0], rank, seed=seed + 2), "hada_w2_b": rand(rank, flat_in, seed=seed + 3)}
    change = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
    return t, change.reshape(w.shape)


def loha_tucker_tensors(layer: Layer, rank: int, seed: int) -> tuple[dict, torch.Tensor]:
    w = layer.weight  # a 3x3 conv
    out_dim, in_dim, kh, kw = w.shape
    t = {"hada_t1": rand(rank, rank, kh, kw, seed=seed), "hada_w1_a": rand(rank, out_dim, seed=seed + 1),
         "hada_w1_b": rand(rank, in_dim, seed=seed + 2), "hada_t2": rand(rank, rank, kh, kw, seed=seed + 3),
         "hada_w2_a": rand(rank, out_dim, seed=seed + 4), "hada_w2_b": rand(rank, in_dim, seed=seed + 5)}

    def part(core, a, b):  # [out, in, kh, kw] = sum_ij a[i, out] core[i, j] b[j, in]
        return torch.einsum("io,ijhw,jn->onhw", a, core, b)

    change = part(t["hada_t1"], t["hada_w1_a"], t["hada_w1_b"]) * part(t["hada_t2"], t["hada_w2_a"], t["hada_w2_b"])
    return t, change


def kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product of two 2-D matrices by explicit blocks."""
    rows = [torch.cat([a[i, j] * b for j in range(a.shape[1])], dim=1) for i in range(a.shape[0])]
    return torch.cat(rows, dim=0)


def lokr_tensors(layer: Layer, rank: int, seed: int) -> tuple[dict, torch.Tensor]:
    w = layer.weight
    out_dim, flat_in = w.shape[0], w[0].numel()
    w1 = rand(2, 2, seed=seed, scale=1.0)
    w2a = rand(out_dim // 2, rank, seed=seed + 1)
    w2b = rand(rank, flat_in // 2, seed=seed + 2)
    change = kron(w1, w2a @ w2b)
    if w.ndim == 4:  # conv: the flattened kernel is the input dimension; rebuild per LyCORIS
        w2 = (w2a @ w2b).reshape(out_dim // 2, w.shape[1] // 2, *w.shape[2:])
        change = torch.einsum("ab,cdhw->acbdhw", w1, w2).reshape(w.shape)
        return {"lokr_w1": w1, "lokr_w2": w2}, change
    return {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b}, change.reshape(w.shape)


def ia3_tensors(layer: Layer, seed: int, on_input: bool) -> tuple[dict, torch.Tensor]:
    w = layer.weight
    if on_input:
        vec = rand(w.shape[1], seed=seed)
        change = torch.stack([w[:, j] * vec[j] for j in range(w.shape[1])], dim=1)
    else:
        vec = rand(w.shape[0], seed=seed)
        change = torch.stack([w[i] * vec[i] for i in range(w.shape[0])], dim=0)
    return {"weight": vec, "on_input": torch.tensor(on_input)}, change


def oft_tensors(layer: Layer, blocks: int, seed: int) -> tuple[dict, torch.Tensor]:
    w = layer.weight
    size = w.shape[0] // blocks
    q = rand(blocks, size, size, seed=seed)
    rotated = []
    for k in range(blocks):
        r = torch.eye(size) + (q[k] - q[k].T)
        rotated.append(r.T @ w[k * size:(k + 1) * size].reshape(size, -1))
    return {"oft_diag": q}, torch.cat(rotated).reshape(w.shape) - w


def dora_weight(weight: torch.Tensor, change: torch.Tensor, magnitude: torch.Tensor, per_row: bool) -> torch.Tensor:
    """W' = m * (W + dW) / ||W + dW||, norms per input column (kohya) or per output row (peft)."""
    merged = weight + change
    flat = merged.reshape(merged.shape[0], merged.shape[1], -1)
    if per_row:
        norms = flat.pow(2).sum(dim=(1, 2)).sqrt()
        return merged * (magnitude.reshape(-1) / norms).reshape(-1, *[1] * (weight.ndim - 1))
    norms = flat.pow(2).sum(dim=(0, 2)).sqrt()
    return merged * (magnitude.reshape(-1) / norms).reshape(1, -1, *[1] * (weight.ndim - 2))


def write_lora(path, pipe, arch: str, seed: int = 0, metadata: dict | None = None, strength: float = 20.0) -> None:
    """A kohya LoRA over `layers(pipe)`, strong enough to move the tiny model's pixels."""
    from safetensors.torch import save_file

    state = {}
    for i, layer in enumerate(layers(pipe)):
        tensors, _ = lora_tensors(layer, 4, seed=seed + 10 * i)
        key = kohya_key(layer, arch == "sdxl", ldm=arch == "sdxl" and layer.component == "unet")
        state.update({f"{key}.{p}": t * strength for p, t in tensors.items()})
        state[f"{key}.alpha"] = torch.tensor(4.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)


def populate(data) -> None:
    """A data dir with every network kind for the tiny SD 1.x model (and some that must be refused).

    models/Lora: style (alias style-alias, kohya metadata), sub/other, xl-only (SDXL shapes), broken;
    embeddings/bluesq (the token vectors of "blue square"); models/hypernetworks/hyper.pt;
    models/VAE: alt.safetensors (decoder x1.3) and sdxl_vae.safetensors (same weights, SDXL by name).
    """
    import copy
    from pathlib import Path

    from safetensors.torch import save_file

    from tests.kit import build_pipeline
    from tests.test_networks_hypernet import write_hypernet
    from webui.models.convert import vae_to_ldm

    data = Path(data)
    sd15, sdxl = build_pipeline("sd15"), build_pipeline("sdxl")
    meta = {"ss_output_name": "style-alias", "ss_base_model_version": "sd_v1", "ss_network_dim": "4",
            "ss_network_alpha": "4.0", "ss_tag_frequency": '{"shapes": {"red circle": 12, "blue square": 3}}'}
    write_lora(data / "models" / "Lora" / "style.safetensors", sd15, "sd15", metadata=meta)
    write_lora(data / "models" / "Lora" / "sub" / "other.safetensors", sd15, "sd15", seed=7)
    write_lora(data / "models" / "Lora" / "xl-only.safetensors", sdxl, "sdxl")
    (data / "models" / "Lora" / "broken.safetensors").write_bytes(b"\x20\x00\x00\x00\x00\x00\x00\x00{")
    ids = sd15.tokenizer("blue square", add_special_tokens=False)["input_ids"]
    words = sd15.text_encoder.get_input_embeddings().weight[ids]
    (data / "embeddings").mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": words.detach().clone()}, str(data / "embeddings" / "bluesq.safetensors"))
    (data / "models" / "hypernetworks").mkdir(parents=True, exist_ok=True)
    write_hypernet(data / "models" / "hypernetworks" / "hyper.pt", widths=(32, 64))
    alt = copy.deepcopy(sd15.vae)
    with torch.no_grad():
        for p in alt.decoder.parameters():
            p.mul_(1.3)
    (data / "models" / "VAE").mkdir(parents=True, exist_ok=True)
    ldm = {k: v.contiguous() for k, v in vae_to_ldm(alt, prefix="").items()}
    save_file(ldm, str(data / "models" / "VAE" / "alt.safetensors"))
    save_file(ldm, str(data / "models" / "VAE" / "sdxl_vae.safetensors"))
