"""A1111 prompt syntax: attention weights, BREAK, prompt editing, alternation.

Expected values come from A1111's own documented examples (doctests in its
modules/prompt_parser.py) and from running its reference grammar by hand.
"""

import math

import pytest

from webui.generation.prompt_parser import (
    BREAK,
    PromptRun,
    get_prompt_schedule,
    parse_prompt_attention,
)


def assert_runs(actual, expected):
    """Compare runs exactly on text and markers, to 1e-12 on weights."""
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected):
        if want is BREAK:
            assert got is BREAK, (actual, expected)
            continue
        assert got is not BREAK, (actual, expected)
        assert got.text == want[0], (actual, expected)
        assert math.isclose(got.weight, want[1], rel_tol=0, abs_tol=1e-12), (actual, expected)


# --- attention ----------------------------------------------------------------------


def test_explicit_weight_then_plain_text():
    assert_runs(
        parse_prompt_attention("(masterpiece:1.2), best quality, 1girl"),
        [("masterpiece", 1.2), (", best quality, 1girl", 1.0)],
    )


def test_double_parentheses_multiply():
    assert_runs(
        parse_prompt_attention("((monochrome)),((grayscale))"),
        [("monochrome", 1.1 * 1.1), (",", 1.0), ("grayscale", 1.1 * 1.1)],
    )


def test_integer_weight():
    assert_runs(parse_prompt_attention("(worst quality:2)"), [("worst quality", 2.0)])


def test_escaped_parentheses_are_literal():
    assert_runs(parse_prompt_attention(r"\(escaped\)"), [("(escaped)", 1.0)])
    assert_runs(parse_prompt_attention(r"\(literal\]"), [("(literal]", 1.0)])
    assert_runs(parse_prompt_attention(r"a \\ b \[c\]"), [("a \\ b [c]", 1.0)])


def test_square_brackets_divide():
    assert_runs(parse_prompt_attention("[word]"), [("word", 1 / 1.1)])
    assert_runs(parse_prompt_attention("[[word]]"), [("word", 1 / 1.1 / 1.1)])


def test_a1111_documented_example_bit_for_bit():
    runs = parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    assert runs == [
        ("a ", 1.0),
        ("house", 1.5730000000000004),
        (" ", 1.1),
        ("on", 1.0),
        (" a ", 1.1),
        ("hill", 0.55),
        (", sun, ", 1.1),
        ("sky", 1.4641000000000006),
        (".", 1.1),
    ]


def test_simple_cases_from_a1111():
    assert parse_prompt_attention("normal text") == [("normal text", 1.0)]
    assert_runs(
        parse_prompt_attention("an (important) word"),
        [("an ", 1.0), ("important", 1.1), (" word", 1.0)],
    )
    # equal neighbours merge even across group boundaries
    assert_runs(parse_prompt_attention("(unnecessary)(parens)"), [("unnecessaryparens", 1.1)])


def test_unclosed_group_applies_to_rest():
    assert_runs(parse_prompt_attention("(unbalanced"), [("unbalanced", 1.1)])
    assert_runs(parse_prompt_attention("a (b [c"), [("a ", 1.0), ("b ", 1.1), ("c", 1.1 / 1.1)])


def test_unmatched_closers_and_colons_are_text():
    assert_runs(parse_prompt_attention("a) b] c:1.2) d"), [("a) b] c:1.2) d", 1.0)])


def test_space_before_weight_is_not_a_weight():
    # A1111 only reads ':number)' with no space; '(a: 1.2)' is text at 1.1.
    assert_runs(parse_prompt_attention("(a: 1.2)"), [("a: 1.2", 1.1)])


def test_negative_and_zero_weights():
    assert_runs(parse_prompt_attention("(a:-0.5) (b:0)"), [("a", -0.5), (" ", 1.0), ("b", 0.0)])


def test_malformed_weight_does_not_raise():
    assert_runs(parse_prompt_attention("(a:1.2.3)"), [("a:1.2.3", 1.1)])


def test_break_is_a_marker():
    assert parse_prompt_attention("a BREAK b") == [("a", 1.0), BREAK, ("b", 1.0)]
    # lowercase, or BREAK inside a word, is just text
    assert parse_prompt_attention("a break b BREAKING") == [("a break b BREAKING", 1.0)]
    assert parse_prompt_attention("BREAK") == [BREAK]


def test_break_inside_brackets_stays_a_break():
    assert_runs(parse_prompt_attention("(a BREAK b)"), [("a", 1.1), BREAK, ("b", 1.1)])


def test_empty_prompt_gives_one_empty_run():
    assert parse_prompt_attention("") == [PromptRun("", 1.0)]
    assert parse_prompt_attention("()") == [PromptRun("", 1.0)]


