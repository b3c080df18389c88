"""Command-line flags: one parser, A1111's names and meanings, documented defaults."""
from __future__ import annotations

import argparse
from pathlib import Path


def _auth_pairs(value: str) -> list[tuple[str, str]]:
    """Parse `user:pass[,user:pass]` as A1111 does; a malformed pair is an argparse error."""
    pairs = []
    for item in value.split(","):
        item = item.strip()
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise argparse.ArgumentTypeError(f"expected user:pass[,user:pass], got {item!r}")
        pairs.append((user, password))
    return pairs


class _DefaultsHelp(argparse.HelpFormatter):
    """Append "(default: X)" only where it tells something: not after a help text that already names
    its default (a folder under the data dir), nor for None (not set) or an off switch."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default:" in text or "%(default)" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The one parser for app.py; `python app.py --help` documents every flag."""
    p = argparse.ArgumentParser(
        prog="app.py",
        description="Local Stable Diffusion studio on diffusers, with A1111's flags, folders and API.",
        formatter_class=_DefaultsHelp,
    )
    net = p.add_argument_group("network")
    net.add_argument("--listen", action="store_true", help="serve on 0.0.0.0 so other machines on the LAN can connect")
    net.add_argument("--server-name", default=None, help="host name or address to bind (overrides --listen)")
    net.add_argument("--port", type=int, default=7860, help="port to serve on")
    net.add_argument("--api", action="store_true", help="serve the A1111-compatible REST API under /sdapi/v1")
    net.add_argument("--api-auth", type=_auth_pairs, default=None, metavar="USER:PASS[,USER:PASS]",
                     help="HTTP Basic credentials required on every API route")
    net.add_argument("--gradio-auth", type=_auth_pairs, default=None, metavar="USER:PASS[,USER:PASS]",
                     help="credentials required to open the web UI")
    net.add_argument("--mcp", action="store_true", help="also serve Gradio's MCP server (txt2img as a tool for agents)")
    net.add_argument("--autolaunch", action="store_true", help="open the UI in the system's browser on start")

    dev = p.add_argument_group("device and memory")
    dev.add_argument("--medvram", action="store_true",
                     help="keep only the running model part on the GPU (diffusers model CPU offload)")
    dev.add_argument("--lowvram", action="store_true",
                     help="stream weights layer by layer to the GPU (sequential CPU offload); slowest, least VRAM")
    dev.add_argument("--no-half", action="store_true", help="keep every model in float32")
    dev.add_argument("--no-half-vae", action="store_true", help="keep the VAE in float32 (avoids black images)")
    dev.add_argument("--precision", choices=["full", "half", "autocast"], default="autocast",
                     help="full: float32 everywhere; half: float16 everywhere; autocast: chosen per device")
    dev.add_argument("--xformers", action="store_true", help="use xformers attention when it is installed")
    dev.add_argument("--opt-sdp-attention", action="store_true",
                     help="use PyTorch scaled-dot-product attention (the default when xformers is not chosen)")
    dev.add_argument("--use-cpu", nargs="*", default=None, metavar="MODULE",
                     help="run on the CPU; A1111 form: --use-cpu all")
    dev.add_argument("--device-id", type=int, default=None, help="CUDA device index to use")
    dev.add_argument("--skip-torch-cuda-test", action="store_true",
                     help="do not stop when CUDA is expected but absent; fall back to the CPU")

    paths = p.add_argument_group("folders")
    paths.add_argument("--data-dir", type=Path, default=None,
                       help="base folder for models/, embeddings/, outputs/, config.json (default: the repo)")
    paths.add_argument("--ckpt", type=Path, default=None, help="checkpoint to load at start (file or title)")
    paths.add_argument("--ckpt-dir", type=Path, default=None, help="checkpoint folder (default: DATA/models/Stable-diffusion)")
    paths.add_argument("--vae-dir", type=Path, default=None, help="VAE folder (default: DATA/models/VAE)")
    paths.add_argument("--lora-dir", type=Path, default=None, help="LoRA folder (default: DATA/models/Lora)")
    paths.add_argument("--embeddings-dir", type=Path, default=None,
                       help="textual-inversion embeddings folder (default: DATA/embeddings)")
    paths.add_argument("--controlnet-dir", type=Path, default=None,
                       help="ControlNet folder (default: DATA/models/ControlNet)")
    paths.add_argument("--hide-ui-dir-config", action="store_true",
                       help="refuse server folders typed into the UI (img2img and Extras batch from directory)")
    # Networks (issue 11): the folders A1111 has flags for besides --lora-dir / --embeddings-dir / --vae-dir.
    paths.add_argument("--hypernetwork-dir", type=Path, default=None,
                       help="hypernetworks folder (default: DATA/models/hypernetworks)")
    paths.add_argument("--lyco-dir-backcompat", type=Path, default=None,
                       help="second LoRA folder, for files of the old LyCORIS extension (default: DATA/models/LyCORIS)")
    for folder in ("ESRGAN", "RealESRGAN", "SwinIR", "DAT"):
        paths.add_argument(f"--{folder.lower()}-models-path", type=Path, default=None,
                           help=f"{folder} upscaler folder (default: DATA/models/{folder})")

    safety = p.add_argument_group("safety")
    safety.add_argument("--enable-insecure-extension-access", action="store_true",
                        help="allow installing extensions from the UI even with --listen")
    safety.add_argument("--disable-safe-unpickle", action="store_true",
                        help="allow .ckpt/.pt files whose pickle runs arbitrary code (dangerous)")

    scale = p.add_argument_group("scale-out (Ray Serve; installs requirements-scale.txt on first use)")
    scale.add_argument("--ray-address", default=None, metavar="ADDRESS",
                       help="run jobs on the Ray cluster at ADDRESS (host:6379, or auto for the one this machine "
                            "joined); without --ray-replicas/--ray-max-replicas, attach to the sd-webui Serve app "
                            "already deployed there (KubeRay RayService)")
    scale.add_argument("--ray-replicas", type=int, default=None, metavar="N",
                       help="run N generation replicas (one GPU each; CPUs on a CPU-only cluster); without "
                            "--ray-address, Ray starts inside this process on this machine")
    scale.add_argument("--ray-min-replicas", type=int, default=None, metavar="N",
                       help="autoscaling: keep at least N replicas (0 lets the cluster scale to zero; default 1)")
    scale.add_argument("--ray-max-replicas", type=int, default=None, metavar="N",
                       help="autoscaling: start at most N replicas while jobs wait")
    scale.add_argument("--ray-cpus-per-replica", type=float, default=None, metavar="N",
                       help="CPUs each replica reserves (its torch threads on a CPU-only cluster; default 1)")
    ext = p.add_argument_group("extensions")
    ext.add_argument("--disable-all-extensions", action="store_true",
                     help="start without any extension, built-in ones included (config.json is not changed)")
    ext.add_argument("--disable-extra-extensions", action="store_true",
                     help="start with only the built-in extensions (config.json is not changed)")

    add_hardening_flags(p)
    p.add_argument("--exit", action="store_true", help="set up, print the device line and exit without serving")
    return p


