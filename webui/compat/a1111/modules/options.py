"""``modules.options``: OptionInfo and friends, turned into our typed settings by ``opts.add_option``."""
from __future__ import annotations

from typing import Any


class OptionInfo:
    """A1111's option declaration; only the data parts are used (the Gradio component names its kind)."""

    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False,
                 category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.category_id = category_id
        self.refresh = refresh
        self.do_not_save = False
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext
        self.restrict_api = restrict_api

    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label, js_func):
        return self

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html):
        self.comment_after += html
        return self

    def needs_restart(self):
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self

    def component_settings(self) -> dict[str, Any]:
        args = self.component_args
        if callable(args):
            try:
                args = args()
            except Exception:
                args = None
        return dict(args) if isinstance(args, dict) else {}


class OptionHTML(OptionInfo):
    """Text shown in the settings page; it holds no value, so nothing is registered for it."""

    def __init__(self, text):
        super().__init__(str(text).strip(), label="", component=None)
        self.do_not_save = True


def options_section(section_identifier, options_dict):
    """Attach a (id, title) section to every OptionInfo in the dict, as A1111 does."""
    for value in options_dict.values():
        if len(section_identifier) == 2:
            value.section = section_identifier
        elif len(section_identifier) == 3:
            value.section = section_identifier[0:2]
            value.category_id = section_identifier[2]
    return options_dict


def categories_register_category(*args, **kwargs):
    return None
