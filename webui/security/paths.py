"""Where settings changed through the API may make the app write.

Output-folder options (`Option.is_path`) are relative to the data dir. Changed through
`POST /sdapi/v1/options` or a request's `override_settings`, they must stay inside the data
dir or a folder the owner allowed with `--allow-output-dir`; otherwise any API client could
make the app create folders and write PNGs anywhere the process may write. config.json
edited by the owner, and the Settings tab of a logged-in user, may point anywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable


def resolve_output_dir(value: str, data_dir: Path) -> Path:
    """The folder an output setting names: relative values are under the data dir (as the core does)."""
    path = Path(value)  # no ~ expansion: the core does none either
    return (path if path.is_absolute() else Path(data_dir) / path).resolve()


def confined_problem(value: Any, data_dir: Path, roots: Iterable[Path]) -> str | None:
    """None when `value` names a folder inside one of `roots`; otherwise why it is refused.

    The path is resolved (`..` and symlinks followed) before the check, so `outputs/../../x`
    and a link pointing out of the data dir are both caught.
    """
    if not isinstance(value, str) or not value.strip():
        return None  # type errors and empty values are the settings layer's business
    try:
        target = resolve_output_dir(value, data_dir)
    except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, symlink loop, name too long
        return f"not a usable folder ({exc})"
    roots = [Path(r).resolve() for r in roots]
    if any(target == root or target.is_relative_to(root) for root in roots):
        return None
    allowed = ", ".join(str(r) for r in roots)
    return (f"{target} is outside the folders the API may write to ({allowed}); the owner can allow it with "
            "--allow-output-dir or set it in config.json / the Settings tab")


def output_dir_problems(changes: dict[str, Any], options: dict, data_dir: Path, roots: Iterable[Path],
                        prefix: str = "") -> list[dict[str, str]]:
    """[{field, message}] for every output-folder option in `changes` that points outside `roots`."""
    roots = list(roots)
    out = []
    for key, value in changes.items():
        option = options.get(key)
        if option is not None and getattr(option, "is_output_folder", False):
            problem = confined_problem(value, data_dir, roots)
            if problem:
                out.append({"field": f"{prefix}{key}", "message": problem})
    return out


def api_output_dir_problems(ctx, changes: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """`output_dir_problems` for a change arriving through the API of an AppContext."""
    security = getattr(ctx, "security", None)
    roots = security.output_roots if security is not None and security.output_roots else (ctx.paths.data_dir,)
    return output_dir_problems(changes, ctx.settings.options, ctx.paths.data_dir, roots, prefix)