def add_hardening_flags(p: argparse.ArgumentParser) -> None:
    """Host / Origin rules, size limits and request budgets (docs/security.md)."""
    sec = p.add_argument_group("access and limits (docs/security.md)")
    sec.add_argument("--allowed-hosts", default=None, metavar="NAME[,NAME]",
                     help="extra Host names to answer besides loopback (and, with --listen, this machine's "
                          "addresses and name), e.g. a reverse proxy's public name; '*' turns the check off")
    sec.add_argument("--cors-allow-origins", default=None, metavar="ORIGIN[,ORIGIN]",
                     help="web pages of these origins may call the server from the browser (A1111's flag)")
    sec.add_argument("--cors-allow-origins-regex", default=None, metavar="REGEX",
                     help="like --cors-allow-origins, for origins matching this regular expression")
    sec.add_argument("--allow-output-dir", action="append", default=None, metavar="DIR",
                     help="a folder outside --data-dir that output-folder settings changed through the API may "
                          "point into (repeatable)")
    sec.add_argument("--max-body-size", type=float, default=50, metavar="MB",
                     help="largest request body accepted (JSON, base64 images), in MB")
    sec.add_argument("--max-upload-size", type=float, default=50, metavar="MB",
                     help="largest file upload accepted by the web UI, in MB")
    sec.add_argument("--max-prompt-length", type=int, default=20_000, metavar="CHARS",
                     help="longest prompt or negative prompt one request may send, in characters")
    sec.add_argument("--max-image-pixels", type=int, default=2048 * 2048, metavar="PIXELS",
                     help="largest width x height one image may have (default: 2048x2048)")
    sec.add_argument("--max-pixel-steps", type=float, default=100 * 1024 * 1024 * 50, metavar="N",
                     help="most work one request may ask for: width x height x steps x images "
                          "(default: 100 images of 1024x1024 at 50 steps)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse flags; unknown flags (and --ray-* flags that contradict each other) exit with code 2."""
    from webui.scale.options import check_flags, missing_ray

    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_flags(args) or missing_ray(args)
    if problem:
        parser.error(problem)
    return args
