# Sourced by scripts/quickstart and scripts/test: make sure .venv holds the project (editable,
# with its sandbox and dev extras) and its dependencies at the versions constraints.txt pins,
# installing them when missing or when pyproject.toml or constraints.txt changed since.
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
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "runbook: installing the project and its dependencies into .venv" >&2
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$PY" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt" \
      -e "$ROOT[sandbox,dev]"
    echo "$want" > "$stamp"
  fi
}

# The Allure 3 CLI (npm package "allure") renders the HTML report where Node.js is present.
# Without Node, or when npm fails, the raw results stay usable: say so and go on.
ensure_allure() {
  if ! command -v npm >/dev/null 2>&1; then
    echo "runbook: no Node.js/npm here: the HTML report is skipped (raw results in reports/allure-results)" >&2
    return 0
  fi
  local stamp="$ROOT/node_modules/.installed" want
  want="$(cat "$ROOT/package.json" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$ROOT/node_modules/.bin/allure" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "runbook: installing the Allure 3 CLI (npm) for the HTML report" >&2
    if (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 ||
        npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
      echo "$want" > "$stamp"
    else
      echo "runbook: npm could not install the Allure CLI: the HTML report is skipped" >&2
    fi
  fi
}

# Debian's prometheus, prometheus-pushgateway and prometheus-alertmanager: the tests run the
# real monitoring stack (tests/test_monitoring_stack.py, tests/test_probes_traffic.py) and
# promtool checks the shipped rules. Installed where we are root and apt exists; elsewhere
# say how to get them (or PROMETHEUS=, PROMTOOL=, PUSHGATEWAY=, ALERTMANAGER=/path/to/binary)
# and go on: those tests then fail saying which package is missing.
ensure_prometheus() {
  local missing=() entry variable binary package
  for entry in PROMETHEUS:prometheus:prometheus PROMTOOL:promtool:prometheus \
               PUSHGATEWAY:prometheus-pushgateway:prometheus-pushgateway \
               ALERTMANAGER:prometheus-alertmanager:prometheus-alertmanager; do
    IFS=: read -r variable binary package <<< "$entry"
    if [ -z "${!variable:-}" ] && ! command -v "$binary" >/dev/null 2>&1 &&
       [[ " ${missing[*]} " != *" $package "* ]]; then
      missing+=("$package")
    fi
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "runbook: installing Debian's ${missing[*]} for the monitoring tests" >&2
    if apt-get update -qq >/dev/null &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         "${missing[@]}" >/dev/null; then
      return 0
    fi
    echo "runbook: apt-get could not install ${missing[*]}: the monitoring tests will fail" >&2
  else
    echo "runbook: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]}) or set PROMETHEUS, PROMTOOL, PUSHGATEWAY, ALERTMANAGER to the binaries; the monitoring tests need them" >&2
  fi
}

# Headless Chromium opens the HTML report in a real browser in the tests
# (tests/test_report_html.py). Debian's package where we are root and apt exists; elsewhere
# say how to get it (or CHROMIUM=/path/to/chromium) and go on: those tests then fail saying so.
ensure_chromium() {
  if [ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 ||
     command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "runbook: installing Debian's chromium for the report's browser tests" >&2
    if apt-get update -qq >/dev/null &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
      return 0
    fi
    echo "runbook: apt-get could not install chromium: the report's browser tests will fail" >&2
  else
    echo "runbook: no chromium on PATH: install it (Debian: apt-get install chromium) or set CHROMIUM=/path/to/chromium; the report's browser tests need it" >&2
  fi
}
