"""LoRA-family weight patching: every type's patched weights against the type's formula, on the tiny
SD 1.x and SDXL pipelines, in kohya / LDM-kohya / peft layouts; exact restore, fp16 too."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests import networks_kit as nk
from tests.kit import build_pipeline
from webui.models.errors import ModelLoadError
from webui.models.networks.keys import ModuleIndex
from webui.models.networks.network import bind, load_network, network_from_state_dict
from webui.models.networks.patcher import Activation, WeightPatcher


@pytest.fixture(scope="module")
def pipes():
    return {arch: build_pipeline(arch) for arch in ("sd15", "sdxl")}


def snapshot(pipe) -> dict[str, torch.Tensor]:
    out = {}
    for comp in ("unet", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, comp, None)
        if module is not None:
            out.update({f"{comp}.{k}": v.clone() for k, v in module.state_dict().items()})
    return out


def assert_exact(before: dict, pipe) -> None:
    after = snapshot(pipe)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"{len(changed)} tensors differ after restore, e.g. {changed[0]}"


def apply(pipe, arch, state, te=1.0, unet=1.0, metadata=None, name="net"):
    network = network_from_state_dict(state, name, metadata)
    bound = bind(network, ModuleIndex(pipe), arch)
    assert bound.problem is None, bound.problem
    patcher = WeightPatcher()
    patcher.apply([Activation(bound, te, unet)])
    return patcher, bound


def build(pipe, arch, make, layout="kohya", targets=None):
    """State dict + {layer: expected new weight (float32)} for one type; `make(layer, i) -> (tensors, delta)`."""
    sdxl = arch == "sdxl"
    state, expected = {}, {}
    for i, layer in enumerate(targets or nk.layers(pipe)):
        tensors, delta = make(layer, i)
        if layout == "peft":
            key = nk.peft_key(layer)
        else:
            key = nk.kohya_key(layer, sdxl, ldm=(layout == "ldm" and layer.component == "unet"))
        state.update({f"{key}.{p}": t for p, t in tensors.items()})
        expected[(layer.component, layer.name)] = (layer, layer.weight + delta)
    return state, expected


def check(expected, atol=1e-5):
    for (comp, name), (layer, want) in expected.items():
        got = layer.module.weight.detach().float()
        assert torch.allclose(got, want, atol=atol, rtol=1e-4), \
            f"{comp}.{name}: max diff {(got - want).abs().max():.3g}"


ARCHES = ("sd15", "sdxl")


# LDM-named kohya UNet keys are how SDXL LoRAs are written; SD 1.x kohya files use diffusers names.
@pytest.mark.parametrize("arch,layout", [("sd15", "kohya"), ("sd15", "peft"), ("sdxl", "kohya"), ("sdxl", "ldm"),
                                         ("sdxl", "peft")])
def test_lora_and_locon_follow_up_times_down_times_alpha_over_rank(pipes, arch, layout):
    pipe = pipes[arch]
    before = snapshot(pipe)
    rank, alpha, mult = 4, 2.0, 0.7

    def make(layer, i):
        tensors, change = nk.lora_tensors(layer, rank, seed=10 * i)
        if layout == "peft":  # peft: A = down, B = up; no alpha -> scale 1
            return {"lora_A.weight": tensors["lora_down.weight"], "lora_B.weight": tensors["lora_up.weight"]}, change * mult
        tensors["alpha"] = torch.tensor(alpha)
        return tensors, change * (alpha / rank) * mult

    state, expected = build(pipe, arch, make, layout)
    patcher, bound = apply(pipe, arch, state, te=mult, unet=mult)
    assert len(bound.layers) == len(expected) and not bound.unmatched
    check(expected)
    patcher.apply([])
    assert_exact(before, pipe)


@pytest.mark.parametrize("arch", ARCHES)
def test_te_and_unet_multipliers_apply_to_their_own_layers(pipes, arch):
    pipe = pipes[arch]
    before = snapshot(pipe)

    def make(layer, i):
        tensors, change = nk.lora_tensors(layer, 2, seed=i)
        return tensors, change * (0.25 if layer.component == "unet" else -1.5)

    state, expected = build(pipe, arch, make)
    patcher, _ = apply(pipe, arch, state, te=-1.5, unet=0.25)
    check(expected)
    patcher.restore()
    assert_exact(before, pipe)


def _with_alpha(pair, alpha, rank):
    tensors, change = pair
    return {**tensors, "alpha": torch.tensor(alpha)}, change * alpha / rank


def _lokr(layer, i):
    tensors, change = nk.lokr_tensors(layer, 2, seed=i)
    if "lokr_w2_a" in tensors:  # low-rank second factor: alpha / rank applies
        return _with_alpha((tensors, change), 1.0, 2)
    return tensors, change  # both factors full: LyCORIS ignores alpha


def _full(layer, i):
    diff = nk.rand(*layer.weight.shape, seed=i)
    return {"diff": diff, "diff_b": nk.rand(layer.weight.shape[0], seed=i + 1)}, diff


def _norm(layer, i):
    diff = nk.rand(*layer.weight.shape, seed=i)
    return {"w_norm": diff, "b_norm": nk.rand(*layer.weight.shape, seed=i + 1)}, diff


_LINEAR = nk.UNET_LINEAR[:2]
TYPES = {  # kind: (make(layer, i) -> (tensors, delta), UNet layers, text-encoder layers)
    "locon_tucker": (lambda l, i: _with_alpha(nk.lora_tensors(l, 4, seed=i, tucker=True), 3.0, 4), nk.UNET_CONV3, ()),
    "loha": (lambda l, i: _with_alpha(nk.loha_tensors(l, 4, seed=i), 1.0, 4), _LINEAR + nk.UNET_CONV3, nk.TE_LINEAR),
    "loha_tucker": (lambda l, i: _with_alpha(nk.loha_tucker_tensors(l, 4, seed=i), 2.0, 4), nk.UNET_CONV3, ()),
    "lokr": (_lokr, _LINEAR + nk.UNET_CONV3, nk.TE_LINEAR),
    "ia3": (lambda l, i: nk.ia3_tensors(l, seed=i, on_input=bool(i % 2)), _LINEAR, nk.TE_LINEAR),
    "full": (_full, _LINEAR + nk.UNET_CONV3, nk.TE_LINEAR),
    "norm": (_norm, nk.UNET_NORM, nk.TE_NORM),
    "oft": (lambda l, i: nk.oft_tensors(l, 4, seed=i), _LINEAR + nk.UNET_CONV3, ()),
}


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("kind", sorted(TYPES))
def test_every_lycoris_type_matches_its_formula_and_restores_exactly(pipes, arch, kind, tmp_path):
    pipe = pipes[arch]
    before = snapshot(pipe)
    make, unet_layers, te_layers = TYPES[kind]
    targets = nk.layers(pipe, unet_layers, te_layers)
    state, expected = build(pipe, arch, make, targets=targets)
    # Through a real file: the loader must read what kohya / LyCORIS write.
    path = tmp_path / f"{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    network = load_network(path)
    assert {m.kind for m in network.modules.values()} == {kind.split("_")[0].replace("locon", "lora")}
    bound = bind(network, ModuleIndex(pipe), arch)
    assert bound.problem is None and len(bound.layers) == len(targets)
    patcher = WeightPatcher()
    patcher.apply([Activation(bound)])
    check(expected, atol=2e-5)
    if kind in ("full", "norm"):  # their bias changes land in the layer's bias
        for (comp, name), (layer, _) in expected.items():
            key = nk.kohya_key(layer, arch == "sdxl")
            want_bias = state.get(f"{key}.diff_b", state.get(f"{key}.b_norm"))
            # A layer without a bias (to_k) gets one, and loses it again on restore.
            old_bias = before.get(f"{comp}.{prefix(comp, name)}.bias", torch.zeros_like(want_bias))
            assert torch.allclose(layer.module.bias.detach().float(), old_bias + want_bias, atol=1e-6)
    patcher.apply([])
    assert_exact(before, pipe)


def prefix(comp, name):
    return ("text_model." + name) if comp == "text_encoder_2" else name


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("layout", ["kohya", "peft"])
def test_dora_renormalises_to_the_stored_magnitude(pipes, arch, layout):
    pipe = pipes[arch]
    before = snapshot(pipe)
    targets = nk.layers(pipe, nk.UNET_LINEAR[:1] + nk.UNET_CONV3, nk.TE_LINEAR[:1])
    mult = 0.8

    def make(layer, i):
        tensors, change = nk.lora_tensors(layer, 4, seed=i)
        w = layer.weight
        if layout == "peft":
            magnitude = 1 + nk.rand(w.shape[0], seed=i + 5)
            tensors = {"lora_A.weight": tensors["lora_down.weight"], "lora_B.weight": tensors["lora_up.weight"],
                       "lora_magnitude_vector": magnitude}
            new = nk.dora_weight(w, change, magnitude, per_row=True)
        else:
            magnitude = 1 + nk.rand(1, w.shape[1], *([1, 1] if w.ndim == 4 else []), seed=i + 5)
            tensors = {**tensors, "alpha": torch.tensor(4.0), "dora_scale": magnitude}
            new = nk.dora_weight(w, change, magnitude, per_row=False)
        return tensors, (new - w) * mult

    state, expected = build(pipe, arch, make, layout=layout, targets=targets)
    patcher, _ = apply(pipe, arch, state, te=mult, unet=mult)
    check(expected, atol=2e-5)
    patcher.apply([])
    assert_exact(before, pipe)


def test_two_networks_add_and_switching_weights_recomputes_from_the_originals(pipes):
    pipe = pipes["sd15"]
    before = snapshot(pipe)
    layer = nk.layers(pipe, nk.UNET_LINEAR[:1], ())[0]
    key = nk.kohya_key(layer, False)
    a, da = nk.lora_tensors(layer, 2, seed=1)
    b, db = nk.lora_tensors(layer, 2, seed=2)
    index = ModuleIndex(pipe)
    net_a = bind(network_from_state_dict({f"{key}.{p}": t for p, t in a.items()}, "a"), index, "sd15")
    net_b = bind(network_from_state_dict({f"{key}.{p}": t for p, t in b.items()}, "b"), index, "sd15")
    patcher = WeightPatcher()
    patcher.apply([Activation(net_a, 1.0, 1.0), Activation(net_b, 0.5, 0.5)])
    assert torch.allclose(layer.module.weight, before[f"unet.{layer.name}.weight"] + da + 0.5 * db, atol=1e-6)
    stats = patcher.apply([Activation(net_a, 1.0, 1.0), Activation(net_b, 0.5, 0.5)])
    assert stats.skipped and stats.layers_patched == 0  # same set: nothing to do
    patcher.apply([Activation(net_b, -1.0, -1.0)])
    assert torch.allclose(layer.module.weight, before[f"unet.{layer.name}.weight"] - db, atol=1e-6)
    assert patcher.applied_names == ["b"]
    patcher.apply([Activation(net_a, 0.0, 0.0)])  # weight 0 leaves every layer untouched
    assert_exact(before, pipe)


def test_fp16_weights_restore_bit_exactly():
    pipe = build_pipeline("sd15")
    pipe.unet.to(torch.float16)
    pipe.text_encoder.to(torch.float16)
    before = snapshot(pipe)
    state, _ = build(pipe, "sd15", lambda layer, i: nk.lora_tensors(layer, 4, seed=i))
    for cycle in range(3):
        patcher, bound = apply(pipe, "sd15", state, te=1.0 + cycle, unet=0.3 * cycle + 0.1)
        assert any(not torch.equal(before[f"unet.{n.name}.weight"], n.module.weight) for n, _ in bound.layers
                   if n.component == "unet")
        patcher.apply([])
        assert_exact(before, pipe)


def test_a_network_for_another_base_is_refused_whole(pipes):
    sd15, sdxl = pipes["sd15"], pipes["sdxl"]
    state, _ = build(sdxl, "sdxl", lambda layer, i: nk.lora_tensors(layer, 2, seed=i))
    bound = bind(network_from_state_dict(state, "xl-lora"), ModuleIndex(sd15), "sd15")
    assert bound.problem and not bound.layers  # SDXL te1/te2 keys don't exist, UNet shapes differ
    # Made for SDXL by its metadata: refused before any shape is looked at.
    same_shapes, _ = build(sd15, "sd15", lambda layer, i: nk.lora_tensors(layer, 2, seed=i))
    bound = bind(network_from_state_dict(same_shapes, "tagged", {"ss_base_model_version": "sdxl_base_v1-0"}),
                 ModuleIndex(sd15), "sd15")
    assert bound.problem == "made for SDXL, the loaded model is SD 1.x" and not bound.layers


def test_unreadable_and_foreign_files_are_refused_with_their_name(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        load_network(bad)
    other = tmp_path / "weights.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ModelLoadError, match="not a LoRA"):
        load_network(other)


def test_a_pickled_lora_that_runs_code_is_refused_and_a_plain_pt_loads(tmp_path, pipes):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("this ran",))

    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"lora_unet_x.lora_up.weight": Payload()}, fh)
    with pytest.raises(ModelLoadError, match="evil.pt: refused"):
        load_network(tmp_path / "evil.pt")
    state, _ = build(pipes["sd15"], "sd15", lambda layer, i: nk.lora_tensors(layer, 2, seed=i))
    torch.save(state, tmp_path / "plain.pt")
    network = load_network(tmp_path / "plain.pt")
    assert network.name == "plain" and len(network.modules) == len(nk.layers(pipes["sd15"]))


def test_applied_networks_leave_no_hooks_and_keep_the_same_tensors(pipes):
    """Zero per-step cost by construction: the UNet runs its own modules on the same storage."""
    pipe = pipes["sd15"]
    modules = list(pipe.unet.modules()) + list(pipe.text_encoder.modules())
    pointers = {name: p.data_ptr() for name, p in pipe.unet.named_parameters()}
    state, _ = build(pipe, "sd15", lambda layer, i: nk.lora_tensors(layer, 4, seed=i))
    patcher, bound = apply(pipe, "sd15", state)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in modules)
    assert [type(m) for m in pipe.unet.modules()] == [type(m) for m in modules[:len(list(pipe.unet.modules()))]]
    assert {name: p.data_ptr() for name, p in pipe.unet.named_parameters()} == pointers
    patcher.apply([])


def test_originals_of_an_fp32_model_from_an_fp16_file_are_kept_as_fp16_and_restore_exactly():
    from webui.models.networks.patcher import compact_copy

    exact = torch.randn(64, 32).half().float()  # what loading an fp16 checkpoint in float32 gives
    assert compact_copy(exact).dtype == torch.float16 and torch.equal(compact_copy(exact).float(), exact)
    rough = torch.randn(64, 32)
    assert compact_copy(rough).dtype == torch.float32 and torch.equal(compact_copy(rough), rough)
    pipe = build_pipeline("sd15")
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.copy_(p.half().float())
    before = snapshot(pipe)
    state, _ = build(pipe, "sd15", lambda layer, i: nk.lora_tensors(layer, 4, seed=i))
    patcher, bound = apply(pipe, "sd15", state)
    unet_layers = [t.module for t, _ in bound.layers if t.component == "unet"]
    assert all(original.dtype == torch.float16 for module, original in patcher.originals() if module in unet_layers)
    patcher.apply([])
    assert_exact(before, pipe)


@pytest.mark.parametrize("key,module,param", [
    ("lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight", "lora_unet_down_blocks_1_attentions_0_proj_in",
     "lora_up.weight"),
    ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
     "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "lora_A.weight"),
    ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight",
     "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0", "lora_down.weight"),
    ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight",
     "text_encoder.text_model.encoder.layers.0.self_attn.q_proj", "lora_up.weight"),
    ("unet.mid_block.attentions.0.proj_in.lora_magnitude_vector", "unet.mid_block.attentions.0.proj_in", "dora_scale"),
    ("lora_te1_text_model_encoder_layers_0_mlp_fc1.hada_w1_a", "lora_te1_text_model_encoder_layers_0_mlp_fc1",
     "hada_w1_a"),
])
def test_every_key_spelling_splits_into_module_and_parameter(pipes, key, module, param):
    from webui.models.networks.keys import split_key

    assert split_key(key) == (module, param)
    arch = "sdxl" if "te1" in key else "sd15"
    assert ModuleIndex(pipes[arch]).find(module) is not None  # and the module exists in the model
