"""The extension loader without a model: discovery rules, the load table, isolation, safe mode, assets."""
import argparse
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ext_kit import FIXTURES, install_fixtures, load_host
from webui.extensions.api import ExtensionError, Param, check_params
from webui.extensions.discover import BUILTIN_DIR
from webui.paths import REPO_ROOT


def flags(**values):
    base = dict(disable_all_extensions=False, disable_extra_extensions=False, listen=False, server_name=None,
                enable_insecure_extension_access=False)
    return argparse.Namespace(**{**base, **values})


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return load_host(tmp_path_factory.mktemp("ext"), names=None)


def test_load_table_records_each_outcome(host):
    states = {r.name: r.state for r in host.records}
    assert states == {"a1111-alwayson": "loaded", "bad-patch": "loaded", "broken-import": "failed",
                      "broken-register": "failed", "broken-ui": "loaded", "collide-a": "loaded",
                      "collide-b": "loaded", "native-all-hooks": "loaded", "needs-port": "needs-port",
                      "raising-hook": "loaded"}
    errors = {r.name: r.error for r in host.records}
    assert errors["broken-import"].startswith("ModuleNotFoundError: No module named 'this_module_does_not_exist")
    assert "broken-import/plugin.py:1" in errors["broken-import"]
    assert "RuntimeError: register failed on purpose" in errors["broken-register"]
    assert errors["needs-port"] == ("needs a native port: imports modules.sd_hijack (A1111's CLIP/attention hijack "
                                    "does not exist on diffusers)")
    assert all(r.load_ms >= 0 for r in host.records)


def test_a_failed_register_leaves_nothing_behind(host):
    assert "broken_register_half" not in host.settings.options
    assert "native_all_hooks_greeting" in host.settings.options  # the good one's setting is there
    assert host.settings.get("append_prompt_separator") == ", "  # A1111 on_ui_settings -> our option
    assert host.settings.options["append_prompt_separator"].section == "Append prompt"
    assert [p.title for p in host.panels] == ["Append prompt", "Native test panel"]


def test_same_helper_module_name_is_reported_naming_both(host):
    note_a = " ".join(host.record("collide-a").warnings)
    note_b = " ".join(host.record("collide-b").warnings)
    for note in (note_a, note_b):
        assert "module 'utils' exists in both collide-a" in note and "and collide-b" in note
    # Each extension's script got its own helper, not the first one's.
    assert sys.modules["webui_a1111.collide_a.uses_utils"].LOADED_FROM == "collide-a"
    assert sys.modules["webui_a1111.collide_b.uses_utils"].LOADED_FROM == "collide-b"


def test_native_extensions_are_their_own_packages(host):
    module = sys.modules["webui_ext.native_all_hooks.plugin"]
    assert module.SUFFIX_KEY == "Test suffix"  # imported relatively from its helpers.py
    assert str(FIXTURES) not in sys.path and not any("native-all-hooks" in p for p in sys.path)


@pytest.mark.parametrize("config, args, expected", [
    ({"disabled_extensions": ["raising-hook"]}, flags(), {"raising-hook": "disabled", "native-all-hooks": "loaded"}),
    ({"disable_all_extensions": "extra"}, flags(), {"raising-hook": "off", "xyz-grid": "loaded"}),
    ({"disable_all_extensions": "all"}, flags(), {"raising-hook": "off", "xyz-grid": "off"}),
    ({}, flags(disable_extra_extensions=True), {"raising-hook": "off", "xyz-grid": "loaded"}),
    ({}, flags(disable_all_extensions=True), {"native-all-hooks": "off", "xyz-grid": "off"}),
], ids=["disabled_extensions", "config-extra", "config-all", "flag-extra", "flag-all"])
def test_switching_extensions_off(tmp_path, config, args, expected):
    host = load_host(tmp_path, names=["raising-hook", "native-all-hooks"], builtin_dir=BUILTIN_DIR, args=args,
                     config=config)
    states = {r.name: r.state for r in host.records}
    assert {k: states[k] for k in expected} == expected
    reasons = {r.name: r.error for r in host.records}
    if args.disable_all_extensions:
        assert reasons["native-all-hooks"] == "all extensions are off (--disable-all-extensions)"
    if config.get("disable_all_extensions") == "extra":
        assert reasons["raising-hook"] == "user extensions are off (disable_all_extensions in config.json)"


def test_a_crashed_start_is_followed_by_safe_mode(tmp_path):
    install_fixtures(tmp_path, ["crash-on-import", "native-all-hooks"])
    code = textwrap.dedent(f"""
        from pathlib import Path
        from webui.extensions.host import ExtensionHost
        from webui.settings import Settings
        ExtensionHost(Path({str(tmp_path)!r}), Settings.load(None), builtin_dir=Path({str(tmp_path / 'none')!r})).load()
    """)
    crashed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 3, crashed.stderr  # os._exit in the extension: no exception, no cleanup
    host = load_host(tmp_path, builtin_dir=BUILTIN_DIR, finish=False)
    assert "stopped while loading extensions (crash-on-import)" in host.safe_mode
    states = {r.name: r.state for r in host.records}
    assert states["crash-on-import"] == states["native-all-hooks"] == "off"
    assert states["xyz-grid"] == "loaded"  # built-ins still load
    assert host.record("native-all-hooks").error.startswith("safe mode: the start at ")
    host.finish_start()  # the app came up: the next start is a normal one (and crashes again here)
    (tmp_path / "extensions" / "crash-on-import" / "plugin.py").write_text("def register(api):\n    pass\n")
    again = load_host(tmp_path, builtin_dir=BUILTIN_DIR)
    assert again.safe_mode == "" and again.record("crash-on-import").state == "loaded"


