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
# The project's one debug build (scripts/build-test-binaries), which every test script shares:
# its library and the workspace's uniffi-bindgen, with no build of their own feature sets.
bash scripts/build-test-binaries -q
rm -rf "$out"
mkdir -p "$out"
# The crate's own uniffi.toml (bindings/ffi/uniffi.toml) supplies the package name and renames.
"$target/debug/uniffi-bindgen" generate "$target/debug/libsessionkit_ffi.so" \
  --language kotlin --out-dir "$out" --no-format
test -f "$out/io/sessionkit/sessionkit_ffi.kt"
# App's close() and destroy() (AutoCloseable, and the generated `use`) close the App (Rust
# `close`, `shutdown` here) before they release the handle, and every App makes sure of the JVM
# shutdown hook (AppExit.kt). UniFFI has no option for either, so the generated class is edited;
# a change in its shape fails the build.
python3 - "$out/io/sessionkit/sessionkit_ffi.kt" <<'PY'
import pathlib, sys
path = pathlib.Path(sys.argv[1])
src = path.read_text()
start = src.index("open class App: Disposable, AutoCloseable, AppInterface")
end = src.index("\nopen class ", start + 1)
old = """    override fun destroy() {
"""
at = src.index(old, start)
assert at < end, "App.destroy() not found in class App"
new = """    init {
        AppExit.install()
    }

    /** Closes the App (see [shutdown]), then releases its native handle; [close] calls this. */
    override fun destroy() {
        if (!this.wasDestroyed.get()) {
            try {
                this.shutdown()
            } catch (e: IllegalStateException) {
                // Released meanwhile by another thread: it closed the App then.
            }
        }
"""
src = src[:at] + new + src[at + len(old):]

# String forms that would print secrets (data classes print every field): redacted, as Rust's
# Debug of the same types.
redactions = [
    ("    data class EmailPassword(", 'override fun toString() = "EmailPassword(email=$email, password=<redacted>)"'),
    ("    data class EmailOtp(", 'override fun toString() = "EmailOtp(email=$email, code=<redacted>)"'),
    ("    data class ApiKey(", 'override fun toString() = "ApiKey(key=<redacted>)"'),
    ("    data class Jwt(", 'override fun toString() = "Jwt(token=<redacted>)"'),
    ("    data class Function(", 'override fun toString() = "Function(payloadJson=<redacted>)"'),
    ("    data class GoogleIdToken(", 'override fun toString() = "GoogleIdToken(idToken=<redacted>)"'),
    ("    data class GoogleAuthCode(", 'override fun toString() = "GoogleAuthCode(authCode=<redacted>)"'),
    ("    data class AppleIdToken(", 'override fun toString() = "AppleIdToken(idToken=<redacted>)"'),
    ("    data class FacebookAccessToken(", 'override fun toString() = "FacebookAccessToken(accessToken=<redacted>)"'),
    ("    data class OidcIdToken(", 'override fun toString() = "OidcIdToken(provider=$provider, idToken=<redacted>)"'),
    ("data class ApiKey (", 'override fun toString() = "ApiKey(id=$id, key=${if (key == null) "null" else "<redacted>"}, name=$name, disabled=$disabled)"'),
]
for header, body in redactions:
    assert src.count(header) == 1, f"{header!r} not found once in the generated Kotlin"
    brace = src.index("{", src.index(header))
    src = src[: brace + 1] + "\n        " + body + "\n" + src[brace + 1 :]

# Error messages: UniFFI makes each variant's `message` list its fields ("code=..., detail=...").
# AppException's reads the FFI's describe() instead, the sentence every binding shows (API.md,
# Errors); StoreException has no describe(), so its sentences are the Rust #[error] texts of
# StoreError (bindings/ffi/src/storage.rs). The fields stay properties. Every variant's getter
# must be found, or the build fails.
import re
getter = re.compile(r'override val message\n\s*get\(\) = "[^"\n]*"')
def sentences(src, cls, variants):
    start = src.index(f"sealed class {cls}: kotlin.Exception()")
    end = src.index("companion object ErrorHandler", start)
    body = src[start:end]
    for variant, sentence in variants.items():
        at = body.index(f"    class {variant}(")
        m = getter.search(body, at)
        nxt = body.find("    class ", at + 1)
        assert m and (nxt == -1 or m.start() < nxt), f"{cls}.{variant}: message getter not found"
        body = body[: m.start()] + f"override val message: String\n            get() = {sentence}" + body[m.end():]
    left = getter.findall(body)
    assert not left, f"{cls}: variants not rewritten: {left}"
    return src[:start] + body + src[end:]
variants = re.findall(r"^    class (\w+)\(", src[src.index("sealed class AppException"):src.index("companion object ErrorHandler", src.index("sealed class AppException"))], re.M)
assert len(variants) >= 10, f"AppException variants not found: {variants}"
src = sentences(src, "AppException", {v: "describe()" for v in variants})
src = sentences(src, "StoreException", {
    "Unavailable": '"session store unavailable: $detail"',
    "Corrupt": '"session store corrupt: $detail"',
})
# The app's own DpopSigner raises DpopSignerException.Failed(detail) (#29): its message is the
# app's text, as Rust's #[error("{message}")] (uniffi.toml renames the field, as AppError's).
src = sentences(src, "DpopSignerException", {"Failed": "detail"})

# foreignRuntimeExiting(timeoutMs: UInt): UInt is the one unsigned type left in the generated
# API (the Rust export takes u32; changing it would change the Swift and Python bindings too).
# It becomes internal; the Kotlin layer (AppExit.kt) exports an Int form.
old_fn = "fun `foreignRuntimeExiting`(`timeoutMs`: kotlin.UInt): kotlin.UInt {"
assert src.count(old_fn) == 1, "foreignRuntimeExiting(UInt) not found once"
src = src.replace(old_fn, "internal fun `foreignRuntimeExitingUnsigned`(`timeoutMs`: kotlin.UInt): kotlin.UInt {")

# No unsigned type in the public API (issue #13: plain literals): the generator writes exported
# types as kotlin.UInt etc., so any such declaration that is not internal is one the FFI added.
unsigned = [
    line.strip() for line in src.splitlines()
    if re.search(r"\bkotlin\.U(Int|Long|Short|Byte)\b", line) and "internal fun" not in line
]
assert not unsigned, f"unsigned types in the public Kotlin API: {unsigned}"
path.write_text(src)
PY
