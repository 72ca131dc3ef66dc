# Sourced by scripts/quickstart and scripts/test: make sure .venv holds the project and its
# dependencies, installing them when missing or when pyproject.toml changed since.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

find_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "runbook: needs Python 3.11 or newer on PATH (or PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  if [ ! -x "$PY" ]; then
    local python; python="$(find_python)"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "runbook: installing Debian's venv support for $python" >&2
        apt-get update -qq >/dev/null && apt-get install -y -qq "python3-venv" >/dev/null
        "$python" -m venv "$VENV"
      else
        echo "runbook: '$python -m venv' failed; install your distribution's python3-venv" >&2
        return 1
      fi
    fi
  fi
  local stamp="$VENV/.installed" want
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "runbook: installing the project and its dependencies into .venv" >&2
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$PY" -m pip install -q --disable-pip-version-check -e "$ROOT[dev]"
    echo "$want" > "$stamp"
  fi
}
