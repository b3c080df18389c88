"""Test extension using every hook of API 1; GET /ext/native-all-hooks/calls returns what ran."""
import contextlib

from webui.extensions.api import Param

from .helpers import SUFFIX_KEY


def register(api):
    calls = []
    api.setting("native_all_hooks_greeting", "hello", "Greeting of the test extension")
    api.panel("Native test panel", [Param("enabled", bool, False, label="Enable test panel"),
                                    Param("suffix", str, "", label="Prompt suffix", infotext=SUFFIX_KEY)],
              enabled_param="enabled")
    api.tab("Native test tab", lambda ui: calls.append(("tab_built",)), elem_id="tab_native_test")

    @api.router.get("/calls")
    def get_calls():
        return {"calls": [list(c) for c in calls]}

    @api.on_plan
    def plan(job, plan):
        calls.append(("plan", job.params["enabled"]))
        if job.params["enabled"] and job.params["suffix"]:
            plan.prompts = [p + ", " + job.params["suffix"] for p in plan.prompts]
            plan.seeds = [s + 1000 for s in plan.seeds]
            plan.extra_infotext[SUFFIX_KEY] = job.params["suffix"]

    @api.on_patch
    @contextlib.contextmanager
    def patch(job, pipe):
        calls.append(("patch_enter",))
        pipe.native_all_hooks_patched = True
        try:
            yield
        finally:
            del pipe.native_all_hooks_patched
            calls.append(("patch_exit",))

    @api.on_step
    def step(job, state):
        calls.append(("step", state.step, state.total))

    @api.on_image
    def image(job, image, info):
        calls.append(("image", info.index, info.seed, info.prompt))

    @api.on_before_save
    def before_save(job, params):
        calls.append(("before_save", params.stem))
        params.infotext = (params.infotext or "") + ", Saved by: native-all-hooks"

    @api.on_after_save
    def after_save(job, path):
        calls.append(("after_save", str(path)))

    @api.on_after_job
    def after_job(job, result):
        calls.append(("after_job", len(result.images)))

    @api.on_infotext_pasted
    def pasted(text, params):
        calls.append(("infotext_pasted",))
        params["Pasted by"] = "native-all-hooks"

    @api.on_model_loaded
    def model_loaded(model):
        calls.append(("model_loaded", model.name))

    @api.on_app_started
    def app_started(app):
        calls.append(("app_started",))

    api.calls = calls  # tests in-process read this list
