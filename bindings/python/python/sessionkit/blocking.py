"""A blocking facade over the asyncio API, for scripts and REPLs without an event loop.

Each call that is a coroutine in ``sessionkit`` runs to completion here on a private event loop
(one per thread), so the SDK's own runtime does the work and this thread just waits::

    from sessionkit import AppConfig, Credentials, StorageConfig
    from sessionkit.blocking import App

    app = App(AppConfig(app_id="sessionkit-dev", base_url="http://127.0.0.1:9090",
                        storage=StorageConfig.IN_MEMORY()))
    user = app.log_in(Credentials.ANONYMOUS(reuse=True))
    token = user.valid_access_token()

Do not use it from inside a running event loop (use the asyncio API there).
Callbacks (listeners, the session error handler) receive the asyncio-API objects; wrap a
``sessionkit.User`` with ``blocking.User(user)`` to use it here.
"""

from __future__ import annotations

import asyncio
import threading
import typing

from ._native import sessionkit_ffi as _ffi

_T = typing.TypeVar("_T")
_local = threading.local()


def _run(coro: typing.Awaitable[_T]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running in this thread: the blocking call may run one
    else:
        if asyncio.iscoroutine(coro):
            coro.close()  # never awaited: no "coroutine was never awaited" warning
        raise RuntimeError(
            "sessionkit.blocking cannot be used inside a running event loop (Jupyter, an async "
            "def): use the asyncio API there, e.g. `user = await sessionkit.App(config).log_in(...)`"
        )
    # One loop per thread, kept for the thread's life: creating a loop per call would cost more
    # than most SDK calls.
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop.run_until_complete(coro)


class EmailPasswordAuth:
    """Registration, confirmation and password resets; none of them logs anyone in."""

    def __init__(self, inner: _ffi.EmailPasswordAuth) -> None:
        self.inner = inner

    def register_user(self, email: str, password: str) -> None:
        _run(self.inner.register_user(email, password))

    def confirm_user(self, token: str, token_id: str) -> None:
        _run(self.inner.confirm_user(token, token_id))

    def resend_confirmation_email(self, email: str) -> None:
        _run(self.inner.resend_confirmation_email(email))

    def retry_custom_confirmation(self, email: str) -> None:
        _run(self.inner.retry_custom_confirmation(email))

    def send_reset_password_email(self, email: str) -> None:
        _run(self.inner.send_reset_password_email(email))

    def reset_password(self, token: str, token_id: str, password: str) -> None:
        _run(self.inner.reset_password(token, token_id, password))

    def call_reset_password_function(self, email: str, password: str, args_json: str) -> None:
        _run(self.inner.call_reset_password_function(email, password, args_json))


class ApiKeyAuth:
    """One user's API keys."""

    def __init__(self, inner: _ffi.ApiKeyAuth) -> None:
        self.inner = inner

    def create(self, name: str) -> _ffi.ApiKey:
        return _run(self.inner.create(name))

    def fetch(self, id: str) -> _ffi.ApiKey:
        return _run(self.inner.fetch(id))

    def fetch_all(self) -> typing.List[_ffi.ApiKey]:
        return _run(self.inner.fetch_all())

    def delete(self, id: str) -> None:
        _run(self.inner.delete(id))

    def enable(self, id: str) -> None:
        _run(self.inner.enable(id))

    def disable(self, id: str) -> None:
        _run(self.inner.disable(id))


class User:
    """A user of the App; two handles on the same user compare equal."""

    def __init__(self, inner: _ffi.User) -> None:
        self.inner = inner

    def __eq__(self, other: object) -> bool:
        if isinstance(other, User):
            return self.inner == other.inner
        if isinstance(other, _ffi.User):
            return self.inner == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.inner)

    def __repr__(self) -> str:
        return f"blocking.User({self.inner.id()!r})"

    def id(self) -> str:
        return self.inner.id()

    def state(self) -> _ffi.UserState:
        return self.inner.state()

    def provider_type(self) -> str:
        return self.inner.provider_type()

    def device_id(self) -> str:
        return self.inner.device_id()

    def identities(self) -> typing.List[_ffi.UserIdentity]:
        return self.inner.identities()

    def profile(self) -> _ffi.UserProfile:
        return self.inner.profile()

    def custom_data_json(self) -> typing.Optional[str]:
        return self.inner.custom_data_json()

    def access_token(self) -> typing.Optional[str]:
        return self.inner.access_token()

    def refresh_token(self) -> typing.Optional[str]:
        return self.inner.refresh_token()

    def valid_access_token(self, min_ttl_secs: typing.Optional[int] = None) -> str:
        return _run(self.inner.valid_access_token(min_ttl_secs))

    def refresh_access_token(self) -> None:
        _run(self.inner.refresh_access_token())

    def refresh_custom_data(self) -> typing.Optional[str]:
        return _run(self.inner.refresh_custom_data())

    def refresh_profile(self) -> _ffi.UserProfile:
        return _run(self.inner.refresh_profile())

    def link_credentials(self, credentials: _ffi.Credentials) -> None:
        _run(self.inner.link_credentials(credentials))

    def log_out(self) -> None:
        _run(self.inner.log_out())

    def call_function(self, name: str, args_json: str) -> str:
        return _run(self.inner.call_function(name, args_json))

    def request(
        self, method: str, path: str, body_json: typing.Optional[str] = None
    ) -> _ffi.HttpResponse:
        return _run(self.inner.request(method, path, body_json))

    def api_keys(self) -> ApiKeyAuth:
        return ApiKeyAuth(self.inner.api_keys())

    def subscribe(self, listener: _ffi.AuthEventListener) -> _ffi.Subscription:
        return self.inner.subscribe(listener)


