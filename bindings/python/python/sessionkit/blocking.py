"""A blocking facade over the asyncio API, for scripts and REPLs without an event loop.

Each call that is a coroutine in ``sessionkit`` runs to completion here on a private event loop
(one per thread), so the SDK's own runtime does the work and this thread just waits::

    from sessionkit import AppConfig, Credentials, StorageConfig
    from sessionkit.blocking import App

    app = App(AppConfig(app_id="sessionkit-dev", base_url="http://127.0.0.1:9090",
                        storage=StorageConfig.IN_MEMORY()))
    user = app.log_in(Credentials.ANONYMOUS(reuse=True))
    token = user.valid_access_token()

Do not use it from inside a running event loop (use the asyncio API there): every blocking
call then raises ``RuntimeError``. Callbacks (listeners, the session error handler) receive the
asyncio-API objects; wrap a ``sessionkit.User`` with ``blocking.User(user)`` to use it here.

Errors are the asyncio API's: ``AppError`` variants. Calls that reach the server can raise
``AppError.Network``, ``AppError.Timeout`` (after the config's ``request_timeout_ms``) and
``AppError.Service`` (the server refused: ``.code``, ``.http_status``); every call on a closed
App raises ``AppError.AppClosed``. A wrong argument type raises ``TypeError``.
"""

from __future__ import annotations

import asyncio
import threading
import typing

# The public names (the same classes as the generated module's), so that type checkers see
# the package's stubs here too.
from . import (
    ApiKey,
    AppConfig,
    AuthEventListener,
    Credentials,
    HttpResponse,
    LogOutScope,
    SessionErrorHandler,
    SessionInfo,
    Subscription,
    UserIdentity,
    UserProfile,
    UserState,
    _checks,
)
from . import App as _AsyncApp
from . import ApiKeyAuth as _AsyncApiKeyAuth
from . import EmailOtpAuth as _AsyncEmailOtpAuth
from . import EmailPasswordAuth as _AsyncEmailPasswordAuth
from . import User as _AsyncUser

_T = typing.TypeVar("_T")
_local = threading.local()


def _run(coro: typing.Coroutine[typing.Any, typing.Any, _T]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running in this thread: the blocking call may run one
    else:
        coro.close()  # never awaited: no "coroutine was never awaited" warning
        raise RuntimeError(
            "sessionkit.blocking cannot be used inside a running event loop (Jupyter, an async "
            "def): use the asyncio API there, e.g. `user = await sessionkit.App(config).log_in(...)`"
        )
    # One loop per thread, kept for the thread's life: creating a loop per call would cost more
    # than most SDK calls.
    holder: typing.Optional[_ThreadLoop] = getattr(_local, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _ThreadLoop()
        _local.holder = holder
    return holder.loop.run_until_complete(coro)


class _ThreadLoop:
    """A thread's event loop, closed when the thread ends (its thread-local data is dropped):
    worker threads that make blocking calls leave no unclosed loop, nor its descriptors."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        try:
            self.loop.close()
        except Exception:  # at interpreter exit, or a loop still running: nothing to do
            pass


class EmailPasswordAuth:
    """Registration, confirmation and password resets; none of them logs anyone in.

    Each call is one request to the server and raises ``AppError.Service`` when the server
    refuses it (e.g. ``code='AccountNameInUse'``, HTTP 409), ``AppError.Network`` or
    ``AppError.Timeout`` when it cannot be made, ``AppError.AppClosed`` after ``App.close()``.
    """

    def __init__(self, inner: _AsyncEmailPasswordAuth) -> None:
        self.inner = inner

    def register_user(self, email: str, password: str) -> None:
        """Registers an account; returns None once the server accepted it (it may still need
        confirming). Raises ``AppError.InvalidArgument`` for an empty email,
        ``AppError.Service`` when the server refuses it (a malformed email; a taken one:
        ``code='AccountNameInUse'``, HTTP 409), ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.register_user(email, password))

    def confirm_user(self, token: str, token_id: str) -> None:
        """Confirms an account with the token pair from the confirmation email; returns None.
        Raises ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.confirm_user(token, token_id))

    def resend_confirmation_email(self, email: str) -> None:
        """Asks the server to send the confirmation email again; returns None. Raises
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.resend_confirmation_email(email))

    def retry_custom_confirmation(self, email: str) -> None:
        """Runs the server's confirmation function again for this account; returns None. Raises
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.retry_custom_confirmation(email))

    def send_reset_password_email(self, email: str) -> None:
        """Asks the server to email a password-reset link; returns None. Raises
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.send_reset_password_email(email))

    def reset_password(self, token: str, token_id: str, password: str) -> None:
        """Sets a new password with the token pair from the reset email; returns None. Raises
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.reset_password(token, token_id, password))

    def call_reset_password_function(self, email: str, password: str, *args: typing.Any) -> None:
        """Resets the password through the server's reset function, handing it ``args`` (Python
        values, sent as a JSON array); returns None. Raises ``TypeError`` if an argument is not
        JSON-serializable, ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.call_reset_password_function(email, password, *args))

    def call_reset_password_function_json(self, email: str, password: str, args_json: str) -> None:
        """As ``call_reset_password_function``, with the arguments as JSON text (an array)."""
        _run(self.inner.call_reset_password_function_json(email, password, args_json))


