"""The prompt row's tools as an A1111 user drives them (issue 15): styles apply / edit, clear,
Ctrl+Up/Down attention editing, the model's placeholder and the notification sound.

One app process (tiny SD 1.x, the bundled demo model reachable by a swap, the API on) and one
headless Chromium for the module; tests put back what they change.
"""
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.server_fixture import start_server
from tests.test_browser import set_number
from tests.test_browser_firstten import browser, open_page, options  # noqa: F401 (browser is a fixture)

STYLES_CSV = ('\ufeffname,prompt,negative_prompt\r\n'
              'Quality,"masterpiece, best quality",lowres\r\n'
              'Cinematic,"cinematic still {prompt}, film grain",cartoon\r\n')


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_sd15):
    """(base url, data dir) of one app with a styles.csv and the API."""
    tmp = tmp_path_factory.mktemp("prompttools")
    (tmp / "data").mkdir()
    (tmp / "data" / "styles.csv").write_bytes(STYLES_CSV.encode("utf-8"))
    with start_server(tmp, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file), "--api"]) as (url, _):
        yield url, tmp / "data"


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def test_apply_styles_then_edit_save_and_delete_one(app, browser):  # noqa: F811
    url, data = app
    page = open_page(browser, url)
    try:
        apply = page.get_by_role("button", name="Apply all selected styles to prompts").first
        expect(apply).to_have_text("❐")  # a glyph DejaVu has: no empty box without a colour-emoji font
        expect(page.get_by_role("button", name="Edit styles").first).to_have_text("✎")
        page.locator("#txt2img_prompt textarea").fill("a cat")
        page.locator("#txt2img_neg_prompt textarea").fill("blurry")
        pick(page, "txt2img_styles", "Quality")
        pick(page, "txt2img_styles", "Cinematic")
        page.locator("#txt2img_style_apply").click()
        # A1111's rules, in the order selected: appended with ", ", or put where {prompt} is.
        expect(page.locator("#txt2img_prompt textarea")).to_have_value(
            "cinematic still a cat, masterpiece, best quality, film grain")
        expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("blurry, lowres, cartoon")
        expect(page.locator("#txt2img_styles .token")).to_have_count(0)  # the selection is cleared

        # The editor: the current prompt becomes a new style, saved to styles.csv.
        page.locator("#txt2img_styles_edit_button").click()
        expect(page.locator("#txt2img_styles_dialog")).to_be_visible()
        page.locator("#txt2img_edit_style_save").click()
        expect(page.locator("#txt2img_edit_style_message")).to_have_text(
            "A style needs a name: type one in the Style box.")
        page.locator("#txt2img_style_copy").click()
        expect(page.locator("#txt2img_edit_style_neg_prompt textarea")).to_have_value("blurry, lowres, cartoon")
        page.locator("#txt2img_edit_style_prompt textarea").fill("{prompt}, at night")
        name = page.locator("#txt2img_styles_edit_select input")
        name.fill("Night, dark")  # a new name, typed and saved straight away (no Enter)
        page.locator("#txt2img_edit_style_save").click()
        expect(page.locator("#txt2img_edit_style_message")).to_have_text("Saved style 'Night, dark' to styles.csv.")
        text = (data / "styles.csv").read_bytes().decode("utf-8-sig")  # as written: CSV's \r\n kept
        assert text.endswith('"Night, dark","{prompt}, at night","blurry, lowres, cartoon"\r\n'), text
        assert text.startswith("name,prompt,negative_prompt\r\nQuality,")
        # Both tabs' Styles lists offer it now.
        page.get_by_role("tab", name="img2img").click()
        pick(page, "img2img_styles", "Night, dark")
        page.locator("#img2img_prompt textarea").fill("a dog")
        page.locator("#img2img_style_apply").click()
        expect(page.locator("#img2img_prompt textarea")).to_have_value("a dog, at night")

        # Delete asks first (A1111's confirm); dismissed, the style stays.
        page.get_by_role("tab", name="txt2img").click()
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("#txt2img_edit_style_delete").click()
        page.wait_for_timeout(500)
        assert "Night, dark" in (data / "styles.csv").read_text(encoding="utf-8-sig")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#txt2img_edit_style_delete").click()
        expect(page.locator("#txt2img_edit_style_message")).to_have_text(
            "Deleted style 'Night, dark' from styles.csv.")
        assert "Night" not in (data / "styles.csv").read_text(encoding="utf-8-sig")
        # ✎ opens the first selected style for editing.
        pick(page, "txt2img_styles", "Quality")
        page.locator("#txt2img_styles_edit_button").click()
        expect(page.locator("#txt2img_edit_style_prompt textarea")).to_have_value("masterpiece, best quality")
        expect(page.locator("#txt2img_styles_edit_select input")).to_have_value("Quality")
        page.locator("#txt2img_edit_style_close").click()
        expect(page.locator("#txt2img_styles_dialog")).to_be_hidden()
        # img2img had it selected: it is dropped there too, so its next Generate does not fail on it.
        page.get_by_role("tab", name="img2img").click()
        expect(page.locator("#img2img_styles .token")).to_have_count(0)
    finally:
        page.close()
        (data / "styles.csv").write_bytes(STYLES_CSV.encode("utf-8"))


