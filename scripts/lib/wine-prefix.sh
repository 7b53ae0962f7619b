# Sourced by scripts/test-windows and scripts/platforms: the wine prefix both run Windows
# programs in, $SESSIONKIT_CACHE/wine-prefix (made once), with a stand-in for
# bcryptprimitives.dll in its system32. Rust's std on Windows takes its random bytes from that
# DLL's ProcessPrng (Windows 10 and later), which wine 8 lacks; scripts/windows/bcryptprimitives.c
# forwards to BCryptGenRandom. Test-only, never shipped. Needs wine64 and mingw-w64 installed.
wine=/usr/lib/wine/wine64
wineserver=/usr/lib/wine/wineserver
export WINEPREFIX="${SESSIONKIT_CACHE:-/var/cache/sessionkit}/wine-prefix" WINEDEBUG=-all

# wine_prefix_ready: non-zero, with the reason in $why, when the prefix cannot be made.
wine_prefix_ready() {
  local system32="$WINEPREFIX/drive_c/windows/system32"
  if [ ! -d "$system32" ]; then
    mkdir -p "$WINEPREFIX"
    "$wine" wineboot --init >/dev/null 2>&1
    "$wineserver" -w
  fi
  [ -d "$system32" ] || { why="wine could not create its prefix in $WINEPREFIX"; return 1; }
  if [ ! -f "$system32/bcryptprimitives.dll" ] ||
    [ scripts/windows/bcryptprimitives.c -nt "$system32/bcryptprimitives.dll" ]; then
    x86_64-w64-mingw32-gcc -O2 -shared -s -o "$system32/bcryptprimitives.dll" \
      scripts/windows/bcryptprimitives.c -lbcrypt ||
      { why="could not build the bcryptprimitives.dll stand-in"; return 1; }
  fi
}