def test_requires_refuses_and_before_after_orders(tmp_path):
    user = tmp_path / "extensions"
    for name, toml in {"needs-missing": 'requires = ["not-installed"]', "zz-first": 'before = ["aa-second"]',
                       "aa-second": "", "needs-either": 'requires = ["not-installed|aa-second"]'}.items():
        (user / name).mkdir(parents=True)
        (user / name / "extension.toml").write_text(f'[extension]\napi = 1\nentry = "plugin:register"\n{toml}\n')
        (user / name / "plugin.py").write_text("def register(api):\n    pass\n")
    host = load_host(tmp_path, names=[])
    order = [r.name for r in host.records]
    assert order.index("zz-first") < order.index("aa-second")
    assert host.record("needs-missing").state == "error"
    assert "requires not-installed, which is not installed and enabled" in host.record("needs-missing").error
    assert host.record("needs-either").state == "loaded"


def test_unknown_api_version_and_known_incompatible_are_refused(tmp_path):
    user = tmp_path / "extensions"
    (user / "future").mkdir(parents=True)
    (user / "future" / "extension.toml").write_text('[extension]\napi = 2\nentry = "plugin:register"\n')
    (user / "sd-webui-controlnet" / "scripts").mkdir(parents=True)
    host = load_host(tmp_path, names=[])
    assert host.record("future").state == "refused" and "API 2" in host.record("future").error
    assert host.record("sd-webui-controlnet").error.startswith("needs a native port")


def test_localization_packs_merge_and_become_the_setting_choices(tmp_path):
    (tmp_path / "localizations").mkdir()
    (tmp_path / "localizations" / "xx_TEST.json").write_text(json.dumps({"Generate": "LOOSE", "Seed": "SEED-XX"}))
    host = load_host(tmp_path, names=["native-all-hooks"], config={"localization": "xx_TEST"})
    assert host.settings.options["localization"].choices == ("None", "xx_TEST")
    assert host.settings.get("localization") == "xx_TEST"
    page = host.assets.page_payload()
    # Same-named files merge; the extension's (loaded later) wins per key, as in A1111.
    assert page["localization"] == {"Generate": "GENERATE-XX", "Seed": "SEED-XX", "Prompt": "PROMPT-XX"}
    assert any(u.startswith("file=") and u.split("?")[0].endswith("native-all-hooks/javascript/native.js")
               for u in page["javascript"])


def test_file_route_serves_only_extension_files(tmp_path):
    host = load_host(tmp_path, names=["native-all-hooks"])
    ext = tmp_path / "extensions" / "native-all-hooks"
    (ext / ".git").mkdir()
    (ext / ".git" / "config").write_text("[remote \"origin\"]\nurl = https://user:token@example.invalid/x\n")
    assert host.assets.resolve_file("extensions/native-all-hooks/style.css") == (ext / "style.css").resolve()
    assert host.assets.resolve_file(str(ext / "javascript" / "native.js")) is not None
    for bad in ("/etc/passwd", "extensions/../config.json", "extensions/native-all-hooks/.git/config",
                str(REPO_ROOT / "webui" / "settings.py"), "extensions/native-all-hooks/missing.js"):
        assert host.assets.resolve_file(bad) is None, bad


def test_params_take_positional_or_named_args():
    params = [Param("enabled", bool, False), Param("strength", float, 0.5, minimum=0, maximum=1),
              Param("mode", str, "a", choices=("a", "b"))]
    assert check_params(params, [True, 0.25], "x") == {"enabled": True, "strength": 0.25, "mode": "a"}
    assert check_params(params, {"mode": "b"}, "x") == {"enabled": False, "strength": 0.5, "mode": "b"}
    for bad, message in (([1, 2, 3, 4], "4 args given, it takes 3"), ({"nope": 1}, "unknown arg(s) nope"),
                         ({"strength": 2}, "above the maximum"), ({"mode": "c"}, "'c' is not one of a, b"),
                         ("text", "must be a list")):
        with pytest.raises(ExtensionError, match=re.escape(message)):
            check_params(params, bad, "x")


def test_the_worked_example_in_the_docs_loads_and_works(tmp_path):
    """docs/extensions.md's example, taken from the page itself, does what the page says."""
    from webui.generation.plan import GenerationPlan
    from webui.generation.request import GenerationRequest

    doc = (REPO_ROOT / "docs" / "extensions.md").read_text(encoding="utf-8")
    toml = doc.split("`extensions/suffix/extension.toml`:\n\n```toml\n")[1].split("```")[0]
    plugin = doc.split("`extensions/suffix/plugin.py`:\n\n```python\n")[1].split("```")[0]
    folder = tmp_path / "extensions" / "suffix"
    folder.mkdir(parents=True)
    (folder / "extension.toml").write_text(toml)
    (folder / "plugin.py").write_text(plugin)
    host = load_host(tmp_path, names=[])
    assert host.record("suffix").state == "loaded", host.record("suffix").error
    assert host.settings.get("suffix_separator") == ", "
    values = host.panel_values({"suffix": {"args": {"enabled": True, "text": "in snow"}}})
    assert values == host.panel_values({"Suffix": {"args": [True, "in snow"]}})
    request = GenerationRequest(prompt="a cat", alwayson_scripts={"Suffix": {"args": [True, "in snow"]}})
    hooks = host.job(request)
    plan = hooks.plan(GenerationPlan.uniform("a cat", "", [1, 2], [0, 0], 2, 1))
    assert plan.prompts == ["a cat, in snow"] * 2 and hooks.panel_infotext() == {"Suffix": "in snow"}
    assert [r.path for r in host.apis["suffix"].router.routes] == ["/count"]
