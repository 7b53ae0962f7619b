#!/usr/bin/env bash
# Puts libsessionkit_ffi.so into the jar's resources: builds it with the cargo profile given
# (`debug`, the default for tests, or `release-ffi`, the size-tuned build for a release) and
# copies it, stripped, to <out>/linux-x86-64/, the resource path where JNA looks for a library
# of this platform, so a consumer needs no jna.library.path. Run by Maven in
# generate-resources, and by scripts/test-kotlin. Honours CARGO_TARGET_DIR.
# Usage: bundle-native.sh [PROFILE] [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=${1:-debug}
out=${2:-$here/target/native}
target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac

cd "$repo"
case "$profile" in
  debug) bash scripts/build-test-binaries -q ;; # the debug build the test scripts share
  *) cargo build -q --profile "$profile" -p sessionkit-ffi ;;
esac
lib=$target/$profile/libsessionkit_ffi.so
test -f "$lib" || { echo "bundle-native: $lib was not built" >&2; exit 1; }
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x86-64 ;;
  Linux-aarch64) platform=linux-aarch64 ;;
  *) echo "bundle-native: no JNA resource path known for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
rm -rf "$out"
mkdir -p "$out/$platform"
# Stripped: the symbol table and debug info are most of a debug build (72 MB -> about 10), and
# JNA needs only the dynamic symbols. uniffi-bindgen reads the unstripped original.
cp "$lib" "$out/$platform/libsessionkit_ffi.so.tmp"
strip "$out/$platform/libsessionkit_ffi.so.tmp"
mv "$out/$platform/libsessionkit_ffi.so.tmp" "$out/$platform/libsessionkit_ffi.so"
