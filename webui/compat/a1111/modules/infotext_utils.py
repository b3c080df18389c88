"""``modules.infotext_utils`` (and its old name ``generation_parameters_copypaste``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webui.compat.a1111 import active
from webui.infotext import parse_infotext, quote, unquote  # noqa: F401


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None) -> dict[str, Any]:
    """A1111's parser: our parse_infotext (same grammar), then the skipped fields dropped."""
    params = parse_infotext(x or "")
    for key in skip_fields or []:
        params.pop(key, None)
    return params


@dataclass
class ParamBinding:
    paste_button: Any = None
    tabname: str = ""
    source_text_component: Any = None
    source_image_component: Any = None
    source_tabname: str | None = None
    override_settings_component: Any = None
    paste_field_names: list = field(default_factory=list)


def register_paste_params_button(binding: ParamBinding) -> None:
    """Recorded; "send to" buttons of A1111 extensions are not wired to our tabs (needs a native port)."""
    active.bridge().paste_bindings.append(binding)


def create_buttons(tabs_list):
    return {}


def bind_buttons(buttons, send_image, send_generate_info):
    return None


def image_from_url_text(filedata):
    raise RuntimeError("image_from_url_text is not available here (needs a native port)")
