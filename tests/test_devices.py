"""The device table in the README, branch by branch, with faked devices."""
import pytest
import torch

from webui.devices import CudaInfo, DeviceError, DeviceInfo, PolicyFlags, choose_policy

GB = 1024**3


def cuda(name, cc, vram_gb):
    return DeviceInfo(cuda=CudaInfo(0, name, cc, int(vram_gb * GB), int(vram_gb * GB * 0.9)),
                      cpu_cores=8, ram_bytes=32 * GB, torch_cuda_build=True, xformers=True)


AMPERE_24 = cuda("NVIDIA GeForce RTX 3090", (8, 6), 24)
TURING_8 = cuda("NVIDIA GeForce RTX 2070", (7, 5), 8)
PASCAL_4 = cuda("NVIDIA GeForce GTX 1050 Ti", (6, 1), 4)
CPU = DeviceInfo(cpu_cores=2, ram_bytes=24 * GB)
MPS = DeviceInfo(mps=True, cpu_cores=8, ram_bytes=16 * GB)


def test_ampere_24gb_fp16_bf16_vae_no_offload():
    p = choose_policy(AMPERE_24)
    assert (p.device, p.unet_dtype, p.text_dtype, p.vae_dtype) == ("cuda:0", torch.float16, torch.float16, torch.bfloat16)
    assert (p.attention, p.memory_mode, p.vae_tiling) == ("sdpa", "none", False)


def test_turing_8gb_model_offload_and_tiling():
    p = choose_policy(TURING_8)
    assert (p.unet_dtype, p.vae_dtype) == (torch.float16, torch.float16)
    assert (p.memory_mode, p.vae_tiling) == ("model-offload", True)
    assert any("8 GB" in r for r in p.reasons)


def test_pascal_4gb_sequential_offload_fp32_vae():
    p = choose_policy(PASCAL_4)
    assert (p.unet_dtype, p.vae_dtype) == (torch.float16, torch.float32)
    assert (p.memory_mode, p.vae_tiling) == ("sequential-offload", True)


def test_gtx16_runs_full_precision():
    p = choose_policy(cuda("NVIDIA GeForce GTX 1660 SUPER", (7, 5), 6))
    assert p.unet_dtype == p.vae_dtype == torch.float32


def test_old_cuda_generation_float32():
    p = choose_policy(cuda("Tesla K80", (3, 7), 12))
    assert p.unet_dtype == torch.float32 and p.memory_mode == "none"


def test_cpu_float32_no_offload():
    p = choose_policy(CPU)
    assert (p.device, p.unet_dtype, p.vae_dtype, p.memory_mode, p.attention) == ("cpu", torch.float32, torch.float32, "none", "sdpa")


def test_mps_half_with_fp32_vae():
    p = choose_policy(MPS)
    assert (p.device, p.unet_dtype, p.vae_dtype, p.memory_mode) == ("mps", torch.float16, torch.float32, "none")


@pytest.mark.parametrize("flags,unet,vae", [
    (PolicyFlags(no_half=True), torch.float32, torch.float32),
    (PolicyFlags(precision="full"), torch.float32, torch.float32),
    (PolicyFlags(no_half_vae=True), torch.float16, torch.float32),
    (PolicyFlags(precision="half"), torch.float16, torch.float16),
])
def test_precision_flags_win(flags, unet, vae):
    p = choose_policy(AMPERE_24, flags)
    assert (p.unet_dtype, p.vae_dtype) == (unet, vae)


def test_precision_half_ignored_on_cpu():
    assert choose_policy(CPU, PolicyFlags(precision="half")).unet_dtype == torch.float32


def test_memory_flags_win_over_vram():
    assert choose_policy(AMPERE_24, PolicyFlags(medvram=True)).memory_mode == "model-offload"
    assert choose_policy(AMPERE_24, PolicyFlags(lowvram=True)).memory_mode == "sequential-offload"
    # --medvram on a 4 GB card is the user's choice over the automatic --lowvram
    assert choose_policy(PASCAL_4, PolicyFlags(medvram=True)).memory_mode == "model-offload"


def test_memory_flags_ignored_on_cpu_with_reason():
    p = choose_policy(CPU, PolicyFlags(lowvram=True))
    assert p.memory_mode == "none" and any("ignored" in r for r in p.reasons)


def test_xformers_only_when_available_on_cuda():
    assert choose_policy(AMPERE_24, PolicyFlags(xformers=True)).attention == "xformers"
    p = choose_policy(CPU, PolicyFlags(xformers=True))
    assert p.attention == "sdpa" and any("xformers" in r for r in p.reasons)


def test_use_cpu_overrides_gpu():
    p = choose_policy(AMPERE_24, PolicyFlags(use_cpu=True))
    assert p.device == "cpu" and p.unet_dtype == torch.float32 and p.memory_mode == "none"


def test_cuda_expected_but_absent_is_an_error_unless_skipped():
    broken = DeviceInfo(cpu_cores=4, ram_bytes=8 * GB, torch_cuda_build=True)
    with pytest.raises(DeviceError, match="--skip-torch-cuda-test"):
        choose_policy(broken)
    with pytest.raises(DeviceError):
        choose_policy(CPU, PolicyFlags(device_id=1))
    p = choose_policy(broken, PolicyFlags(skip_torch_cuda_test=True))
    assert p.device == "cpu" and p.unet_dtype == torch.float32


def test_device_id_selects_card():
    info = DeviceInfo(cuda=CudaInfo(1, "NVIDIA A100", (8, 0), 40 * GB, 39 * GB), torch_cuda_build=True)
    assert choose_policy(info, PolicyFlags(device_id=1)).device == "cuda:1"


def test_describe_is_one_line_with_reasons():
    line = choose_policy(TURING_8).describe()
    assert "\n" not in line
    for part in ("cuda:0", "float16", "sdpa", "model-offload", "8 GB"):
        assert part in line
