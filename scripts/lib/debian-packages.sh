# Sourced by the cross-build scripts (scripts/platforms, platforms-apple, platforms-android) and
# scripts/test-aarch64:
# installs Debian packages they need, as root with apt-get, only when missing.
# debian_packages PKG...: installs those not installed; non-zero (with the reason on stdout as
# "skipped (...)" text in $why) when it cannot.
why=""
debian_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    why="needs the Debian packages ${missing[*]}: install them as root, then run again"
    return 1
  fi
  if printf '%s\n' "${missing[@]}" | grep -q ':arm64$' &&
    ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1; then
    why="apt-get could not install ${missing[*]} (no Debian archive reachable?)"
    return 1
  fi
}
