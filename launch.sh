#!/usr/bin/env bash
# Fresh clone to running UI: make .venv, install pinned requirements when they changed, start app.py.
#   ./launch.sh [app flags]   set up and start the UI (flags go to app.py; see --help)
#   ./launch.sh --exit        set up and exit
#   ./launch.sh --test        set up, install test requirements and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
VENV="$ROOT/.venv"

find_python() {
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)" || { echo "error: Python 3.10 to 3.12 is required (set PYTHON=/path/to/python3.x)." >&2; exit 1; }
  echo "Creating virtual environment in .venv with $("$PY" --version)"
  "$PY" -m venv "$VENV" || { echo "error: could not create .venv (on Debian/Ubuntu: apt install python3-venv)." >&2; exit 1; }
fi
PYBIN="$VENV/bin/python"

# Install a requirements file only when its content changed since the last successful install.
install_if_changed() {
  local file="$1" stamp hash
  shift
  hash="$(sha256sum "$file" | cut -c1-16)"
  stamp="$VENV/.installed-$(basename "$file")-$hash"
  if [ -f "$stamp" ]; then return 0; fi
  echo "Installing $file (this happens once per change of the file)..."
  "$PYBIN" -m pip install --disable-pip-version-check -q "$@" -r "$file"
  rm -f "$VENV"/.installed-"$(basename "$file")"-*
  touch "$stamp"
}

# xformers is optional: only with an NVIDIA GPU and only in a build made for the installed torch.
maybe_xformers() {
  local stamp="$VENV/.xformers-checked"
  [ -f "$stamp" ] && return 0
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    local torch_version
    torch_version="$("$PYBIN" -c 'import torch; print(torch.__version__.split("+")[0])')"
    if "$PYBIN" -m pip install -q xformers "torch==$torch_version" >/dev/null 2>&1; then
      echo "xformers installed for torch $torch_version (use --xformers to enable it)."
    else
      echo "xformers: no build matches torch $torch_version; attention uses PyTorch SDPA."
    fi
  else
    echo "No NVIDIA GPU found: attention uses PyTorch SDPA (xformers not installed)."
  fi
  touch "$stamp"
}

install_if_changed requirements.txt
# Packages whose declared dependencies must not be installed (the file says why).
install_if_changed requirements-nodeps.txt --no-deps
maybe_xformers

if [ "${1:-}" = "--test" ]; then
  shift
  install_if_changed requirements-test.txt
  set +e
  "$PYBIN" -m pytest tests "$@"
  exit $?
fi

exec "$PYBIN" app.py "$@"