def _wrap(user: typing.Optional[_ffi.User]) -> typing.Optional[User]:
    return None if user is None else User(user)


class App:
    """An App Services app, as seen from this device (blocking calls).

    Close it when done (``app.close()``, or ``with App(config) as app:``); one left open is
    closed at interpreter exit.
    """

    def __init__(self, config: _ffi.AppConfig) -> None:
        self.inner = _ffi.App(config)

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the App; see ``sessionkit.App.close``. Later calls raise ``AppError.AppClosed``."""
        self.inner.close()

    def is_closed(self) -> bool:
        """True once ``close()`` was called."""
        return self.inner.is_closed()

    def app_id(self) -> str:
        return self.inner.app_id()

    def base_url(self) -> str:
        return self.inner.base_url()

    def log_in(self, credentials: _ffi.Credentials) -> User:
        return User(_run(self.inner.log_in(credentials)))

    def current_user(self) -> typing.Optional[User]:
        return _wrap(self.inner.current_user())

    def all_users(self) -> typing.List[User]:
        return [User(u) for u in self.inner.all_users()]

    def switch_user(self, user: User) -> None:
        self.inner.switch_user(user.inner)

    def remove_user(self, user: User) -> None:
        _run(self.inner.remove_user(user.inner))

    def delete_user(self, user: User) -> None:
        _run(self.inner.delete_user(user.inner))

    def email_password_auth(self) -> EmailPasswordAuth:
        return EmailPasswordAuth(self.inner.email_password_auth())

    def subscribe(self, listener: _ffi.AuthEventListener) -> _ffi.Subscription:
        return self.inner.subscribe(listener)

    def set_session_error_handler(
        self, handler: typing.Optional[_ffi.SessionErrorHandler]
    ) -> None:
        self.inner.set_session_error_handler(handler)

    def set_auto_refresh(self, on: bool) -> None:
        self.inner.set_auto_refresh(on)

    def enter_background(self) -> None:
        self.inner.enter_background()

    def enter_foreground(self) -> None:
        self.inner.enter_foreground()

    def update_base_url(self, base_url: str) -> None:
        _run(self.inner.update_base_url(base_url))


__all__ = ["App", "User", "ApiKeyAuth", "EmailPasswordAuth"]