class EmailOtpAuth:
    """Email one-time codes (#23): asks the server to mail a sign-in code; logs nobody in. The
    code the user types then logs in (or is linked) as ``Credentials.EMAIL_OTP(email, code)``."""

    def __init__(self, inner: _AsyncEmailOtpAuth) -> None:
        self.inner = inner

    def send(self, email: str) -> None:
        """Asks the server to mail a one-time sign-in code to ``email``; returns None once it
        accepted (HTTP 204, whether or not an account has that address). A new code replaces
        any earlier one. Raises ``AppError.InvalidArgument`` for an empty address,
        ``AppError.Service`` when the server refuses (a malformed address: HTTP 400; over its
        mail rate limit: HTTP 429, ``retry_after_secs`` set), ``AppError.Network``,
        ``AppError.Timeout``, ``AppError.AppClosed``."""
        _run(self.inner.send(email))


class ApiKeyAuth:
    """One user's API keys. Each call is a request made as the user (refreshing its access token
    first if needed); it raises ``AppError.InvalidArgument`` without a request when the user
    logged in with an API key, ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
    ``AppError.Service`` (e.g. an unknown id: HTTP 404), ``AppError.Network``,
    ``AppError.Timeout``, ``AppError.AppClosed``."""

    def __init__(self, inner: _AsyncApiKeyAuth) -> None:
        self.inner = inner

    def create(self, name: str) -> ApiKey:
        """Creates a key; returns it with its secret ``key``, which is only ever returned here.
        Raises ``AppError.InvalidArgument`` (an API-key session),
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        return _run(self.inner.create(name))

    def fetch(self, id: str) -> ApiKey:
        """Returns the key with this id (its ``key`` is None). Raises
        ``AppError.InvalidArgument`` (an API-key session),
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        return _run(self.inner.fetch(id))

    def fetch_all(self) -> typing.List[ApiKey]:
        """Returns every key of the user (their ``key`` is None). Raises
        ``AppError.InvalidArgument`` (an API-key session),
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        return _run(self.inner.fetch_all())

    def delete(self, id: str) -> None:
        """Deletes the key; sessions logged in with it end. Returns None. Raises
        ``AppError.InvalidArgument`` (an API-key session),
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.delete(id))

    def enable(self, id: str) -> None:
        """Enables the key again; returns None. Raises ``AppError.InvalidArgument`` (an API-key
        session), ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.enable(id))

    def disable(self, id: str) -> None:
        """Disables the key; sessions logged in with it end. Returns None. Raises
        ``AppError.InvalidArgument`` (an API-key session),
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.disable(id))