def test_clear_prompt_asks_first(app, browser):  # noqa: F811
    url, _ = app
    page = open_page(browser, url)
    try:
        expect(page.get_by_role("button", name="Clear prompt").first).to_have_text("⌫")
        page.locator("#txt2img_prompt textarea").fill("a red circle")
        page.locator("#txt2img_neg_prompt textarea").fill("blue")
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("#txt2img_clear_prompt").click()
        page.wait_for_timeout(300)
        expect(page.locator("#txt2img_prompt textarea")).to_have_value("a red circle")
        page.once("dialog", lambda dialog: (dialog.message == "Delete prompt?" and dialog.accept()))
        page.locator("#txt2img_clear_prompt").click()
        expect(page.locator("#txt2img_prompt textarea")).to_have_value("")
        expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("")
    finally:
        page.close()


def _put_cursor(page, selector: str, at: int, end: int | None = None) -> None:
    page.locator(selector).focus()
    page.locator(selector).evaluate("(box, [a, b]) => box.setSelectionRange(a, b)", [at, at if end is None else end])


def _selected(page, selector: str) -> str:
    return page.locator(selector).evaluate("box => box.value.slice(box.selectionStart, box.selectionEnd)")


def test_ctrl_up_and_down_edit_attention(app, browser):  # noqa: F811
    url, _ = app
    page = open_page(browser, url)
    prompt = "#txt2img_prompt textarea"
    try:
        page.locator(prompt).fill("a red circle on a blue background")
        _put_cursor(page, prompt, 4)  # inside "red"
        page.keyboard.press("Control+ArrowUp")
        expect(page.locator(prompt)).to_have_value("a (red:1.1) circle on a blue background")
        assert _selected(page, prompt) == "red"  # the edited words stay selected
        page.keyboard.press("Control+ArrowUp")
        expect(page.locator(prompt)).to_have_value("a (red:1.2) circle on a blue background")
        page.keyboard.press("Control+ArrowDown")
        expect(page.locator(prompt)).to_have_value("a (red:1.1) circle on a blue background")
        # Gradio saw the edit: the server's copy of the prompt (sent back by apply, with no style) is the new one.
        page.locator("#txt2img_style_apply").click()
        page.wait_for_timeout(500)
        expect(page.locator(prompt)).to_have_value("a (red:1.1) circle on a blue background")
        _put_cursor(page, prompt, 6)  # inside the group: its weight, not a new group
        page.keyboard.press("Control+ArrowDown")
        expect(page.locator(prompt)).to_have_value("a red circle on a blue background")  # 1.0: brackets gone

        negative = "#txt2img_neg_prompt textarea"
        page.locator(negative).fill("ugly, blurry photo")
        _put_cursor(page, negative, 6, 18)  # a selection of two words
        page.keyboard.press("Control+ArrowDown")
        expect(page.locator(negative)).to_have_value("ugly, (blurry photo:0.9)")
        assert _selected(page, negative) == "blurry photo"

        # The rule itself, case by case (the page's editAttention: text, selection, up -> text, selection).
        cases = [("a red circle", 9, 9, True, "a red (circle:1.1)", "circle"),
                 ("(red:1.9)", 2, 2, True, "(red:2.0)", "red"),  # no 1.9000000000000001
                 ("(red:0.1)", 2, 2, False, "(red:0.0)", "red"),
                 ("a  blurry  b", 2, 10, False, "a  (blurry:0.9)  b", "blurry"),  # spaces around a selection trimmed
                 ("a <lora:shapes:0.8> b", 10, 10, True, "a <lora:shapes:0.85> b", "lora:shapes"),  # its own step
                 ("a <lora:shapes> b", 10, 10, True, None, None),  # no weight to change
                 ("a ,  b", 4, 4, True, None, None)]  # nothing under the cursor
        for text, start, end, up, want, selected in cases:
            got = page.evaluate("([t, s, e, up]) => editAttention(t, s, e, up)", [text, start, end, up])
            assert (got and [got["text"], got["text"][got["start"]:got["end"]]]) == (want and [want, selected]), text
    finally:
        page.close()


