"""The built-in 简体中文 pack covers every string our page shows (the page is built in-process)."""
import json

from webui.paths import REPO_ROOT

PACK = REPO_ROOT / "extensions-builtin" / "localization-zh_CN" / "localizations" / "zh_CN.json"


def test_pack_is_in_a1111_format():
    data = json.loads(PACK.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and len(data) > 100
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items())
    assert data["Generate"] == "生成"


def test_every_page_string_has_a_zh_cn_translation(app_context):
    """When this fails, `.venv/bin/python tools/ui_strings.py` prints the strings to add to the pack."""
    from webui.ui.app import build_ui
    from webui.ui.ui_strings import page_strings, untranslated

    demo = build_ui(app_context)
    pack = app_context.extensions.assets.localization("zh_CN")
    strings = page_strings(demo)
    assert {"Generate", "Sampling method", "Image Browser", "X type", "Install from URL"} <= set(strings)
    missing = untranslated(demo, pack)
    assert not missing, "untranslated: " + ", ".join(f"{k!r} ({', '.join(v[:2])})" for k, v in missing.items())
