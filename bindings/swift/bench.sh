#!/usr/bin/env bash
# Median time of `User.dpopProof(...)` from Swift for a bound session (#29), beside the
# `User.accessToken()` getter, with the FFI library as shipped (the `release-ffi` profile; the
# bindings are those scripts/test-swift generated from the debug build, which carries the same
# interface). Runs Tests/SessionKitTests/DpopBench.swift, which the test suite skips, with
# SESSIONKIT_SWIFT_BENCH=N timed calls. Usage: bindings/swift/bench.sh [N] (default 20000).
# `swift` from PATH, else the Debian toolchain of scripts/swift-env, as scripts/test-swift.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac
if [ ! -f bindings/swift/Sources/SessionKit/SessionKit.swift ]; then
  echo "bench.sh: no generated bindings: run scripts/test-swift once first" >&2
  exit 1
fi
bash scripts/build-test-binaries -q
cargo build -q --profile release-ffi -p sessionkit-ffi
# A private copy: other builds replace target's files while they link. Under /tmp, which the
# Swift root sees at the same path.
lib=$(mktemp -d)
trap 'rm -rf "$lib"' EXIT
cp "$target/release-ffi/libsessionkit_ffi.so" "$target/debug/sessionkit-server" "$lib/"
swift=(swift)
command -v swift >/dev/null || swift=(bash "$repo/scripts/swift-env" run "$repo/bindings/swift" swift)
cd bindings/swift
SESSIONKIT_SWIFT_BENCH=${1:-20000} SESSIONKIT_SERVER_BIN="$lib/sessionkit-server" \
  LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "${swift[@]}" test --filter DpopBench -Xlinker -L"$lib" -Xlinker -rpath -Xlinker "$lib"