class User:
    """A user of the App; two handles on the same user compare equal.

    The calls that make requests as the user refresh its access token first when it is about to
    expire, and replay once after a 401. They raise ``AppError.ClientUserNotLoggedIn`` (the
    user is logged out or removed), ``AppError.SessionExpired`` (the refresh token was refused:
    log in again; the session error handler has been called), ``AppError.Service``,
    ``AppError.Network``, ``AppError.Timeout``, ``AppError.AppClosed``.
    """

    def __init__(self, inner: _AsyncUser) -> None:
        self.inner = inner

    def __eq__(self, other: object) -> bool:
        if isinstance(other, User):
            return self.inner == other.inner
        if isinstance(other, _AsyncUser):
            return self.inner == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.inner)

    def __repr__(self) -> str:
        return f"blocking.{self.inner!r}"

    def id(self) -> str:
        """Returns the user's id on the server."""
        return self.inner.id()

    def state(self) -> UserState:
        """Returns ``LOGGED_IN``, ``LOGGED_OUT`` or ``REMOVED``."""
        return self.inner.state()

    def provider_type(self) -> str:
        """Returns the provider the user logged in with, e.g. ``'local-userpass'``."""
        return self.inner.provider_type()

    def device_id(self) -> str:
        """Returns the device id the server gave at login."""
        return self.inner.device_id()

    def identities(self) -> typing.List[UserIdentity]:
        """Returns the user's identities, from the last profile fetch."""
        return self.inner.identities()

    def profile(self) -> UserProfile:
        """Returns the profile from the last profile fetch (no request)."""
        return self.inner.profile()

    def custom_data(self) -> typing.Optional[typing.Dict[str, typing.Any]]:
        """Returns the custom data of the current access token as a dict, or None."""
        return self.inner.custom_data()

    def custom_data_json(self) -> typing.Optional[str]:
        """Returns the custom data of the current access token as JSON text, or None."""
        return self.inner.custom_data_json()

    def access_token(self) -> typing.Optional[str]:
        """Returns the access token as stored (it may have expired), or None when logged out."""
        return self.inner.access_token()

    def refresh_token(self) -> typing.Optional[str]:
        """Returns the refresh token as stored, or None when logged out."""
        return self.inner.refresh_token()

    def dpop_thumbprint(self) -> typing.Optional[str]:
        """Returns the thumbprint of the key the session is bound to with DPoP, or None
        (a bearer session)."""
        return self.inner.dpop_thumbprint()

    def dpop_proof(
        self, method: str, url: str, access_token: str, nonce: typing.Optional[str] = None
    ) -> typing.Optional[str]:
        """Returns a DPoP proof for a request to the app's own API (see ``sessionkit.User``), or
        None for a bearer session. Raises ``AppError.Storage`` when no proof could be signed."""
        return self.inner.dpop_proof(method, url, access_token, nonce)

    def valid_access_token(self, min_ttl_secs: typing.Optional[int] = None) -> str:
        """Returns an access token with at least ``min_ttl_secs`` seconds to live (None: the
        config's ``refresh_margin_secs``), refreshing it first if needed. Raises
        ``AppError.InvalidArgument`` for a negative value, and
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``, ``AppError.Service``,
        ``AppError.Network``, ``AppError.Timeout``, ``AppError.AppClosed``."""
        return _run(self.inner.valid_access_token(min_ttl_secs))

    def refresh_access_token(self) -> None:
        """Refreshes the access token now; returns None. Raises
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``, ``AppError.Service``,
        ``AppError.Network``, ``AppError.Timeout``, ``AppError.AppClosed``."""
        _run(self.inner.refresh_access_token())

    def refresh_custom_data(self) -> typing.Optional[typing.Dict[str, typing.Any]]:
        """Refreshes the access token and returns its custom data as a dict, or None. Raises
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        return _run(self.inner.refresh_custom_data())

    def refresh_custom_data_json(self) -> typing.Optional[str]:
        """As ``refresh_custom_data``, returning JSON text."""
        return _run(self.inner.refresh_custom_data_json())

    def refresh_profile(self) -> UserProfile:
        """Fetches the profile from the server and returns it. Raises
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        return _run(self.inner.refresh_profile())

    def link_credentials(self, credentials: Credentials) -> None:
        """Adds an identity to this user; returns None. Raises
        ``AppError.ClientUserAlreadyNamed`` for anonymous credentials, ``AppError.Service`` if
        the identity belongs to another user, and ``AppError.ClientUserNotLoggedIn``,
        ``AppError.SessionExpired``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        _run(self.inner.link_credentials(credentials))

    def log_out(self, scope: typing.Optional[LogOutScope] = None) -> None:
        """Logs out; returns None. ``scope`` None or ``LogOutScope.THIS_DEVICE``: clears the
        tokens locally, then revokes this device's session on the server (an anonymous user
        becomes ``REMOVED``); the user is logged out locally even if the server could not be
        told. ``LogOutScope.OTHER_DEVICES``: ends every other session of the user on the server;
        this device stays logged in and hears no event. ``LogOutScope.EVERYWHERE``: the other
        sessions, then this device as with ``THIS_DEVICE`` (its events too). When the other
        sessions could not be ended nothing changed here, and the call can be repeated. Raises
        ``AppError.Network``, ``AppError.Timeout``, ``AppError.Service`` (with
        ``code='Forbidden'`` for those two scopes when the user logged in with an API key,
        which may end no other session), and for those two ``AppError.ClientUserNotLoggedIn``,
        ``AppError.SessionExpired``, ``AppError.AppClosed``."""
        _run(self.inner.log_out(scope))

    def sessions(self) -> typing.List[SessionInfo]:
        """Returns the user's live sessions on the server, oldest first: every device signed in
        to the account, this one with ``current=True`` (a ``SessionInfo`` each: no secret in
        it). Raises ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Service``, ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.AppClosed``."""
        return _run(self.inner.sessions())

    def revoke_session(self, id: str) -> None:
        """Ends the user's session ``id`` (a ``SessionInfo.id`` from ``sessions()``); returns
        None. That device is refused at its next request, and its next refresh ends its session
        (``AppError.SessionExpired``, ``SessionErrorKind.SESSION_REVOKED``). This device's own
        id logs it out as ``log_out()`` does. Raises ``AppError.InvalidArgument`` for text that
        cannot be a session id, ``AppError.Service`` with ``code='SessionNotFound'`` for an id
        that is not a live session of this user (another user's included), ``code='Forbidden'``
        when this user logged in with an API key and the id is another session's, and
        ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Network``, ``AppError.Timeout``, ``AppError.AppClosed``."""
        _run(self.inner.revoke_session(id))

    def call_function(self, name: str, *args: typing.Any) -> typing.Any:
        """Calls the server function ``name`` with ``args`` (sent as a JSON array); returns its
        result decoded (dict, list, str, int, float, bool or None). Raises ``TypeError`` if an
        argument is not JSON-serializable, ``AppError.Service`` if the function fails or does
        not exist, and ``AppError.ClientUserNotLoggedIn``, ``AppError.SessionExpired``,
        ``AppError.Network``, ``AppError.Timeout``, ``AppError.AppClosed``."""
        return _run(self.inner.call_function(name, *args))

    def call_function_json(self, name: str, args_json: str) -> str:
        """As ``call_function``, with the arguments as JSON text (an array) and the result
        returned as JSON text."""
        return _run(self.inner.call_function_json(name, args_json))

    def request(
        self,
        method: str,
        path: str,
        body_json: typing.Optional[str] = None,
        *,
        json: typing.Any = None,
    ) -> HttpResponse:
        """Makes an authenticated request to the app's server (``path`` starts with ``/``), the
        body given as JSON text (``body_json``) or as a value (``json``), not both. Returns the
        ``HttpResponse`` whatever its status (an error status is a response, not an error;
        ``.json()`` decodes its body). Raises ``AppError.MalformedResponse`` for a body over
        ``max_response_bytes`` bytes, ``AppError.ClientUserNotLoggedIn``,
        ``AppError.SessionExpired``, ``AppError.Service`` (a refresh the server refused),
        ``AppError.Network``, ``AppError.Timeout``, ``AppError.AppClosed``."""
        return _run(self.inner.request(method, path, body_json, json=json))

    def api_keys(self) -> ApiKeyAuth:
        """Returns this user's API key manager."""
        return ApiKeyAuth(self.inner.api_keys())

    def subscribe(self, listener: AuthEventListener) -> Subscription:
        """Delivers this user's events to ``listener`` (an ``INITIAL_STATE`` first) on SDK
        threads until the returned ``Subscription`` is cancelled or dropped."""
        return self.inner.subscribe(listener)


def _wrap(user: typing.Optional[_AsyncUser]) -> typing.Optional[User]:
    return None if user is None else User(user)


class App:
    """An App Services app, as seen from this device (blocking calls).

    Close it when done (``app.close()``, or ``with App(config) as app:``); one left open is
    closed at interpreter exit. Every call on a closed App raises ``AppError.AppClosed``.
    """

    def __init__(self, config: AppConfig) -> None:
        """Validates the config, opens the session store and restores its users (no request).
        Raises ``AppError.InvalidArgument`` (e.g. ``request_timeout_ms=0``),
        ``AppError.InsecureUrl`` (plain http beyond loopback), ``AppError.Storage``."""
        self.inner = _AsyncApp(config)

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the App; see ``sessionkit.App.close``. Later calls raise
        ``AppError.AppClosed``."""
        self.inner.close()

    def is_closed(self) -> bool:
        """True once ``close()`` was called."""
        return self.inner.is_closed()

    def app_id(self) -> str:
        """Returns the config's ``app_id``."""
        return self.inner.app_id()

    def base_url(self) -> str:
        """Returns the server's base URL."""
        return self.inner.base_url()

    def log_in(self, credentials: Credentials) -> User:
        """Logs in (location first, lazily; then login and profile); returns the user, who
        becomes current. Raises ``AppError.Service`` when the server refuses (e.g.
        ``code='InvalidPassword'``, HTTP 401), ``AppError.Network``, ``AppError.Timeout``,
        ``AppError.MalformedResponse``, ``AppError.AppClosed``."""
        return User(_run(self.inner.log_in(credentials)))

    def current_user(self) -> typing.Optional[User]:
        """Returns the current user (always logged in), or None."""
        return _wrap(self.inner.current_user())

    def all_users(self) -> typing.List[User]:
        """Returns every user not removed, logged in or out."""
        return [User(u) for u in self.inner.all_users()]

    def switch_user(self, user: User) -> None:
        """Makes ``user`` the current user; returns None. Raises
        ``AppError.ClientUserNotLoggedIn`` if it is not logged in."""
        self.inner.switch_user(user.inner)

    def remove_user(self, user: User) -> None:
        """Logs the user out if needed and forgets it on this device; returns None. Raises
        ``AppError.ClientUserNotFound`` if it was already removed; ``AppError.Network``,
        ``AppError.Timeout`` or ``AppError.Service`` if its session could not be revoked on the
        server (it is removed locally either way); ``AppError.AppClosed``."""
        _run(self.inner.remove_user(user.inner))

    def delete_user(self, user: User) -> None:
        """Deletes the account on the server, then forgets it locally; returns None. Raises
        ``AppError.ClientUserNotLoggedIn``, ``AppError.Service``, ``AppError.Network``,
        ``AppError.Timeout``."""
        _run(self.inner.delete_user(user.inner))

    def email_password_auth(self) -> EmailPasswordAuth:
        """Returns the email/password provider's calls (registration, resets)."""
        return EmailPasswordAuth(self.inner.email_password_auth())

    def email_otp(self) -> EmailOtpAuth:
        """Returns the email one-time-code provider's call (``send(email)`` mails a code)."""
        return EmailOtpAuth(self.inner.email_otp())

    def subscribe(self, listener: AuthEventListener) -> Subscription:
        """Delivers every auth event of this app to ``listener`` (an ``INITIAL_STATE`` first) on
        SDK threads until the returned ``Subscription`` is cancelled or dropped."""
        return self.inner.subscribe(listener)

    def set_session_error_handler(self, handler: typing.Optional[SessionErrorHandler]) -> None:
        """Sets (None: clears) the callback told when a user's refresh token is refused."""
        self.inner.set_session_error_handler(handler)

    def set_auto_refresh(self, on: bool) -> None:
        """Turns the proactive refresh of access tokens before they expire on or off."""
        self.inner.set_auto_refresh(on)

    def enter_background(self) -> None:
        """Pauses the refresh scheduler (the app went to the background)."""
        self.inner.enter_background()

    def enter_foreground(self) -> None:
        """Resumes the scheduler and refreshes what expired meanwhile."""
        self.inner.enter_foreground()

    def update_base_url(self, base_url: str) -> None:
        """Points the App at another server URL (location runs again); returns None. Raises
        ``AppError.InsecureUrl``, ``AppError.InvalidArgument``, ``AppError.Network``,
        ``AppError.Timeout``, ``AppError.Service``."""
        _run(self.inner.update_base_url(base_url))


for _cls in (EmailPasswordAuth, EmailOtpAuth, ApiKeyAuth, User, App):
    _checks.install_on(_cls, constructor=True)

__all__ = ["App", "User", "ApiKeyAuth", "EmailPasswordAuth", "EmailOtpAuth"]
