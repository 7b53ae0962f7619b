"""Parity: the generated Python, Kotlin and Swift bindings each have every API.md member."""

import pathlib
import sys

import pytest

import sessionkit._native

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "parity"))
import check_parity  # type: ignore[import-not-found]  # noqa: E402  (a script, not a package)

# The cdylib this package was built with: its metadata is what every generator reads.
LIB = pathlib.Path(sessionkit._native.__file__).parent / "libsessionkit_ffi.so"
API = check_parity.default_api()


def test_api_md_parses_into_every_section() -> None:
    owners = {owner for owner, _, _ in check_parity.parse_api(API.read_text())}
    assert {
        "App", "User", "ApiKeyAuth", "EmailPasswordAuth", "EmailOtpAuth", "Credentials", "AppConfig",
        "StorageConfig", "AuthEvent", "AuthEventKind", "SessionError", "SessionErrorKind",
        "SessionStore", "StoreError", "AuthEventListener", "SessionErrorHandler", "Logger",
        "AppError", "SessionInfo", "SessionDevice", "LogOutScope",
    } <= owners


@pytest.mark.parametrize("lang", check_parity.LANGS)
def test_every_api_member_is_generated(lang: str) -> None:
    assert check_parity.check(lang, LIB, API) == []


def test_a_member_counts_only_on_its_own_type(tmp_path: pathlib.Path) -> None:
    # The checker must not be satisfied by a same-named member of another type.
    src = check_parity.generate(LIB, "python", tmp_path)
    assert check_parity.check_python(src, ("User", "refresh_profile", "method"))
    assert not check_parity.check_python(src, ("App", "refresh_profile", "method"))
    extra = tmp_path / "API.md"
    extra.write_text(API.read_text().replace("`enter_background()`", "`enter_background()`, `frobnicate()`"))
    assert check_parity.check("kotlin", LIB, extra) == ["App.frobnicate (method)"]
