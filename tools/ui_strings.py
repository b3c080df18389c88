"""List the UI strings a localization pack lacks (default: the built-in zh_CN), for the whole page.

    .venv/bin/python tools/ui_strings.py                 # untranslated strings, zh_CN
    .venv/bin/python tools/ui_strings.py --all           # every page string, as a JSON template
    .venv/bin/python tools/ui_strings.py --pack ja_JP    # another installed pack

It builds the real page in-process (bundled demo model, a temporary data dir, every built-in
extension) without serving it. Add the printed strings to
extensions-builtin/localization-zh_CN/localizations/zh_CN.json when a tab gains text.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="zh_CN", help="localization pack name")
    parser.add_argument("--all", action="store_true", help="print every page string as a JSON template")
    parser.add_argument("--data-dir", type=Path, default=None, help="data dir (default: a temporary one)")
    args = parser.parse_args(argv)

    from webui.context import context_from_flags
    from webui.ui.app import build_ui
    from webui.ui.ui_strings import page_strings, untranslated

    data = args.data_dir or Path(tempfile.mkdtemp(prefix="ui-strings-"))
    ctx = context_from_flags(["--data-dir", str(data)])
    try:
        demo = build_ui(ctx)
        if args.all:
            print(json.dumps({text: "" for text in page_strings(demo)}, ensure_ascii=False, indent=1))
            return 0
        pack = ctx.extensions.assets.localization(args.pack)
        if not pack:
            print(f"no localization pack named {args.pack!r}", file=sys.stderr)
            return 2
        missing = untranslated(demo, pack)
        for text, where in missing.items():
            print(f"{json.dumps(text, ensure_ascii=False)}  # {', '.join(sorted(set(where))[:3])}")
        print(f"{len(missing)} untranslated string(s) for {args.pack}", file=sys.stderr)
        return 1 if missing else 0
    finally:
        ctx.queue.stop()


if __name__ == "__main__":
    sys.exit(main())
