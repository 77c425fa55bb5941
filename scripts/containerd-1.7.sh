#!/usr/bin/env bash
# Unpack Debian 13's containerd 1.7 (it runs on Debian 12) into build/containerd-1.7/, for the
# shim tests and benchmarks that import images whose layers are Wasm: Debian 12's containerd
# 1.6.20 refuses them ("mismatched image rootfs and manifest layers"; fixed in 1.6.25/1.7.7).
#
# Uses apt with a private list naming the trixie suites of the mirrors this machine's apt
# already uses; nothing is installed system-wide. Idempotent: prints the binary's directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/build/containerd-1.7"
BIN="$DEST/usr/bin"

if [ -x "$BIN/containerd" ] && "$BIN/containerd" --version 2>/dev/null | grep -q ' 1\.7\.'; then
  echo "$BIN"
  exit 0
fi

# The Debian mirrors this machine uses (deb822 .sources or one-line sources.list).
mirrors() {
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}'
  } | grep -E '/debian(-security)?/?$' | sort -u
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$DEST"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
: >"$work/sources.list"
while read -r uri; do
  case "$uri" in
  */debian-security | */debian-security/) suites="trixie-security" ;;
  *) suites="trixie trixie-updates" ;;
  esac
  for s in $suites; do echo "deb [signed-by=$keyring] $uri $s main" >>"$work/sources.list"; done
done < <(mirrors)
[ -s "$work/sources.list" ] || { echo "containerd-1.7.sh: no Debian mirror in apt's sources" >&2; exit 1; }

apt_opts=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
echo "containerd-1.7.sh: fetching Debian 13's containerd into ${DEST#"$ROOT"/}" >&2
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$work" && apt-get "${apt_opts[@]}" download containerd >/dev/null)
rm -rf "$DEST"
dpkg -x "$work"/containerd_*.deb "$DEST"
"$BIN/containerd" --version >&2
echo "$BIN"
