"""The linear attention parser gives A1111's weights bit for bit, and pathological prompts stay cheap."""
import math
import random
import re

import pytest

from webui.generation import attention_weights
from webui.generation.prompt_parser import BREAK, parse_prompt_attention

# A1111's algorithm as its modules/prompt_parser.py documents it: every closing bracket multiplies
# each run since the opening one, one run at a time. Quadratic, which is why the product code
# does not do this; here it is the reference the fast parser must equal bit for bit.
_TOKEN = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:")


def reference(text: str) -> list:
    res, round_brackets, square_brackets = [], [], []

    def multiply_range(start, factor):
        for run in res[start:]:
            if run is not BREAK:
                run[1] *= factor

    for m in _TOKEN.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            if len(token) == 2:
                res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            try:
                factor = float(weight)
            except ValueError:
                res.append([token[:-1], 1.0])
                factor = 1.1
            multiply_range(round_brackets.pop(), factor)
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re.split(r"\s*\bBREAK\b\s*", token, flags=re.S)):
                if i:
                    res.append(BREAK)
                if part:
                    res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    merged = []
    for run in res:
        if run is BREAK:
            merged.append(BREAK)
        elif merged and merged[-1] is not BREAK and merged[-1][1] == run[1]:
            merged[-1] = [merged[-1][0] + run[0], merged[-1][1]]
        else:
            merged.append(list(run))
    return [r if r is BREAK else (r[0], r[1]) for r in merged] or [("", 1.0)]


def same_bits(actual, expected) -> bool:
    if len(actual) != len(expected):
        return False
    for got, want in zip(actual, expected):
        if want is BREAK or got is BREAK:
            if got is not want:
                return False
        elif got.text != want[0] or not (got.weight == want[1] or (math.isnan(got.weight) and math.isnan(want[1]))) \
                or math.copysign(1, got.weight) != math.copysign(1, want[1]):
            return False
    return True


PIECES = ["(", ")", "[", "]", ":", ":1.2)", ":0.5)", ":-1)", ":0)", ":2)", "a", "bc", " ", ", ", "BREAK",
          " BREAK ", "\\(", "\\]", "\\", ":1.2.3)", "x:y", "(a:1.1)", "((b))", "[[c]]"]


def test_random_prompts_match_a1111_bit_for_bit():
    rng = random.Random(1234)
    for _ in range(3000):
        prompt = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
        assert same_bits(parse_prompt_attention(prompt), reference(prompt)), prompt


def test_deeply_nested_random_prompts_match_a1111_bit_for_bit():
    rng = random.Random(99)
    for _ in range(40):
        depth = rng.randint(50, 300)
        prompt = "".join(rng.choice(["(a", "[b", "(c:1.3)", "(d", " e"]) for _ in range(depth))
        prompt += "".join(rng.choice([")", "]", ":0.9)", ""]) for _ in range(depth))
        assert same_bits(parse_prompt_attention(prompt), reference(prompt)), prompt


def test_thirty_thousand_unclosed_groups_stay_exact_and_linear(monkeypatch):
    # The issue's prompt: A1111's loop makes 450 million multiplications for it.
    def no_fallback(*args):
        raise AssertionError("the exact path should handle unclosed groups within its budget")

    monkeypatch.setattr(attention_weights, "log_space", no_fallback)
    runs = parse_prompt_attention("(a" * 30000)
    weight, expected = 1.0, []
    for _ in range(30000):  # run i sits in i + 1 open groups, multiplied outermost first
        weight *= 1.1
        if expected and expected[-1][1] == weight:
            expected[-1] = (expected[-1][0] + "a", weight)
        else:
            expected.append(("a", weight))
    assert same_bits(runs, expected)
    assert runs[-1].weight == math.inf and len(runs[-1].text) > 20000


def test_adversarial_nesting_falls_back_to_log_space_close_to_a1111(monkeypatch):
    prompt = "(" * 400 + "".join(f"(w{i}:1.{i})" for i in range(1, 400)) + "(a" * 300 + ")" * 300
    monkeypatch.setattr(attention_weights, "EXACT_WORK_MIN", 1000)
    monkeypatch.setattr(attention_weights, "EXACT_WORK_PER_CHAR", 0)
    calls = []
    real = attention_weights.log_space
    monkeypatch.setattr(attention_weights, "log_space", lambda *a: calls.append(1) or real(*a))
    runs = parse_prompt_attention(prompt)
    expected = reference(prompt)
    assert calls, "the budget should have been exceeded"
    assert [r.text for r in runs if r is not BREAK] == [e[0] for e in expected]
    for got, want in zip(runs, expected):
        assert got.weight == pytest.approx(want[1], rel=1e-9) or got.weight == want[1] == math.inf


@pytest.mark.parametrize("prompt, expected", [
    (" " * 200_000, [(" " * 200_000, 1.0)]),  # the BREAK regex backtracks quadratically on this
    (" " * 50_000 + "x BREAK y", [(" " * 50_000 + "x", 1.0), BREAK, ("y", 1.0)]),
    ("BREAK BREAK", [BREAK, BREAK]),
    ("a\u00a0BREAK\tb", [("a", 1.0), BREAK, ("b", 1.0)]),
])
def test_break_splitting_matches_the_regex(prompt, expected):
    assert same_bits(parse_prompt_attention(prompt), expected)
    if len(prompt) < 1000:
        assert same_bits(parse_prompt_attention(prompt), reference(prompt))


@pytest.mark.parametrize("prompt", ["(a:0)(b:-1)", "((a:0):-1) BREAK [(a:-0.0)]", "(a:" + "9" * 400 + ")(b:0)"])
def test_zero_sign_and_overflow_match(prompt):
    assert same_bits(parse_prompt_attention(prompt), reference(prompt))
