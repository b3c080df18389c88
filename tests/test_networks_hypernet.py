"""Hypernetworks: A1111's .pt layout, the k / v context transform in every UNet attention layer,
multiplier 0 = no change, and hooks gone after the job."""
from __future__ import annotations

import pytest
import torch

from tests.kit import build_pipeline
from webui.models.errors import ModelLoadError
from webui.models.networks.files import NetworkFile
from webui.models.networks.hypernetworks import attach, attention_layers, load_hypernetwork


def mlp_state(dim: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"linear.0.weight": torch.randn(dim * 2, dim, generator=g) * 0.2, "linear.0.bias": torch.randn(dim * 2, generator=g) * 0.1,
            "linear.2.weight": torch.randn(dim, dim * 2, generator=g) * 0.2, "linear.2.bias": torch.randn(dim, generator=g) * 0.1}


def write_hypernet(path, widths=(32, 64)):
    """As A1111 saves one: relu between the layers, no activation after the last (activate_output False)."""
    data = {w: [mlp_state(w, 2 * w), mlp_state(w, 2 * w + 1)] for w in widths}
    data.update({"layer_structure": [1, 2, 1], "activation_func": "relu", "is_layer_norm": False,
                 "weight_initialization": "Normal", "use_dropout": False, "activate_output": False,
                 "name": "trained-name", "step": 300, "sd_checkpoint": "0123456789", "sd_checkpoint_name": "tiny"})
    torch.save(data, path)
    return data


def as_file(path) -> NetworkFile:
    st = path.stat()
    return NetworkFile("hypernetwork", path.stem, path, path.parent, st.st_size, st.st_mtime)


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline("sd15")


def unet_out(pipe):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 16, 16, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return pipe.unet(sample, 10, encoder_hidden_states=context).sample


def test_k_and_v_contexts_go_through_their_own_mlp(pipe, tmp_path):
    data = write_hypernet(tmp_path / "style.pt")
    hyper = load_hypernetwork(as_file(tmp_path / "style.pt"))
    assert hyper.name == "style" and sorted(hyper.layers) == [32, 64] and hyper.step == 300
    hyper.set_multiplier(0.6)
    cross = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2
    context = torch.randn(1, 77, 32)

    def expected(state):  # x + (W2 relu(W1 x + b1) + b2) * m, by hand
        hidden = torch.relu(context @ state["linear.0.weight"].T + state["linear.0.bias"])
        return context + (hidden @ state["linear.2.weight"].T + state["linear.2.bias"]) * 0.6

    captured = {}  # what to_k / to_v really received (forward hooks see the pre-hooked input)
    h1 = cross.to_k.register_forward_hook(lambda m, a, o: captured.__setitem__("k", a[0].clone()))
    h2 = cross.to_v.register_forward_hook(lambda m, a, o: captured.__setitem__("v", a[0].clone()))
    try:
        with attach(pipe.unet, [hyper]) as hooked, torch.no_grad():
            assert hooked == len(attention_layers(pipe.unet)) > 0
            pipe.unet(torch.randn(1, 4, 16, 16), 10, encoder_hidden_states=context)
    finally:
        h1.remove()
        h2.remove()
    assert torch.allclose(captured["k"], expected(data[32][0]), atol=1e-5)
    assert torch.allclose(captured["v"], expected(data[32][1]), atol=1e-5)


def test_multiplier_zero_and_detach_leave_the_unet_as_it_was(pipe, tmp_path):
    write_hypernet(tmp_path / "style.pt")
    hyper = load_hypernetwork(as_file(tmp_path / "style.pt"))
    baseline = unet_out(pipe)
    with attach(pipe.unet, [hyper]):
        changed = unet_out(pipe)
        hyper.set_multiplier(0.0)
        zero = unet_out(pipe)
    assert not torch.allclose(changed, baseline, atol=1e-4)
    assert torch.equal(zero, baseline)
    assert torch.equal(unet_out(pipe), baseline)  # hooks removed


def test_bad_hypernetwork_files_are_refused_with_their_name(tmp_path):
    torch.save({"layer_structure": [1, 2, 1]}, tmp_path / "empty.pt")
    with pytest.raises(ModelLoadError, match="empty: not a hypernetwork"):
        load_hypernetwork(as_file(tmp_path / "empty.pt"))
    torch.save({32: [mlp_state(32, 1), mlp_state(32, 2)], "layer_structure": [1, 3, 1]}, tmp_path / "shape.pt")
    with pytest.raises(ModelLoadError, match="shape: width 32: weights do not match"):
        load_hypernetwork(as_file(tmp_path / "shape.pt"))
