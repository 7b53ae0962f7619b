"""Public names and readable errors.

The generated classes live in ``sessionkit._native.sessionkit_ffi``; tracebacks, ``repr`` and
``help()`` show them under the path an app imports them from (``sessionkit.AppError.Service``).

``str(error)`` is the SDK's sentence (``AppError.describe()``: what went wrong, then what to
do) followed by the variant's other fields, e.g. ``invalid username/password (server error
InvalidPassword, HTTP 401) [code='InvalidPassword', http_status=401]``. No ``AppError`` field
carries a token, so nothing needs redacting here.
"""

from __future__ import annotations

import enum
import inspect
import typing

from ._native import sessionkit_ffi as _ffi

_PUBLIC_MODULE = "sessionkit"


def _variants(cls: type) -> typing.List[typing.Tuple[str, type]]:
    """The nested variant classes of a generated enum-like class (``AppError.Service`` ...)."""
    return [
        (name, value)
        for name, value in vars(cls).items()
        if inspect.isclass(value) and issubclass(value, cls) and value is not cls
    ]


def _field_names(cls: type) -> typing.List[str]:
    """A generated variant's fields, in the order its constructor takes them."""
    params = inspect.signature(getattr(cls, "__init__")).parameters
    return [p for p in params if p != "self"]


def _show(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    return repr(value)


def _error_str(self: BaseException) -> str:
    try:
        sentence = self.describe()  # type: ignore[attr-defined]
    except Exception:  # a hand-built error with fields of the wrong type cannot be lowered
        return BaseException.__str__(self)
    # `message` is already part of the sentence; an absent link says nothing.
    extra = [
        f"{name}={_show(getattr(self, name))}"
        for name in _field_names(type(self))
        if name != "message" and getattr(self, name, None) is not None
    ]
    return f"{sentence} [{', '.join(extra)}]" if extra else sentence


def _error_repr(self: BaseException) -> str:
    fields = ", ".join(f"{n}={_show(getattr(self, n, None))}" for n in _field_names(type(self)))
    return f"{type(self).__qualname__}({fields})"


# As Kotlin's and Swift's StoreError messages.
_STORE_ERROR_TEXT = {"Unavailable": "session store unavailable", "Corrupt": "session store corrupt"}


def _store_error_str(self: BaseException) -> str:
    what = _STORE_ERROR_TEXT.get(type(self).__name__, "session store error")
    return f"{what}: {getattr(self, 'message', '')}"


def _rename(cls: type, qualname: str) -> None:
    cls.__module__ = _PUBLIC_MODULE
    cls.__qualname__ = qualname
    cls.__name__ = qualname.rsplit(".", 1)[-1]


def install() -> None:
    """Public module paths for every generated class; readable ``str``/``repr`` of errors."""
    for name in _ffi.__all__:
        cls = getattr(_ffi, name)
        if not inspect.isclass(cls):
            continue
        _rename(cls, name)
        for variant_name, variant in _variants(cls):
            _rename(variant, f"{name}.{variant_name}")
    # Every variant answers `retry_after_secs`, so `except AppError as e` can read it; only
    # Service sets it (to the server's Retry-After, in seconds).
    setattr(_ffi.AppError, "retry_after_secs", None)
    for variant_name, variant in _variants(_ffi.AppError):
        setattr(variant, "__str__", _error_str)
        setattr(variant, "__repr__", _error_repr)
    for variant_name, variant in _variants(_ffi.StoreError):
        setattr(variant, "__str__", _store_error_str)
        setattr(variant, "__repr__", _error_repr)
