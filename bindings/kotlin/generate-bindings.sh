#!/usr/bin/env bash
# Generates the Kotlin bindings (package io.sessionkit) from the sessionkit-ffi cdylib, in
# library mode, into the directory given (default: target/generated-sources/uniffi). Builds the
# cdylib first when it is missing or stale. Run by Maven in generate-sources; the generated code
# is never committed. Honours CARGO_TARGET_DIR (default: <repo>/target).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$here/target/generated-sources/uniffi}
target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac

cd "$repo"
cargo build -q -p sessionkit-ffi
rm -rf "$out"
mkdir -p "$out"
# The crate's own uniffi.toml (bindings/ffi/uniffi.toml) supplies the package name and renames.
cargo run -q -p uniffi-bindgen -- generate "$target/debug/libsessionkit_ffi.so" \
  --language kotlin --out-dir "$out" --no-format
test -f "$out/io/sessionkit/sessionkit_ffi.kt"
