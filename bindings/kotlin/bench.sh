#!/usr/bin/env bash
# Median time of `User.accessToken()` (a synchronous getter) from Kotlin, of the OkHttp
# interceptor's token read, and of `User.dpopProof()` for a session bound with DPoP (#29, N/10
# calls). Builds what it needs, then runs io.sessionkit.BenchKt from the test classpath.
# Usage: bindings/kotlin/bench.sh [N]
# PROFILE=release measures an optimised cdylib (the bindings are generated from the debug one;
# both carry the same interface).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac
profile=${PROFILE:-debug}
cargo build -q -p sessionkit-ffi -p sessionkit-server
[ "$profile" = debug ] || cargo build -q --profile "$profile" -p sessionkit-ffi
cd bindings/kotlin
mvn -q -B test-compile -Dsessionkit.libdir="$target/debug"
mvn -q -B exec:java -Dexec.mainClass=io.sessionkit.BenchKt -Dexec.classpathScope=test \
  -Dexec.args="${1:-200000}" -Djna.library.path="$target/$profile" \
  -Dsessionkit.server.bin="$target/debug/sessionkit-server"
