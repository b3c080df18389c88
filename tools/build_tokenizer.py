"""Rebuild the CLIP tokenizer files in configs/ from the BPE vocabulary open-clip-torch ships.

We cannot download tokenizers from the hub, and installing open-clip-torch would pull
torchvision (no CPU build here), so this script fetches the wheel with
`pip download --no-deps` and reads `bpe_simple_vocab_16e6.txt.gz` out of it.

    python tools/build_tokenizer.py [--wheel path/to/open_clip_torch.whl]
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN_CLIP_VERSION = "3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 48894 merges of the file (49152 - 256 - 2 in OpenAI's code).
N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes, in CLIP's vocabulary order:
    printable bytes first (as themselves), then the rest mapped to code points from 256 up."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def read_bpe(wheel: Path | None) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                            f"open-clip-torch=={OPEN_CLIP_VERSION}"], check=True)
            wheel = Path(glob.glob(f"{tmp}/*.whl")[0])
        with zipfile.ZipFile(wheel) as zf:
            text = gzip.decompress(zf.read(BPE_MEMBER)).decode("utf-8")
    lines = text.split("\n")
    return lines[1:N_MERGES + 1]  # line 0 is a version header


def build(merges: list[str]) -> tuple[dict[str, int], list[str]]:
    alphabet = byte_alphabet()
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write(folder: Path, vocab: dict[str, int], merges: list[str], pad: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
              "clean_up_tokenization_spaces": False, "errors": "replace", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a local open_clip_torch wheel (default: pip download it)")
    parser.add_argument("--out", type=Path, default=ROOT / "configs" / "tokenizers")
    args = parser.parse_args()
    vocab, merges = build(read_bpe(args.wheel))
    assert len(vocab) == 49408, len(vocab)
    write(args.out / "clip", vocab, merges, pad=EOS)
    # SDXL's second (OpenCLIP bigG) tokenizer pads with "!" instead of the end token.
    write(args.out / "clip-pad-bang", vocab, merges, pad="!")
    print(f"wrote {args.out}/clip and {args.out}/clip-pad-bang ({len(vocab)} tokens)")


if __name__ == "__main__":
    main()
