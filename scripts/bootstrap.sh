# Sourced by bin/wasmlet and bin/test: make .venv (Python >= 3.11) with wasmlet installed.
# Re-installs when pyproject.toml changes. Installs Debian's python3-venv when it is missing
# and we are root. Prints what it does to stderr; quiet when there is nothing to do.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

_say() { printf 'bootstrap: %s\n' "$*" >&2; }

_find_python() {
  local c
  for c in python3.13 python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

_apt_install() {
  if [ "$(id -u)" != 0 ]; then
    _say "missing Debian packages: $*; install them with: sudo apt-get install $*"
    return 1
  fi
  _say "installing Debian packages: $*"
  if [ -z "${_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ensure_venv [EXTRAS]: EXTRAS like "dev" installs wasmlet[dev].
ensure_venv() {
  local extras="${1:-}" spec="." stamp want py
  [ -n "$extras" ] && spec=".[$extras]"
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$extras"
  stamp="$VENV/.wasmlet-bootstrap"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && grep -qx -- "$want" "$stamp"; then
    return 0
  fi
  # A venv made with more extras also serves fewer.
  if [ -z "$extras" ] && [ -f "$stamp" ] && grep -q -- "^$(cut -c1-16 <<<"$want")-" "$stamp"; then
    return 0
  fi
  py="$(_find_python)" || { _say "Python >= 3.11 is required (apt-get install python3)"; return 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      _apt_install python3-venv || return 1
      "$py" -m venv "$VENV" || return 1
    fi
  fi
  _say "installing wasmlet$([ -n "$extras" ] && echo "[$extras]") into .venv (first run only)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || return 1
  "$VENV/bin/python" -m pip install -q -e "$ROOT$([ -n "$extras" ] && echo "[$extras]")" >&2 || return 1
  echo "$want" > "$stamp"
}
