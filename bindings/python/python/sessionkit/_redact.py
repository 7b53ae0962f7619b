"""Readable string forms of the generated values, with every secret redacted.

``str()`` and ``repr()`` of a record or variant read like its constructor call, strings quoted
and enums by name: ``Credentials.EMAIL_PASSWORD(email='ada@example.com', password=<redacted>)``.
A password, an API key, a token, a function payload or an encryption key reads ``<redacted>``,
as in Rust's ``Debug`` of the same types. ``User`` shows its id, state and provider instead of
a handle; ``HttpResponse`` shows its body with secret-named JSON fields redacted and long
bodies cut; ``SessionInfo`` and ``SessionDevice`` leave out their fields that are None.
"""

from __future__ import annotations

import enum
import inspect
import json
import typing

from ._native import sessionkit_ffi as _ffi

_REDACTED = "<redacted>"
# Longer response bodies are cut in string forms: a repr is for reading.
_BODY_CHARS = 200
# JSON fields and headers whose values are secrets wherever they appear.
_SECRET_KEYS = frozenset({
    "access_token", "refresh_token", "password", "key", "api_key", "token", "authorization",
    "cookie", "set-cookie", "proxy-authorization",
})


class _Redacted:
    def __repr__(self) -> str:
        return _REDACTED


def _show(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _params(cls: type) -> typing.List[inspect.Parameter]:
    init = vars(cls).get("__init__") or getattr(cls, "__init__")
    return [p for p in inspect.signature(init).parameters.values() if p.name != "self"]


def _defaults(cls: type, self: object) -> typing.Dict[str, object]:
    """The values a constructor call without them would give (a record built from ``self``'s
    required fields only: the generated defaults may be a private sentinel)."""
    params = _params(cls)
    if all(p.default is inspect.Parameter.empty for p in params):
        return {}
    required = {p.name: getattr(self, p.name) for p in params if p.default is inspect.Parameter.empty}
    try:
        plain = cls(**required)
    except Exception:  # a record that cannot be rebuilt: show every field
        return {}
    return {p.name: getattr(plain, p.name) for p in params if p.default is not inspect.Parameter.empty}


def _form(cls: type, secret: typing.Collection[str]) -> typing.Callable[[object], str]:
    fields = [p.name for p in _params(cls)]

    def text(self: object) -> str:
        # Fields left at their defaults are left out, as in the constructor call one would write.
        defaults = _defaults(cls, self)
        parts = []
        for f in fields:
            value = getattr(self, f)
            if f in defaults and value == defaults[f]:
                continue
            shown = _REDACTED if f in secret and value is not None else _show(value)
            parts.append(f"{f}={shown}")
        return f"{type(self).__qualname__}({', '.join(parts)})"

    return text


def _sparse_form(cls: type) -> typing.Callable[[object], str]:
    """The constructor-call form without the fields that are None: a ``SessionInfo`` and its
    ``SessionDevice`` have eleven optional fields that most logins leave unset (#25)."""
    fields = [p.name for p in _params(cls)]

    def text(self: object) -> str:
        parts = [f"{f}={_show(getattr(self, f))}" for f in fields if getattr(self, f) is not None]
        return f"{type(self).__qualname__}({', '.join(parts)})"

    return text


def _redact_json(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: _Redacted() if k.lower() in _SECRET_KEYS else _redact_json(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


def _http_header_text(self: _ffi.HttpHeader) -> str:
    value = _REDACTED if self.name.lower() in _SECRET_KEYS else repr(self.value)
    return f"HttpHeader(name={self.name!r}, value={value})"


def _http_response_text(self: _ffi.HttpResponse) -> str:
    try:
        body = repr(_redact_json(json.loads(self.body)))
    except ValueError:
        body = repr(self.body)  # not JSON: shown as text (cut below)
    if len(body) > _BODY_CHARS:
        body = body[:_BODY_CHARS] + f"... ({len(self.body)} chars)"
    return f"HttpResponse(status={self.status}, headers={_show(self.headers)}, body={body})"


def _user_text(self: _ffi.User) -> str:
    try:
        return (
            f"User(id={self.id()!r}, state={_show(self.state())}, "
            f"provider_type={self.provider_type()!r})"
        )
    except Exception:  # a repr must not raise, whatever the handle's state
        return "User(<unavailable>)"


# Secret fields per class; every other field is shown.
_SECRETS: typing.Dict[type, typing.Set[str]] = {
    _ffi.Credentials.EMAIL_PASSWORD: {"password"},
    _ffi.Credentials.EMAIL_OTP: {"code"},
    _ffi.Credentials.API_KEY: {"key"},
    _ffi.Credentials.JWT: {"token"},
    _ffi.Credentials.FUNCTION: {"payload_json"},
    _ffi.Credentials.GOOGLE_ID_TOKEN: {"id_token"},
    _ffi.Credentials.GOOGLE_AUTH_CODE: {"auth_code"},
    _ffi.Credentials.APPLE_ID_TOKEN: {"id_token"},
    _ffi.Credentials.FACEBOOK_ACCESS_TOKEN: {"access_token"},
    _ffi.Credentials.OIDC_ID_TOKEN: {"id_token"},
    _ffi.ApiKey: {"key"},
    _ffi.StorageConfig.FILE: {"encryption_key"},
}

_RECORDS: typing.List[type] = [
    _ffi.Credentials.ANONYMOUS,
    _ffi.StorageConfig.IN_MEMORY,
    _ffi.StorageConfig.CUSTOM,
    _ffi.AppConfig,
    _ffi.DeviceInfo,
    _ffi.AuthEvent,
    _ffi.UserIdentity,
    _ffi.UserProfile,
    _ffi.SessionError,
    *_SECRETS,
]


def install() -> None:
    """Replaces the string forms of the generated values."""
    for cls in _RECORDS:
        form = _form(cls, _SECRETS.get(cls, set()))
        setattr(cls, "__str__", form)
        setattr(cls, "__repr__", form)
    specific: typing.List[typing.Tuple[type, typing.Callable[[typing.Any], str]]] = [
        (_ffi.HttpHeader, _http_header_text),
        (_ffi.HttpResponse, _http_response_text),
        (_ffi.User, _user_text),
        # No secret in either (the id only names a session): every field is shown.
        (_ffi.SessionInfo, _sparse_form(_ffi.SessionInfo)),
        (_ffi.SessionDevice, _sparse_form(_ffi.SessionDevice)),
    ]
    for cls, text in specific:
        setattr(cls, "__str__", text)
        setattr(cls, "__repr__", text)
