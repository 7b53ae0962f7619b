"""String forms of the types that hold secrets: ``str()`` and ``repr()`` never show a password,
an API key, a token, a function payload or an encryption key (they read ``<redacted>``), as
Rust's ``Debug`` of the same types. The generated classes print every field; these replace
their ``__str__`` and ``__repr__``.
"""

from __future__ import annotations

import typing

from ._native import sessionkit_ffi as _ffi

_REDACTED = "<redacted>"


def _form(name: str, fields: typing.Sequence[str], secret: typing.Collection[str]):
    def text(self: object) -> str:
        parts = []
        for f in fields:
            value = getattr(self, f)
            if f in secret and value is not None:
                parts.append(f"{f}={_REDACTED}")
            else:
                parts.append(f"{f}={value!r}" if isinstance(value, str) else f"{f}={value}")
        return f"{name}({', '.join(parts)})"

    return text


# (class, printed name, fields in order, secret fields)
_SECRET_HOLDERS = [
    (_ffi.Credentials.EMAIL_PASSWORD, "Credentials.EMAIL_PASSWORD", ["email", "password"], {"password"}),
    (_ffi.Credentials.API_KEY, "Credentials.API_KEY", ["key"], {"key"}),
    (_ffi.Credentials.JWT, "Credentials.JWT", ["token"], {"token"}),
    (_ffi.Credentials.FUNCTION, "Credentials.FUNCTION", ["payload_json"], {"payload_json"}),
    (_ffi.ApiKey, "ApiKey", ["id", "key", "name", "disabled"], {"key"}),
    (_ffi.StorageConfig.FILE, "StorageConfig.FILE", ["dir", "encryption_key"], {"encryption_key"}),
    (
        _ffi.AppConfig,
        "AppConfig",
        ["app_id", "base_url", "storage", "request_timeout_ms", "refresh_margin_secs",
         "auto_refresh", "allow_insecure_http", "max_response_bytes"],
        set(),
    ),
]


def install() -> None:
    """Replaces the string forms of the generated classes that hold secrets."""
    for cls, name, fields, secret in _SECRET_HOLDERS:
        form = _form(name, fields, secret)
        cls.__str__ = form  # type: ignore[method-assign]
        cls.__repr__ = form  # type: ignore[method-assign]
