"""A1111 seed semantics: random seeds, batch seeds, CPU noise, variation slerp."""

import math
import random

import pytest
import torch

from webui.generation import seeds as S

SHAPE = (4, 8, 8)


def test_same_seed_same_noise():
    a = S.make_noise(SHAPE, [1234])
    b = S.make_noise(SHAPE, [1234])
    assert a.shape == (1, *SHAPE)
    assert a.device.type == "cpu"
    assert torch.equal(a, b)
    assert not torch.equal(a, S.make_noise(SHAPE, [1235]))


def test_noise_is_a1111_cpu_rng():
    # A1111 with RNG source "CPU": torch.randn on a CPU generator seeded with the seed.
    expected = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(42))
    assert torch.equal(S.make_noise(SHAPE, [42])[0], expected)


def test_batch_of_two_equals_two_single_generations():
    seed = 987654
    batch = S.make_noise(SHAPE, [seed, seed + 1])
    assert torch.equal(batch[0], S.make_noise(SHAPE, [seed])[0])
    assert torch.equal(batch[1], S.make_noise(SHAPE, [seed + 1])[0])


def test_batch_seeds_follow_a1111():
    assert S.batch_seeds(100, 7, 0.0, 3) == ([100, 101, 102], [7, 8, 9])
    # With a variation strength every image keeps the seed; only the subseed moves.
    assert S.batch_seeds(100, 7, 0.5, 3) == ([100, 100, 100], [7, 8, 9])


def test_strength_zero_is_plain_seed_noise():
    plain = S.make_noise(SHAPE, [5, 6])
    varied = S.make_noise(SHAPE, [5, 6], subseeds=[77, 78], subseed_strength=0.0)
    assert torch.equal(plain, varied)


def test_strength_one_is_subseed_noise():
    varied = S.make_noise(SHAPE, [5], subseeds=[77], subseed_strength=1.0)
    sub = S.make_noise(SHAPE, [77])
    torch.testing.assert_close(varied, sub, atol=1e-5, rtol=1e-5)


def test_intermediate_strength_lies_between():
    base = S.make_noise(SHAPE, [5])
    sub = S.make_noise(SHAPE, [77])
    mid = S.make_noise(SHAPE, [5], subseeds=[77], subseed_strength=0.5)
    assert not torch.allclose(mid, base) and not torch.allclose(mid, sub)
    # Slerp keeps the noise's scale (plain lerp of independent noises would shrink it).
    assert mid.std().item() == pytest.approx(base.std().item(), rel=0.2)


def test_missing_subseed_uses_zero_like_a1111():
    varied = S.make_noise(SHAPE, [5, 6], subseeds=[77], subseed_strength=1.0)
    torch.testing.assert_close(varied[1], S.make_noise(SHAPE, [0])[0], atol=1e-5, rtol=1e-5)


def test_slerp_by_hand():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    # dot = 0 -> omega = pi/2, sin(omega) = 1.
    out = S.slerp(0.5, a, b)
    s = math.sin(math.pi / 4)
    torch.testing.assert_close(out, torch.tensor([[s, s]]))
    out = S.slerp(1 / 3, a, b)
    torch.testing.assert_close(out, torch.tensor([[math.sin(math.pi / 3), math.sin(math.pi / 6)]]))


def test_slerp_parallel_falls_back_to_a1111_lerp():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0]])
    # A1111's fallback weights: a * t + b * (1 - t).
    torch.testing.assert_close(S.slerp(0.3, a, b), torch.tensor([[0.3 + 1.4, 0.0]]))


def test_dtype_is_cast_after_drawing():
    half = S.make_noise(SHAPE, [3], dtype=torch.float16)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), S.make_noise(SHAPE, [3]), atol=1e-2, rtol=1e-2)


def test_generators_continue_for_per_step_noise():
    gens = S.make_generators([11, 12])
    S.make_noise(SHAPE, [11, 12], generators=gens)
    # The next draw from image 0's generator is the second tensor of seed 11's stream.
    ref = torch.Generator("cpu").manual_seed(11)
    torch.randn(SHAPE, generator=ref)
    assert torch.equal(torch.randn(SHAPE, generator=gens[0]), torch.randn(SHAPE, generator=ref))
    with pytest.raises(ValueError):
        S.make_noise(SHAPE, [1, 2], generators=S.make_generators([1]))


def test_resolve_seed():
    rng = random.Random(0)
    for _ in range(200):
        seed = S.resolve_seed(-1, rng)
        assert 0 <= seed <= S.MAX_SEED
    assert S.resolve_seed(-1, random.Random(1)) == S.resolve_seed(-1, random.Random(1))
    assert 0 <= S.resolve_seed(-1) <= S.MAX_SEED  # no rng given: a fresh one
    assert S.resolve_seed(0) == 0
    assert S.resolve_seed(123) == 123
    assert S.resolve_seed(S.MAX_SEED) == S.MAX_SEED
    with pytest.raises(ValueError):
        S.resolve_seed(-2)
    with pytest.raises(TypeError):
        S.resolve_seed("12")