def test_placeholder_says_what_the_model_draws(app, browser):  # noqa: F811
    url, _ = app
    page = open_page(browser, url)
    prompt = page.locator("#txt2img_prompt textarea")
    titles = [m["title"] for m in httpx.get(f"{url}/sdapi/v1/sd-models", timeout=30).json()]
    try:
        # Only the shortcut static/shortcuts.js really has (no Alt+Enter or Esc yet).
        expect(prompt).to_have_attribute("placeholder", "Prompt (press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)")
        options(url, sd_model_checkpoint=next(t for t in titles if t.startswith("demo-shapes")))
        # The open page follows the swap, and a page opened after it shows it from the start.
        expect(prompt).to_have_attribute("placeholder", re.compile('e.g. "a red circle on a blue background"'),
                                         timeout=30_000)
        fresh = open_page(browser, url)
        expect(fresh.locator("#txt2img_prompt textarea")).to_have_attribute(
            "placeholder", re.compile(r"demo model draws one shape.*Shapes: circle, square, triangle"), timeout=40_000)
        fresh.close()
    finally:
        page.close()
        options(url, sd_model_checkpoint=next(t for t in titles if "tiny-sd15" in t))


PLAY_HOOK = """
window.__played = [];
window.__volumes = [];
HTMLMediaElement.prototype.play = function () {
  window.__played.push(this.src); window.__volumes.push(this.volume); return Promise.resolve();
};
"""


def _generate(page) -> None:
    """One 1-step image on a freshly opened page (its gallery empty before)."""
    set_number(page, "txt2img_steps", 1)
    page.locator("#txt2img_generate").click()
    page.wait_for_function("() => document.querySelectorAll('#txt2img_gallery img').length >= 1", timeout=120_000)


def _hooked_page(browser, url, contexts: list, requested: list | None = None):
    """A fresh browser context (closed by the caller via ``contexts``) with play() hooked, on the app."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    contexts.append(context)
    context.add_init_script(PLAY_HOOK)
    if requested is not None:
        context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    return page


def test_notification_sound_when_results_arrive(app, browser):  # noqa: F811
    url, data = app
    sound = data / "notification.mp3"
    sound.write_bytes(b"ID3" + bytes(64))  # the browser is not asked to decode it: play() is hooked
    pages = []
    options(url, notification_volume=40)
    try:
        page = _hooked_page(browser, url, pages)
        expect(page.locator("#audio_notification audio[src*='/notification.mp3']")).to_have_count(1)
        assert page.evaluate("window.__played") == []  # nothing at page load
        _generate(page)
        page.wait_for_function("() => window.__played.length === 1", timeout=10_000)
        assert "notification.mp3" in page.evaluate("window.__played[0]")
        assert page.evaluate("window.__volumes") == [0.4]  # A1111's notification_volume, in %
        page.locator("#txt2img_gallery img").first.click()  # the result opened in the gallery: not a new one
        page.wait_for_timeout(500)
        assert len(page.evaluate("window.__played")) == 1

        # No file: no player source, no request for it, no sound.
        sound.unlink()
        requested = []
        page = _hooked_page(browser, url, pages, requested)
        _generate(page)
        page.wait_for_timeout(500)
        assert page.evaluate("window.__played") == []
        assert not [u for u in requested if "notification" in u and "volume" not in u]
        assert page.locator("#audio_notification audio[src]").count() == 0

        # The file is there but "Play notification sound" is off: silent too.
        sound.write_bytes(b"ID3" + bytes(64))
        options(url, notification_audio=False)
        page = _hooked_page(browser, url, pages)
        _generate(page)
        page.wait_for_timeout(500)
        assert page.evaluate("window.__played") == []
        assert page.locator("#audio_notification audio[src]").count() == 0
    finally:
        for context in pages:
            context.close()
        sound.unlink(missing_ok=True)
        options(url, notification_audio=True, notification_volume=100)
