"""The prompt row's tools as A1111 users know them (issue 15): clear, apply styles, the style editor,
a placeholder that says what the loaded model draws, and the notification sound.

The icons are text glyphs DejaVu Sans has, so they draw without a colour-emoji font; their
tooltips and accessible names, Ctrl+Up/Down attention editing, the clear confirmation and the
sound are in static/prompt_tools.js. Everything the page shows here (style names, placeholder,
whether a sound exists) is read again at page load (see page_load.py).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.context import Context

from webui.generation.styles import Style, StyleStore, apply_known_styles, check_style_name
from webui.training import shapes
from webui.ui.page_load import on_page_load

# A1111: 🗑️ clear, 📋 apply styles, 🖌️ edit styles; titles in static/prompt_tools.js (A1111's tooltips).
CLEAR, APPLY, EDIT = "⌫", "❐", "✎"
NOTIFICATION = "notification.mp3"  # A1111's rule: played when a job finishes, if the file exists
SHORTCUTS = "press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt"  # only what static/shortcuts.js does (tests/test_prompt_tools.py checks)
PRIVATE = {"show_progress": "hidden", "api_visibility": "private"}

# A1111's confirm_clear_prompt: nothing is lost to a stray click.
CONFIRM_CLEAR = "(prompt, negative) => confirm('Delete prompt?') ? ['', ''] : [prompt, negative]"
# Its inputs are (style name, the page's change counter); a cancelled confirmation sends no name.
CONFIRM_DELETE = "(name, count) => [(name && confirm('Delete style ' + name + '?')) ? name : '', count]"


def is_demo(model) -> bool:
    """The bundled demo checkpoint (the same test as the header's model line in app.py)."""
    return bool(model.info.bundled and model.info.model_name.startswith("demo-shapes"))


def placeholder(model) -> str:
    """The prompt box's placeholder: the shortcut, and for the demo model, the prompts it can draw."""
    text = f"Prompt ({SHORTCUTS})"
    if model is None or not is_demo(model):
        return text
    extra_backgrounds = [c for c in shapes.BACKGROUNDS if c not in shapes.SHAPE_COLOURS]
    return (f"{text}. The demo model draws one shape on a plain background, e.g. "
            f"\"{shapes.canonical_caption('circle', 'red', 'blue')}\". Shapes: {', '.join(shapes.SHAPES)}; "
            f"colours: {', '.join(shapes.SHAPE_COLOURS)}; backgrounds also {' and '.join(extra_backgrounds)}.")


def notification_file(data_dir: Path) -> Path | None:
    """``notification.mp3`` in the data folder (the repository by default, as A1111's root), if it is a file."""
    path = Path(data_dir) / NOTIFICATION
    return path if path.is_file() else None


def apply_selected(store: StyleStore, prompt: str, negative: str, names: list[str] | None):
    """The apply button: the selected styles written into the prompts, the selection cleared."""
    prompt, negative, unknown = apply_known_styles(prompt or "", negative or "", list(names or []), store)
    if unknown:
        gr.Warning(f"Not applied, no longer in styles.csv: {', '.join(unknown)}")
    return prompt, negative, []


def save_style(store: StyleStore, name: str | None, prompt: str, negative: str) -> tuple[str, str | None]:
    """(message HTML, name saved or None); errors are messages, not exceptions (a refused save changes nothing)."""
    try:
        name = check_style_name(name)
        store.put(Style(name, prompt or "", negative or ""))
    except (ValueError, OSError) as exc:
        return _message(str(exc), error=True), None
    return _message(f"Saved style '{name}' to {store.path.name}."), name


def delete_style(store: StyleStore, name: str | None) -> tuple[str, bool]:
    """(message HTML, deleted?); an empty name is a cancelled confirmation: nothing to say."""
    if not name:
        return "", False
    try:
        store.delete(name)
    except (ValueError, OSError) as exc:
        return _message(str(exc), error=True), False
    return _message(f"Deleted style '{name}' from {store.path.name}."), True


def _message(text: str, error: bool = False) -> str:
    kind = "error-box" if error else "note-box"
    return f'<div class="{kind} style-editor-message">{html.escape(text)}</div>'


@dataclass
class StyleEditor:
    """A1111's style dialog: pick or name a style, edit its two texts, save or delete it."""

    box: gr.Column
    name: gr.Dropdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    copy: gr.Button
    save: gr.Button
    delete: gr.Button
    close: gr.Button
    message: gr.HTML


@dataclass
class PromptTools:
    clear: gr.Button
    apply_styles: gr.Button
    edit_styles: gr.Button | None = None  # beside the Styles list: build_edit_button
    editor: StyleEditor | None = None


TOOL = {"size": "sm", "min_width": 40, "elem_classes": ["tool"]}


def build_tool_buttons(tab: str) -> PromptTools:
    """Clear and apply styles (call inside the row that holds ↙)."""
    return PromptTools(gr.Button(CLEAR, elem_id=f"{tab}_clear_prompt", **TOOL),
                       gr.Button(APPLY, elem_id=f"{tab}_style_apply", **TOOL))


def build_edit_button(tab: str) -> gr.Button:
    """The button that opens the style editor (call beside the Styles list)."""
    return gr.Button(EDIT, elem_id=f"{tab}_styles_edit_button", scale=0, **TOOL)


def build_style_editor(ctx, tab: str) -> StyleEditor:
    """The editor, hidden until ✎ (call where it may take the prompt row's full width)."""
    with gr.Column(visible=False, elem_id=f"{tab}_styles_dialog", variant="panel") as box:
        with gr.Row():
            name = gr.Dropdown(label="Style", choices=ctx.styles.names(), value=None, allow_custom_value=True,
                               elem_id=f"{tab}_styles_edit_select", scale=4,
                               info="Pick a style to edit, or type a new name. {prompt} in a style's text is "
                                    "replaced by the prompt; without it, the text is added at the end.")
            copy = gr.Button("Copy from prompt", elem_id=f"{tab}_style_copy", size="sm", scale=1)
        prompt = gr.Textbox(label="Style prompt", lines=2, elem_id=f"{tab}_edit_style_prompt", elem_classes=["prompt"])
        negative = gr.Textbox(label="Style negative prompt", lines=2, elem_id=f"{tab}_edit_style_neg_prompt",
                              elem_classes=["prompt"])
        with gr.Row():
            save = gr.Button("Save", variant="primary", elem_id=f"{tab}_edit_style_save", size="sm")
            delete = gr.Button("Delete", elem_id=f"{tab}_edit_style_delete", size="sm")
            close = gr.Button("Close", elem_id=f"{tab}_edit_style_close", size="sm")
        message = gr.HTML("", elem_id=f"{tab}_edit_style_message")
    return StyleEditor(box, name, prompt, negative, copy, save, delete, close, message)


def _page_shared(key: str, make):
    """One object per page, shared by both tabs' prompt rows (kept on the Blocks being built, not in a global)."""
    root = Context.root_block
    if root is None:
        raise RuntimeError("prompt tools must be built inside a gr.Blocks")
    shared = root.__dict__.setdefault("_prompt_tools", {})
    if key not in shared:
        shared[key] = make()
    return shared[key]


def _find_component(elem_id: str):
    root = Context.root_block
    return next((block for block in root.blocks.values() if getattr(block, "elem_id", None) == elem_id), None)


def wire_prompt_tools(ctx, tab: str, tools: PromptTools, prompt: gr.Textbox, negative: gr.Textbox,
                      styles: gr.Dropdown) -> None:
    """Wire the buttons, the editor, the placeholder and (once per page) the notification sound."""
    editor = tools.editor
    store = ctx.styles
    # Bumped by a save or delete in either tab; both tabs' style lists listen.
    changed = _page_shared("styles_changed", lambda: gr.State(0))

    tools.clear.click(None, [prompt, negative], [prompt, negative], js=CONFIRM_CLEAR, **PRIVATE)
    tools.apply_styles.click(lambda p, n, names: apply_selected(store, p, n, names), [prompt, negative, styles],
                             [prompt, negative, styles], **PRIVATE)

    def open_editor(selected):
        first = selected[0] if selected else None
        style = store.get(first) if first else None
        if style is None:
            return gr.update(visible=True), gr.update(), gr.update(), gr.update(), ""
        return gr.update(visible=True), style.name, style.prompt, style.negative_prompt, ""

    tools.edit_styles.click(open_editor, [styles], [editor.box, editor.name, editor.prompt, editor.negative_prompt,
                                                    editor.message], **PRIVATE)
    editor.close.click(lambda: gr.update(visible=False), None, editor.box, **PRIVATE)

    def pick(name):
        style = store.get(name) if name else None
        if style is None:  # a new name being typed: keep what the boxes hold
            return gr.update(), gr.update()
        return style.prompt, style.negative_prompt

    editor.name.input(pick, editor.name, [editor.prompt, editor.negative_prompt], **PRIVATE)
    editor.copy.click(lambda p, n: (p, n), [prompt, negative], [editor.prompt, editor.negative_prompt], **PRIVATE)

    def save(name, text, negative_text, count):
        message, saved = save_style(store, name, text, negative_text)
        if saved is None:
            return message, gr.update(), count
        return message, saved, count + 1

    editor.save.click(save, [editor.name, editor.prompt, editor.negative_prompt, changed],
                      [editor.message, editor.name, changed], **PRIVATE)

    def delete(name, count):
        message, deleted = delete_style(store, name)
        if not deleted:
            return message, gr.update(), gr.update(), gr.update(), count
        return message, None, "", "", count + 1

    editor.delete.click(delete, [editor.name, changed], [editor.message, editor.name, editor.prompt,
                                                         editor.negative_prompt, changed],
                        js=CONFIRM_DELETE, **PRIVATE)

    def choices(selected):
        names = store.names()
        # A selected style that is gone would make the next Generate fail Gradio's choice check.
        return (gr.update(choices=names, value=[name for name in selected or [] if name in names]),
                gr.update(choices=names))

    changed.change(choices, styles, [styles, editor.name], **PRIVATE)

    def at_load():
        store.reload_if_changed()  # styles.csv edited by hand since the UI was built
        names = store.names()
        # The build's selection (empty, or the user's Defaults from ui-config.json) less styles deleted since.
        selected = [name for name in styles.value or [] if name in names]
        return (gr.update(choices=names, value=selected), gr.update(choices=names),
                gr.update(placeholder=placeholder(_model(ctx))))

    on_page_load(at_load, None, [styles, editor.name, prompt])
    # Follow checkpoint swaps: the header's status line changes on every swap (this page, another page or
    # the API) and when the startup checkpoint has loaded. Built before the tabs; without it, page load only.
    status = _find_component("model_status")
    if status is not None:
        status.change(lambda: gr.update(placeholder=placeholder(_model(ctx))), None, prompt, **PRIVATE)
    _page_shared("notification", lambda: build_notification(ctx))


def _model(ctx):
    return None if getattr(ctx, "loading", False) else ctx.models.current()


def build_notification(ctx) -> gr.Audio:
    """A hidden player for ``notification.mp3``; static/prompt_tools.js plays it when results arrive.

    Gradio serves the file from its private cache by a URL it made (no path from the browser is
    ever opened), and only while the file exists: without one, the page requests nothing.
    """
    audio = gr.Audio(value=None, elem_id="audio_notification", interactive=False, show_label=False,
                     visible="hidden")
    # A1111's settings, read at page load: "notification_audio" off gives the player no source at all.
    volume = gr.HTML("", elem_id="notification_volume", visible="hidden")

    def current():
        path = notification_file(ctx.paths.data_dir) if ctx.settings.get("notification_audio") else None
        level = int(ctx.settings.get("notification_volume"))
        return str(path) if path else None, f'<span data-volume="{level}"></span>'

    on_page_load(current, None, [audio, volume])
    return audio
