"""Installing extensions from git: https only, preview before anything runs, pinned dependencies, --listen lock."""
import argparse
import importlib.metadata
import json

import pytest

from tests.ext_kit import TEST_EXT_FILES, TEST_EXT_URL, git, https_alias, make_bare_repo, push_change
from webui.extensions.install import (ACCESS_DENIED, InstallError, Installer, access_refusal, check_url,
                                      constraints_text)


def flags(**values):
    return argparse.Namespace(**{"listen": False, "server_name": None, "enable_insecure_extension_access": False,
                                 **values})


@pytest.fixture
def repo(tmp_path, monkeypatch):
    bare = make_bare_repo(tmp_path / "repos", TEST_EXT_FILES)
    for key, value in https_alias(bare, TEST_EXT_URL).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip must decide from what is installed: no network in tests
    return bare


def installer_for(tmp_path, args=None) -> Installer:
    data = tmp_path / "data"
    return Installer(data, data / "extensions", args or flags())


@pytest.mark.parametrize("url", ["http://example.invalid/x.git", "file:///tmp/x.git", "git@github.com:a/b.git",
                                 "/tmp/x.git", "https://user:token@example.invalid/x.git", ""])
def test_only_https_urls_without_credentials(url):
    with pytest.raises(InstallError):
        check_url(url)
    assert check_url(" https://github.com/a/b.git ") == "https://github.com/a/b.git"


def test_listen_locks_installs_unless_the_insecure_flag_is_given():
    assert access_refusal(flags()) == ""
    assert access_refusal(flags(listen=True)) == ACCESS_DENIED
    assert access_refusal(flags(server_name="0.0.0.0")) == ACCESS_DENIED
    assert access_refusal(flags(listen=True, enable_insecure_extension_access=True)) == ""


def test_install_is_refused_with_listen_before_anything_is_cloned(tmp_path, repo):
    installer = installer_for(tmp_path, flags(listen=True))
    with pytest.raises(InstallError, match="extension access disabled"):
        installer.preview(TEST_EXT_URL)
    assert not (tmp_path / "data" / "tmp").exists() and not (tmp_path / "data" / "extensions").exists()


def test_preview_then_install_from_a_git_repository(tmp_path, repo):
    installer = installer_for(tmp_path)
    preview = installer.preview(TEST_EXT_URL)
    commit = git("rev-parse", "HEAD", cwd=repo)
    assert preview.commit == commit and preview.name == "test-ext" and preview.kind == "native"
    text = preview.describe()
    assert commit[:8] in text and "requirements.txt (installed with our pins as constraints):\nnumpy" in text
    assert "Path('install-ran.txt')" in text  # install.py is shown ...
    assert not (preview.folder / "install-ran.txt").exists()  # ... and has not run
    assert not (tmp_path / "data" / "extensions" / "test-ext").exists()
    message = installer.install(preview)
    target = tmp_path / "data" / "extensions" / "test-ext"
    assert message.startswith(f"Installed test-ext at commit {commit[:8]}")
    assert (target / "install-ran.txt").read_text() == "numpy=True"  # install.py ran with the launch shim
    assert (target / ".git").is_dir() and not preview.folder.parent.exists()
    with pytest.raises(InstallError, match="already"):
        installer.preview(TEST_EXT_URL)


def test_constraints_keep_our_pins(tmp_path, monkeypatch):
    pins = constraints_text()
    for name in ("torch", "diffusers", "transformers", "gradio", "numpy"):
        assert f"{name}=={importlib.metadata.version(name)}\n" in pins
    files = {**TEST_EXT_FILES, "requirements.txt": "numpy==1.0.0\n"}
    bare = make_bare_repo(tmp_path / "repos", files, name="downgrader")
    for key, value in {**https_alias(bare, "https://example.invalid/downgrader.git"), "PIP_NO_INDEX": "1"}.items():
        monkeypatch.setenv(key, value)
    installer = installer_for(tmp_path)
    preview = installer.preview("https://example.invalid/downgrader.git")
    with pytest.raises(InstallError, match=r"(?s)pip install -r requirements.txt failed.*\(constraint\) numpy=="):
        installer.install(preview)
    assert not (tmp_path / "data" / "extensions" / "downgrader").exists()
    assert importlib.metadata.version("numpy") != "1.0.0"


def test_install_py_run_pip_goes_through_the_constraints(tmp_path, monkeypatch):
    files = {**TEST_EXT_FILES, "requirements.txt": "",
             "install.py": "import launch\nlaunch.run_pip('install numpy==1.0.0', 'old numpy')\n"}
    bare = make_bare_repo(tmp_path / "repos", files, name="sneaky")
    for key, value in {**https_alias(bare, "https://example.invalid/sneaky.git"), "PIP_NO_INDEX": "1"}.items():
        monkeypatch.setenv(key, value)
    installer = installer_for(tmp_path)
    with pytest.raises(InstallError, match=r"(?s)install.py failed.*Couldn't install old numpy"):
        installer.install(installer.preview("https://example.invalid/sneaky.git"))
    assert not (tmp_path / "data" / "extensions" / "sneaky").exists()


def test_check_and_update_back_up_config_first(tmp_path, repo):
    installer = installer_for(tmp_path)
    installer.install(installer.preview(TEST_EXT_URL))
    target = tmp_path / "data" / "extensions" / "test-ext"
    (tmp_path / "data" / "config.json").write_text(json.dumps({"disabled_extensions": []}))
    assert installer.check_update(target) == "latest"
    new = push_change(repo, "plugin.py", "def register(api):\n    pass\n")
    assert installer.check_update(target) == "behind"
    message = installer.update(target)
    assert git("rev-parse", "HEAD", cwd=target) == new and new[:8] in message
    backups = list((tmp_path / "data" / "config_states").glob("config-*-pre-update.json"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == {"disabled_extensions": []}
    with pytest.raises(InstallError, match="extension access disabled"):
        Installer(tmp_path / "data", tmp_path / "data" / "extensions", flags(listen=True)).update(target)
