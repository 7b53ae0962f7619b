"""Python that reads like Python (#13): errors as sentences under their public path, argument
types checked at the call with the parameter named, readable reprs without secrets, and JSON as
Python values."""

from __future__ import annotations

import inspect
import json
import traceback
import typing

import pytest

import sessionkit
from conftest import APP_ID, Server, aio
from sessionkit import AppError, AuthEvent, AuthEventKind, Credentials, StorageConfig, blocking


def _login_error(server: Server) -> AppError.Service:
    app = blocking.App(server.config())
    app.email_password_auth().register_user("ada@example.com", "correct-horse")
    with pytest.raises(AppError.Service) as err:
        app.log_in(Credentials.EMAIL_PASSWORD(email="ada@example.com", password="wrong-horse"))
    app.close()
    return err.value


def test_errors_read_as_a_sentence_then_the_fields(server: Server) -> None:
    e = _login_error(server)
    assert e.code == "InvalidPassword" and e.http_status == 401
    assert str(e) == f"{e.describe()} [code='InvalidPassword', http_status=401]"
    assert e.describe().startswith("invalid username/password")
    assert repr(e) == (
        f"AppError.Service(code='InvalidPassword', message={e.message!r}, http_status=401, "
        "link=None, retry_after_secs=None)"
    )
    shown = "".join(traceback.format_exception_only(type(e), e))
    assert shown.startswith("sessionkit.AppError.Service: invalid username/password"), shown
    assert "_native" not in shown and "wrong-horse" not in shown + repr(e)


