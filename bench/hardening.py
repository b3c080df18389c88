"""What the hardening costs and saves, as ratios in one run (machine load affects both sides alike).

1. Prompt attention weights: A1111's loop (every closing bracket multiplies every run since its
   opening one) against ours (`webui/generation/attention_weights.py`), on the issue's prompt
   `"(a" * n` for growing n and on a realistic prompt. A1111's time grows with n^2, ours with n.
2. The security gate: one request through `Gate` (Host, Origin, size and auth checks, headers)
   against the same ASGI app without it, per request, in process (no network).

    python bench/hardening.py [--sizes 1000,2000,4000,8000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webui.generation.prompt_parser import parse_prompt_attention  # noqa: E402
from webui.security.gate import Gate  # noqa: E402
from webui.security.policy import SecurityPolicy  # noqa: E402

REALISTIC = ("masterpiece, (best quality:1.2), 1girl, [blurry], ((detailed eyes)), (red dress:1.1), "
             "standing in a (sunlit:0.9) garden, BREAK soft lighting, [[low contrast]], (bokeh)")


def a1111_weights(text: str) -> list:
    """A1111's algorithm, run for comparison (the quadratic multiply_range loop)."""
    import re

    token = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:")
    res, rounds, squares = [], [], []

    def multiply_range(start, factor):
        for p in range(start, len(res)):
            res[p][1] *= factor

    for m in token.finditer(text):
        t, weight = m.group(0), m.group(1)
        if t == "(":
            rounds.append(len(res))
        elif t == "[":
            squares.append(len(res))
        elif weight is not None and rounds:
            multiply_range(rounds.pop(), float(weight))
        elif t == ")" and rounds:
            multiply_range(rounds.pop(), 1.1)
        elif t == "]" and squares:
            multiply_range(squares.pop(), 1 / 1.1)
        else:
            res.append([t, 1.0])
    for pos in rounds:
        multiply_range(pos, 1.1)
    for pos in squares:
        multiply_range(pos, 1 / 1.1)
    return res


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_parser(sizes: list[int], repeats: int) -> None:
    print("prompt                     A1111 loop     ours    ratio")
    for label, text in [("realistic (160 chars)", REALISTIC)] + [(f'"(a" * {n}', "(a" * n) for n in sizes]:
        theirs = best_of(lambda: a1111_weights(text), max(1, repeats if len(text) < 5000 else 1))
        ours = best_of(lambda: parse_prompt_attention(text), repeats)
        print(f"{label:24s} {theirs * 1000:9.2f} ms {ours * 1000:8.2f} ms {theirs / ours:7.1f}x")


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _run(app, scope, count: int) -> float:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    start = time.perf_counter()
    for _ in range(count):
        await app(scope, receive, send)
    return (time.perf_counter() - start) / count


def bench_gate(repeats: int, count: int = 20000) -> None:
    scope = {"type": "http", "method": "POST", "path": "/sdapi/v1/interrupt", "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1:7860"), (b"origin", b"http://127.0.0.1:7860"),
                         (b"content-length", b"0"), (b"authorization", b"Basic YWxpY2U6d29uZGVy")]}
    open_policy = SecurityPolicy()
    auth_policy = SecurityPolicy(api_accounts=(("alice", "wonder"),), ui_accounts=(("alice", "wonder"),))
    rows = [("no gate", _app), ("gate, no auth", Gate(_app, open_policy)), ("gate + Basic auth", Gate(_app, auth_policy))]
    results = {name: [] for name, _ in rows}
    for _ in range(repeats):  # interleaved, so load drifts hit every row
        for name, app in rows:
            results[name].append(asyncio.run(_run(app, scope, count)))
    base = statistics.median(results["no gate"])
    print("\nper request (in process)      median      vs no gate")
    for name, _ in rows:
        value = statistics.median(results[name])
        print(f"{name:26s} {value * 1e6:8.1f} us   {value / base:6.1f}x (+{(value - base) * 1e6:.1f} us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,4000,8000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench_parser([int(s) for s in args.sizes.split(",")], args.repeats)
    bench_gate(args.repeats)


if __name__ == "__main__":
    main()
