"""The English strings a built page shows (labels, buttons, placeholders, choices), for localization.

``page_strings(demo)`` walks the Blocks; ``untranslated(demo, pack)`` lists those a localization
pack lacks. tools/ui_strings.py prints them for the whole page, so the zh_CN pack can be kept
complete as tabs land; tests/test_localization.py fails when one is missing. Components with
the ``notranslate`` class (names, user content) are skipped, as the page's translator skips them.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import gradio as gr

_LETTERS = re.compile(r"[A-Za-z]")
# Dynamic text (the model line names a path) and the load table: the page's translator skips them too.
SKIP_IDS = {"model_status", "extensions_table"}


def _wanted(text) -> bool:
    return isinstance(text, str) and bool(_LETTERS.search(text)) and len(text.strip()) > 0


def _skipped(block) -> bool:
    if type(block).__name__ == "Api":  # gr.api endpoints (MCP tools) are not on the page
        return True
    classes = getattr(block, "elem_classes", None) or []
    return "notranslate" in classes or getattr(block, "elem_id", None) in SKIP_IDS


def page_strings(demo: gr.Blocks) -> "OrderedDict[str, list[str]]":
    """Every static English string on the page -> where it is (elem ids), in page order."""
    found: OrderedDict[str, list[str]] = OrderedDict()

    def add(text, where):
        if _wanted(text):
            found.setdefault(text.strip(), []).append(where)

    for block in demo.blocks.values():
        if _skipped(block) or isinstance(block, (gr.State,)):
            continue
        where = getattr(block, "elem_id", None) or type(block).__name__
        if getattr(block, "show_label", True) is not False:
            add(getattr(block, "label", None), where)
        for attr in ("placeholder", "info"):
            add(getattr(block, attr, None), where)
        if isinstance(block, gr.Button):
            add(block.value, where)
        if isinstance(block, (gr.Radio, gr.Dropdown, gr.CheckboxGroup)) and not isinstance(block, gr.Dropdown):
            for choice in block.choices or []:
                add(choice[0] if isinstance(choice, tuple) else choice, where)
        if isinstance(block, gr.Markdown) and isinstance(block.value, str):
            for line in block.value.splitlines():
                add(line.strip("#*_ "), where)
    return found


def untranslated(demo: gr.Blocks, pack: dict) -> "OrderedDict[str, list[str]]":
    """The page strings the pack has no entry for."""
    return OrderedDict((text, where) for text, where in page_strings(demo).items() if text not in pack)