@aio
async def test_an_sdk_refusal_names_the_parameter_in_its_sentence(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    with pytest.raises(AppError.InvalidArgument) as err:
        await user.valid_access_token(-1)
    assert "min_ttl_secs" in str(err.value)
    assert str(err.value) == err.value.describe()  # a message-only variant adds no fields
    assert repr(err.value).startswith("AppError.InvalidArgument(message=")


def test_every_public_class_shows_its_public_path() -> None:
    import sessionkit._native.sessionkit_ffi as generated

    seen = 0
    for name in generated.__all__:
        cls = getattr(sessionkit, name)
        if not inspect.isclass(cls):
            continue
        nested = [v for v in vars(cls).values() if inspect.isclass(v) and issubclass(v, cls)]
        for c in [cls, *nested]:
            assert c.__module__ == "sessionkit", c
            owner: typing.Any = sessionkit
            for part in c.__qualname__.split("."):
                owner = getattr(owner, part)
            assert owner is c, c.__qualname__
            seen += 1
    assert seen > 40  # every class and variant, not a handful
    assert repr(sessionkit.AppError.SessionExpired) == "<class 'sessionkit.AppError.SessionExpired'>"


class _Wrong:
    """An argument of a type no SDK parameter takes."""


def _public_methods(cls: type) -> typing.Iterator[typing.Tuple[str, inspect.Signature]]:
    for name, fn in vars(cls).items():
        if not name.startswith("_") and inspect.isfunction(fn):
            yield name, inspect.signature(fn)


def _calls_with_a_wrong_argument(obj: object, cls: type) -> typing.List[str]:
    """Calls each method of ``obj`` with a wrong type in each parameter in turn (the others
    right enough to pass the checks); returns what did not raise the expected TypeError."""
    missed = []
    checked = 0
    for name, sig in _public_methods(cls):
        params = [
            p for p in sig.parameters.values()
            if p.name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL
            and p.kind is not inspect.Parameter.KEYWORD_ONLY
        ]
        for i, param in enumerate(params):
            args: typing.List[object] = ["x" if j != i else _Wrong() for j in range(len(params))]
            try:
                result = getattr(obj, name)(*args)
            except TypeError as e:
                if not str(e).startswith(f"{name}(): {param.name} must be "):
                    missed.append(f"{cls.__qualname__}.{name}({param.name}): {e}")
                checked += 1
                continue
            if inspect.iscoroutine(result):
                result.close()
            missed.append(f"{cls.__qualname__}.{name}({param.name}): no TypeError")
    assert checked > 0 or not missed
    return missed


@aio
async def test_wrong_argument_types_raise_a_type_error_naming_the_parameter(server: Server) -> None:
    app = server.app()
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    missed: typing.List[str] = []
    for obj, cls in [
        (app, sessionkit.App),
        (user, sessionkit.User),
        (user.api_keys(), sessionkit.ApiKeyAuth),
        (app.email_password_auth(), sessionkit.EmailPasswordAuth),
        (app.email_otp(), sessionkit.EmailOtpAuth),
    ]:
        missed += _calls_with_a_wrong_argument(obj, cls)
    assert missed == []
    with pytest.raises(TypeError, match=r"^log_in\(\): credentials must be a sessionkit.Credentials, not str$"):
        await app.log_in("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^App\(\): config must be a sessionkit.AppConfig, not dict$"):
        sessionkit.App({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^AppConfig\(\): request_timeout_ms must be an int, not str$"):
        server.config(request_timeout_ms="10")
    with pytest.raises(TypeError, match=r"^Credentials.EMAIL_PASSWORD\(\): password must be a str, not int$"):
        Credentials.EMAIL_PASSWORD(email="a@example.com", password=1234)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^StorageConfig.FILE\(\): encryption_key must be bytes or None, not str$"):
        StorageConfig.FILE(dir="d", encryption_key="k" * 32)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^valid_access_token\(\): min_ttl_secs must be an int or None, not bool$"):
        await user.valid_access_token(True)
    with pytest.raises(TypeError, match=r"^log_in\(\): missing a required argument: 'credentials'$"):
        await app.log_in()  # type: ignore[call-arg]
    app.close()


def test_the_blocking_facade_checks_its_arguments_too(server: Server) -> None:
    app = blocking.App(server.config())
    user = app.log_in(Credentials.ANONYMOUS(reuse=False))
    missed: typing.List[str] = []
    for obj, cls in [
        (app, blocking.App),
        (user, blocking.User),
        (user.api_keys(), blocking.ApiKeyAuth),
        (app.email_password_auth(), blocking.EmailPasswordAuth),
        (app.email_otp(), blocking.EmailOtpAuth),
    ]:
        missed += _calls_with_a_wrong_argument(obj, cls)
    assert missed == []
    with pytest.raises(TypeError, match=r"^switch_user\(\): user must be a sessionkit.blocking.User, not User$"):
        app.switch_user(user.inner)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^App\(\): config must be a sessionkit.AppConfig, not str$"):
        blocking.App("config")  # type: ignore[arg-type]
    assert repr(user) == (
        f"blocking.User(id={user.id()!r}, state=UserState.LOGGED_IN, provider_type='anon-user')"
    )
    app.close()


@aio
async def test_reprs_read_and_never_show_a_secret(server: Server) -> None:
    app = server.app()
    await app.email_password_auth().register_user("ada@example.com", "correct-horse")
    events: typing.List[AuthEvent] = []
    iterator = app.auth_events()
    events.append(await iterator.__anext__())
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email="ada@example.com", password="correct-horse"))
    key = await user.api_keys().create("ci")
    assert key.key is not None
    events.append(await iterator.__anext__())
    await iterator.aclose()
    assert events[-1].kind == AuthEventKind.SIGNED_IN
    assert repr(user) == f"User(id={user.id()!r}, state=UserState.LOGGED_IN, provider_type='local-userpass')"
    assert str(user) == repr(user)
    assert repr(events[-1]) == (
        f"AuthEvent(kind=AuthEventKind.SIGNED_IN, user_id={user.id()!r}, user={user!r}, "
        "user_initiated=True, error=None, will_retry=False)"
    )
    profile = user.profile()
    assert repr(profile).startswith("UserProfile(name=None, email='ada@example.com', ")
    assert profile.data["email"] == "ada@example.com"
    assert repr(user.identities()) == f"[UserIdentity(id={user.identities()[0].id!r}, provider_type='local-userpass')]"
    # The login answer itself, through request(): its tokens are redacted in the repr.
    response = await user.request(
        "POST", f"/api/client/v2.0/app/{APP_ID}/auth/providers/local-userpass/login",
        json={"username": "ada@example.com", "password": "correct-horse"},
    )
    assert response.status == 200 and "access_token" in response.json()
    secrets = [
        "correct-horse", key.key, user.access_token(), user.refresh_token(),
        response.json()["access_token"], response.json()["refresh_token"],
    ]
    config = server.config(storage=StorageConfig.FILE(dir="d", encryption_key=b"\x07" * 32))
    shown = [repr(o) for o in (user, *events, profile, response, key, config, Credentials.API_KEY(key=key.key))]
    for text in shown:
        for secret in secrets:
            assert secret and secret not in text, text
    assert "HttpResponse(status=200, headers=[HttpHeader(name=" in repr(response)
    assert "'access_token': <redacted>" in repr(response)
    # Fields at their defaults are left out, as in the call one would write.
    assert repr(config) == (
        f"AppConfig(app_id={APP_ID!r}, base_url={server.base_url!r}, storage=StorageConfig.FILE("
        "dir='d', encryption_key=<redacted>), request_timeout_ms=10000)"
    )
    app.close()


@aio
async def test_json_as_python_values(server: Server) -> None:
    app = server.app()
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    assert await user.call_function("echo", {"a": [1, None]}, "x", 2.5, True) == [
        {"a": [1, None]}, "x", 2.5, True
    ]
    assert await user.call_function("sum", 1, 2, 3) == 6
    assert await user.call_function_json("echo", '[{"a": 1}]') == '[{"a":1}]'
    with pytest.raises(TypeError, match="not JSON serializable"):
        await user.call_function("echo", object())
    assert user.custom_data() is None and await user.refresh_custom_data() is None
    status, _ = server.admin("PUT", f"/users/{user.id()}/custom_data", {"plan": "pro", "seats": 3})
    assert status in (200, 204)
    assert await user.refresh_custom_data() == {"plan": "pro", "seats": 3}
    assert user.custom_data() == {"plan": "pro", "seats": 3}
    assert user.custom_data_json() is not None and await user.refresh_custom_data_json() is not None
    profile = user.profile()
    assert isinstance(profile.data, dict) and profile.data == json.loads(profile.data_json)
    path = f"/api/client/v2.0/app/{APP_ID}/functions/call"
    response = await user.request("POST", path, json={"name": "echo", "arguments": [{"k": "v"}]})
    assert response.status == 200 and response.json() == [{"k": "v"}]
    response = await user.request("POST", path, '{"name": "sum", "arguments": [4, 5]}')
    assert response.json() == 9
    with pytest.raises(TypeError, match="not both"):
        await user.request("POST", path, "{}", json={})
    app.close()


def test_json_as_python_values_in_the_blocking_facade(server: Server) -> None:
    app = blocking.App(server.config())
    user = app.log_in(Credentials.ANONYMOUS(reuse=False))
    assert user.call_function("echo", [1, 2], {"b": False}) == [[1, 2], {"b": False}]
    assert user.call_function_json("sum", "[1, 2]") == "3"
    server.admin("PUT", f"/users/{user.id()}/custom_data", {"plan": "free"})
    assert user.custom_data() is None  # the current token predates it
    assert user.refresh_custom_data() == {"plan": "free"} == user.custom_data()
    assert user.refresh_custom_data_json() == '{"plan":"free"}'
    path = f"/api/client/v2.0/app/{APP_ID}/functions/call"
    assert user.request("POST", path, json={"name": "sum", "arguments": [2, 3]}).json() == 5
    app.close()


def test_docstrings_say_what_calls_return_and_raise() -> None:
    for cls in (sessionkit.App, sessionkit.User, sessionkit.ApiKeyAuth, sessionkit.EmailPasswordAuth,
                sessionkit.EmailOtpAuth, blocking.App, blocking.User, blocking.ApiKeyAuth,
                blocking.EmailPasswordAuth, blocking.EmailOtpAuth):
        for name, sig in _public_methods(cls):
            doc = getattr(cls, name).__doc__ or ""
            assert doc.strip(), f"{cls.__qualname__}.{name} has no docstring"
            if sig.return_annotation not in (None, "None"):
                assert "eturn" in doc or "True once" in doc, f"{cls.__qualname__}.{name}: {doc}"
            # Every call that makes a request says which errors it raises (a `_json` twin
            # refers to its value form).
            fn = getattr(cls, name)
            requests = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
                getattr(fn, "__wrapped__", None)) or "_run(" in inspect.getsource(fn)
            if requests and not doc.startswith("As ``"):
                assert "Raises" in doc and "AppError." in doc, f"{cls.__qualname__}.{name}: {doc}"
    # Units where numbers are durations.
    assert "seconds" in (sessionkit.User.valid_access_token.__doc__ or "")
    assert "seconds" in (blocking.User.valid_access_token.__doc__ or "")
    assert "milliseconds" in (sessionkit.AppConfig.__doc__ or "")
    assert "AppError.InvalidArgument" in (sessionkit.User.valid_access_token.__doc__ or "")



def test_store_errors_read_as_in_kotlin_and_swift() -> None:
    e = sessionkit.StoreError.Unavailable("device locked")
    assert str(e) == "session store unavailable: device locked"
    assert repr(e) == "StoreError.Unavailable(message='device locked')"
    assert str(sessionkit.StoreError.Corrupt("bad header")) == "session store corrupt: bad header"


def test_checked_methods_keep_readable_signatures_and_stay_coroutine_functions() -> None:
    import asyncio

    param = inspect.signature(sessionkit.User.valid_access_token).parameters["min_ttl_secs"]
    assert param.default is None and param.annotation == typing.Optional[int]
    assert list(inspect.signature(sessionkit.App.log_in).parameters) == ["self", "credentials"]
    for fn in (sessionkit.App.log_in, sessionkit.User.valid_access_token, sessionkit.User.call_function):
        assert asyncio.iscoroutinefunction(fn), fn
    assert not asyncio.iscoroutinefunction(sessionkit.App.switch_user)
