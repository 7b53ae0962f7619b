"""JSON as Python values beside the JSON-text forms of the FFI.

The rule in Python: a name ending in ``_json`` takes or gives JSON text, exactly as the FFI
does; the same name without it deals in Python values (encoded with ``json.dumps``, decoded
with ``json.loads``)::

    await user.call_function("sum", 1, 2)           # 3
    await user.call_function_json("sum", "[1, 2]")   # '3'
    user.custom_data()                              # {'plan': 'pro'} or None
    user.custom_data_json()                         # '{"plan":"pro"}' or None
    await user.refresh_custom_data()                # dict or None (refresh_custom_data_json: text)
    user.profile().data                             # the profile document as a dict
    await user.request("POST", "/x", json={"a": 1}) # body_json="..." sends text as is
    response.json()                                 # the response body decoded
"""

from __future__ import annotations

import json as _json
import typing

from ._native import sessionkit_ffi as _ffi

_generated_call_function = _ffi.User.call_function
_generated_refresh_custom_data = _ffi.User.refresh_custom_data
_generated_request = _ffi.User.request
_generated_reset_function = _ffi.EmailPasswordAuth.call_reset_password_function


def _loads(text: typing.Optional[str]) -> typing.Any:
    return None if text is None else _json.loads(text)


async def call_function(self: _ffi.User, name: str, *args: typing.Any) -> typing.Any:
    return _json.loads(await _generated_call_function(self, name, _json.dumps(list(args))))


async def call_function_json(self: _ffi.User, name: str, args_json: str) -> str:
    return await _generated_call_function(self, name, args_json)


def custom_data(self: _ffi.User) -> typing.Optional[typing.Dict[str, typing.Any]]:
    return _loads(self.custom_data_json())  # type: ignore[no-any-return]


async def refresh_custom_data(self: _ffi.User) -> typing.Optional[typing.Dict[str, typing.Any]]:
    return _loads(await _generated_refresh_custom_data(self))  # type: ignore[no-any-return]


async def refresh_custom_data_json(self: _ffi.User) -> typing.Optional[str]:
    return await _generated_refresh_custom_data(self)


def _body_text(body_json: typing.Optional[str], json: typing.Any) -> typing.Optional[str]:
    """The request body as text: ``body_json`` as given, or ``json`` encoded; not both."""
    if json is None:
        return body_json
    if body_json is not None:
        raise TypeError("request(): give body_json (text) or json (a value), not both")
    return _json.dumps(json)


async def request(
    self: _ffi.User,
    method: str,
    path: str,
    body_json: typing.Optional[str] = None,
    *,
    json: typing.Any = None,
) -> _ffi.HttpResponse:
    return await _generated_request(self, method, path, _body_text(body_json, json))


async def call_reset_password_function(
    self: _ffi.EmailPasswordAuth, email: str, password: str, *args: typing.Any
) -> None:
    await _generated_reset_function(self, email, password, _json.dumps(list(args)))


async def call_reset_password_function_json(
    self: _ffi.EmailPasswordAuth, email: str, password: str, args_json: str
) -> None:
    await _generated_reset_function(self, email, password, args_json)


def _profile_data(self: _ffi.UserProfile) -> typing.Dict[str, typing.Any]:
    return _json.loads(self.data_json)  # type: ignore[no-any-return]


def _response_json(self: _ffi.HttpResponse) -> typing.Any:
    return _json.loads(self.body)


def install() -> None:
    """Adds the value forms to the generated classes (the text forms keep working)."""
    added: typing.List[typing.Tuple[type, typing.Callable[..., typing.Any]]] = [
        (_ffi.User, call_function),
        (_ffi.User, call_function_json),
        (_ffi.User, custom_data),
        (_ffi.User, refresh_custom_data),
        (_ffi.User, refresh_custom_data_json),
        (_ffi.User, request),
        (_ffi.EmailPasswordAuth, call_reset_password_function),
        (_ffi.EmailPasswordAuth, call_reset_password_function_json),
    ]
    for cls, fn in added:
        fn.__qualname__ = f"{cls.__name__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    _ffi.UserProfile.data = property(_profile_data, doc="The profile document (``data_json``) as a dict.")  # type: ignore[attr-defined]
    _ffi.HttpResponse.json = _response_json  # type: ignore[attr-defined]
