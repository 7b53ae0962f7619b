# Sourced by the test scripts whose builds are of a feature set, profile or target of their own
# (the Python suite's dev install, the x86_64 and aarch64 wheels): their cargo target directory
# is kept in the machine's cache directory, as the Windows and Android builds' are, so that their
# dependencies stay built between runs and fresh clones and only the workspace's crates rebuild.
# The Rust suites' own build (`cargo test --workspace`, scripts/build-test-binaries) stays in the
# clone's target directory.
# cache_target NAME FALLBACK: prints $SESSIONKIT_CACHE/NAME (default /var/cache/sessionkit/NAME)
# when it can be created and written there, else FALLBACK.
cache_target() {
  local dir="${SESSIONKIT_CACHE:-/var/cache/sessionkit}/$1"
  if mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ]; then
    echo "$dir"
  else
    echo "$2"
  fi
}
