"""``modules.scripts``: the Script base class A1111 extensions subclass, and ``basedir()``.

Methods called here: title, show, ui, setup, before_process, process, before_process_batch,
process_batch, postprocess_image, postprocess. Overriding a method that needs A1111's
sampler or tensor internals makes the extension "needs a native port" (see adapter.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from webui.compat.a1111 import active
from webui.paths import REPO_ROOT

AlwaysVisible = object()  # show() returns this for always-on scripts, as in A1111
scripts_txt2img = None
scripts_img2img = None


def basedir() -> str:
    """The extension's folder while its scripts import; the app's folder afterwards (as in A1111)."""
    try:
        folder = active.bridge().loading_dir
    except RuntimeError:
        folder = None
    return str(folder or REPO_ROOT)


@dataclass
class PostprocessImageArgs:
    image: object


@dataclass
class PostprocessBatchListArgs:
    images: list


class Script:
    """Base class of A1111 scripts; subclasses override what they need."""

    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    group = None
    create_group = True
    section = None
    infotext_fields = None
    paste_field_names = None
    api_info = None
    sorting_priority = 0

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        return []

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    # Never called here; overriding them refuses the script (they need A1111's internals).
    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def on_mask_blend(self, p, mba, *args):
        pass

    def postprocess_maskoverlay(self, p, ppmo, *args):
        pass

    def postprocess_image_after_composite(self, p, pp, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def before_hr(self, p, *args):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def on_before_component(self, callback, *, elem_id):
        pass

    def on_after_component(self, callback, *, elem_id):
        pass

    def describe(self):
        return ""

    def elem_id(self, item_id):
        """A1111's element id pattern: script_[txt2img_|img2img_]<title>_<item_id>."""
        both = self.show(True) == self.show(False)
        tab = (("img2img_" if self.is_img2img else "txt2img_") if both else "")
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", str(self.title()).lower()))
        return f"script_{tab}{title}_{item_id}"


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True


def list_scripts(scriptdirname, extension, include_extensions=True):
    """A1111 helper some extensions call to find files; only this extension's folder is searched here."""
    folder = Path(basedir()) / scriptdirname
    return sorted(str(p) for p in folder.glob(f"*{extension}")) if folder.is_dir() else []