def test_long_prompt_with_break():
    first = ", ".join(f"(tag{i}:1.3)" if i % 10 == 0 else f"tag{i}" for i in range(60))
    second = ", ".join(f"word{i}" for i in range(40))
    runs = parse_prompt_attention(f"{first} BREAK [{second}]")
    assert runs.count(BREAK) == 1
    before, after = runs[: runs.index(BREAK)], runs[runs.index(BREAK) + 1 :]
    assert [r.text for r in before if r.weight != 1.0] == [f"tag{i}" for i in range(0, 60, 10)]
    assert all(math.isclose(r.weight, 1.3) for r in before if r.weight != 1.0)
    assert len(after) == 1 and after[0].text == second
    assert math.isclose(after[0].weight, 1 / 1.1)
    # no text is lost or duplicated
    assert "".join(r.text for r in before) == first.replace("(", "").replace(":1.3)", "")


# --- prompt editing and alternation -------------------------------------------------


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("test", [(10, "test")]),
        ("a [b:3]", [(3, "a "), (10, "a b")]),
        ("a [b: 3]", [(3, "a "), (10, "a b")]),
        ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
        ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
        ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
        ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
        ("a [unbalanced", [(10, "a [unbalanced")]),
        ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
        ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
        ("[cat:dog:0.5] park", [(5, "cat park"), (10, "dog park")]),
        ("[from::4]", [(4, "from"), (10, "")]),
        ("([a:b:2])", [(2, "(a)"), (10, "(b)")]),
        ("[a:b]", [(10, "[a:b]")]),
        ("[a:b:1.0]", [(10, "a")]),  # "1.0" is 100% of the steps
        ("[a:b:1]", [(1, "a"), (10, "b")]),  # "1" is step 1
        ("[a:b:0]", [(10, "b")]),
        ("[a:1e1]", [(10, "")]),
        ("[a:b:c] [d:4]", [(4, "[a:b:c] "), (10, "[a:b:c] d")]),
        (r"\[a:b:3\]", [(10, r"\[a:b:3\]")]),
    ],
)
def test_schedule_matches_a1111(prompt, expected):
    assert get_prompt_schedule(prompt, 10) == expected


def test_invalid_syntax_is_used_verbatim():
    # a '|' outside an alternation makes A1111's grammar fail as a whole
    assert get_prompt_schedule("(a|b) [c:d:3]", 10) == [(10, "(a|b) [c:d:3]")]
    assert get_prompt_schedule("a [{b|d{:.5] c", 10) == [(10, "a [{b|d{:.5] c")]


def test_alternation_every_step():
    assert get_prompt_schedule("[a|(b:1.1)]", 4) == [(1, "a"), (2, "(b:1.1)"), (3, "a"), (4, "(b:1.1)")]
    assert get_prompt_schedule("[fe|]male", 4) == [(1, "female"), (2, "male"), (3, "female"), (4, "male")]
    assert get_prompt_schedule("[fe|||]male", 5) == [
        (1, "female"),
        (2, "male"),
        (3, "male"),
        (4, "male"),
        (5, "female"),
    ]


def test_a1111_header_example_100_steps():
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][: in background:0.25] [shoddy:masterful:0.5]"
    )
    assert get_prompt_schedule(prompt, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


def test_hires_and_old_scheduling():
    assert get_prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [(10, "a b c")]
    assert get_prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]
    assert get_prompt_schedule("a [b:12] c", 10, hires_steps=10) == [(2, "a  c"), (10, "a b c")]
    # legacy rule: below 1 is a fraction, otherwise a step, decimal point or not
    assert get_prompt_schedule("[a:b:1.0]", 10, use_old_scheduling=True) == [(1, "a"), (10, "b")]
    assert get_prompt_schedule("[a:b:0.3]", 10, use_old_scheduling=True) == [(3, "a"), (10, "b")]


def test_schedule_keeps_attention_syntax_for_the_second_pass():
    schedule = get_prompt_schedule(r"(red:1.3) [\(cat\):dog:0.5], BREAK x", 4)
    assert schedule == [(2, r"(red:1.3) \(cat\), BREAK x"), (4, "(red:1.3) dog, BREAK x")]
    assert_runs(
        parse_prompt_attention(schedule[0][1]),
        [("red", 1.3), (" (cat),", 1.0), BREAK, ("x", 1.0)],
    )


def test_huge_values_and_deep_nesting_do_not_crash():
    assert get_prompt_schedule("[a:b:1e999]", 10) == [(10, "a")]
    assert get_prompt_schedule("[a:b:-1e999]", 10) == [(10, "b")]
    deep = "[" * 3000 + "x"
    assert get_prompt_schedule(deep, 10) == [(10, deep)]
    nested = "(" * 50 + "[a:b:3]" + ")" * 50
    assert get_prompt_schedule(nested, 10) == [(3, nested.replace("[a:b:3]", "a")), (10, nested.replace("[a:b:3]", "b"))]


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps"):
        get_prompt_schedule("a", 0)
