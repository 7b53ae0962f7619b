"""User switching, refresh, the token-expiry callback, events, errors."""

import asyncio
import threading

from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import sessionkit
from sessionkit import (
    AppError,
    AuthEventKind,
    Credentials,
    SessionErrorHandler,
    SessionErrorKind,
    UserState,
)

from conftest import Server, Recorder, aio, wait_for


async def email_user(app: sessionkit.App, email: str, password: str = "correct-horse") -> sessionkit.User:
    await app.email_password_auth().register_user(email, password)
    return await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password=password))


@aio
async def test_switch_user_and_log_out(server: Server) -> None:
    app = server.app()
    ada = await email_user(app, "ada@example.com")
    bob = await email_user(app, "bob@example.com")
    assert app.current_user() == bob
    app.switch_user(ada)
    assert app.current_user() == ada
    await ada.log_out()
    assert ada.state() == UserState.LOGGED_OUT
    assert ada.access_token() is None and ada.refresh_token() is None
    assert app.current_user() == bob  # the most recently used logged-in user takes over
    with pytest.raises(AppError.ClientUserNotLoggedIn):
        app.switch_user(ada)
    assert len(app.all_users()) == 2
    await app.remove_user(ada)
    assert [u.id() for u in app.all_users()] == [bob.id()]
    assert ada.state() == UserState.REMOVED
    with pytest.raises((AppError.ClientUserNotFound, AppError.ClientUserNotLoggedIn)):
        app.switch_user(ada)


@aio
async def test_anonymous_log_out_removes(server: Server) -> None:
    app = server.app()
    anon = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    await anon.log_out()
    assert anon.state() == UserState.REMOVED
    assert app.current_user() is None
    assert app.all_users() == []


@aio
async def test_delete_user(server: Server) -> None:
    app = server.app()
    user = await email_user(app, "gone@example.com")
    await app.delete_user(user)
    assert app.all_users() == []
    status, _ = server.admin("GET", f"/users/{user.id()}")
    assert status == 404


class _GatedStore(sessionkit.SessionStore):
    """An in-memory store whose saves wait while `gate` is clear (on the SDK's thread)."""

    def __init__(self) -> None:
        self.data: Optional[bytes] = None
        self.gate = threading.Event()
        self.gate.set()

    def load(self) -> Optional[bytes]:
        return self.data

    def save(self, data: bytes) -> None:
        self.gate.wait(10)
        self.data = data


@aio
async def test_valid_and_forced_refresh(server: Server) -> None:
    store = _GatedStore()
    app = server.app(storage=sessionkit.StorageConfig.CUSTOM(store=store))
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    first = user.access_token()
    # Fresh from login: handed out as is, no refresh.
    assert await user.valid_access_token(None) == first
    assert server.refresh_count() == 0
    await user.refresh_access_token()
    assert server.refresh_count() == 1
    second = user.access_token()
    assert second != first
    # Forced refreshes at once: one request, joined by everyone. The first one's save is held
    # until all eight have been made, so none can start after it ended (which would rightly
    # make a request of its own).
    store.gate.clear()
    pending = asyncio.gather(*(user.refresh_access_token() for _ in range(8)))
    await asyncio.sleep(0.3)
    store.gate.set()
    await pending
    assert server.refresh_count() == 2
    assert user.access_token() not in (first, second)


@pytest.mark.lifetimes(access=4, refresh=3600)
@aio
async def test_valid_access_token_refreshes_an_expiring_token(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=True))
    first = user.access_token()
    assert await user.valid_access_token() == first
    # A 4 s token counts as expiring once half its life is gone (the margin is longer); 2 s
    # on either side of each check, so that a busy machine cannot make a fresh token due.
    await asyncio.sleep(2.2)
    tokens = await asyncio.gather(*(user.valid_access_token() for _ in range(8)))
    assert server.refresh_count() == 1
    assert set(tokens) == {user.access_token()} and tokens[0] != first


async def expiry_setup(
    server: Server,
) -> Tuple[sessionkit.App, sessionkit.User, List[Tuple[sessionkit.User, sessionkit.SessionError, str]]]:
    app = server.app()
    calls: List[Tuple[sessionkit.User, sessionkit.SessionError, str]] = []

    class Handler(SessionErrorHandler):
        def on_session_error(self, user: sessionkit.User, error: sessionkit.SessionError) -> None:
            calls.append((user, error, threading.current_thread().name))

    app.set_session_error_handler(Handler())
    user = await email_user(app, "expiring@example.com")
    return app, user, calls


@pytest.mark.lifetimes(access=1800, refresh=3600)
@aio
async def test_expiry_callback_on_expired_refresh_token(server: Server) -> None:
    app, user, calls = await expiry_setup(server)
    server.advance_clock(3601)  # the refresh token's life is over on the server
    with pytest.raises(AppError.SessionExpired) as err:
        await user.refresh_access_token()
    assert err.value.kind == SessionErrorKind.TOKEN_EXPIRED
    await wait_for(lambda: len(calls) == 1)
    handed, error, _ = calls[0]
    assert handed == user and handed.state() == UserState.LOGGED_OUT
    assert error.user_id == user.id() and error.kind == SessionErrorKind.TOKEN_EXPIRED
    assert app.current_user() is None
    # The user is logged out now: no second refresh, no second callback.
    with pytest.raises(AppError.ClientUserNotLoggedIn):
        await user.valid_access_token()
    assert len(calls) == 1


@pytest.mark.parametrize(
    "end, kind",
    [("revoke", SessionErrorKind.SESSION_REVOKED), ("disable", SessionErrorKind.USER_DISABLED)],
)
@aio
async def test_expiry_callback_says_why(server: Server, end: str, kind: SessionErrorKind) -> None:
    app, user, calls = await expiry_setup(server)
    if end == "revoke":
        server.revoke_sessions(user.id())
    else:
        server.disable_user(user.id())
    with pytest.raises(AppError.SessionExpired):
        await user.refresh_access_token()
    await wait_for(lambda: len(calls) == 1)
    assert calls[0][1].kind == kind
    assert user.state() == UserState.LOGGED_OUT


@aio
async def test_events_in_order(server: Server) -> None:
    app = server.app()
    everything = Recorder()
    sub = app.subscribe(everything)
    await wait_for(lambda: len(everything.events) == 1)
    assert everything.events[0].kind == AuthEventKind.INITIAL_STATE
    assert everything.events[0].user_id is None
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    mine = Recorder()
    user_sub = user.subscribe(mine)
    await user.refresh_access_token()
    await user.log_out()
    await wait_for(lambda: AuthEventKind.USER_REMOVED in everything.kinds())
    kinds = everything.kinds()
    assert kinds.index(AuthEventKind.SIGNED_IN) < kinds.index(AuthEventKind.TOKEN_REFRESHED)
    assert kinds.index(AuthEventKind.TOKEN_REFRESHED) < kinds.index(AuthEventKind.SIGNED_OUT)
    signed_in = next(e for e in everything.events if e.kind == AuthEventKind.SIGNED_IN)
    assert signed_in.user_id == user.id() and signed_in.user_initiated
    assert mine.events[0].kind == AuthEventKind.INITIAL_STATE
    assert mine.events[0].user_id == user.id()
    assert AuthEventKind.TOKEN_REFRESHED in mine.kinds()
    # Cancelled: nothing more arrives.
    sub.cancel()
    user_sub.cancel()
    seen = len(everything.events)
    await app.log_in(Credentials.ANONYMOUS(reuse=True))
    assert len(everything.events) == seen


@aio
async def test_a_raising_listener_breaks_nothing(server: Server) -> None:
    app = server.app()

    class Raising(sessionkit.AuthEventListener):
        def __init__(self) -> None:
            self.calls = 0

        def on_event(self, event: sessionkit.AuthEvent) -> None:
            self.calls += 1
            raise RuntimeError("listener bug")

    bad, good = Raising(), Recorder()
    subs = [app.subscribe(bad), app.subscribe(good)]
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    await user.refresh_access_token()
    await wait_for(lambda: AuthEventKind.TOKEN_REFRESHED in good.kinds())
    assert bad.calls >= 3  # it kept being called: initial state, signed in, refreshed
    assert await user.valid_access_token() == user.access_token()
    del subs


@aio
async def test_errors_are_exceptions(server: Server) -> None:
    with pytest.raises(AppError.InsecureUrl):
        sessionkit.App(
            sessionkit.AppConfig(
                app_id="x",
                base_url="http://example.com",
                storage=sessionkit.StorageConfig.IN_MEMORY(),
            )
        )
    with pytest.raises(AppError.InvalidArgument):
        server.app(request_timeout_ms=0)
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=True))
    with pytest.raises(AppError.InvalidArgument):
        await user.call_function_json("sum", "{not json")
    with pytest.raises(AppError.Service) as err:
        await user.call_function("no-such-function")
    assert err.value.code and err.value.http_status >= 400
    assert isinstance(err.value, AppError)
    with pytest.raises(AppError.ClientUserAlreadyNamed):
        await user.link_credentials(Credentials.ANONYMOUS(reuse=False))
    bad = sessionkit.App(server.config())
    bad_url = "http://127.0.0.1:1"
    with pytest.raises((AppError.Network, AppError.Timeout)):
        await bad.update_base_url(bad_url)
    assert bad.base_url() == server.base_url


@pytest.mark.lifetimes(access=2, refresh=3600)
@aio
async def test_auto_refresh_runs_on_the_sdk_runtime(server: Server) -> None:
    # Nobody calls the SDK while waiting: the refresh comes from the scheduler on the SDK's
    # own runtime, not from the caller's event loop.
    app = server.app()
    events = Recorder()
    sub = app.subscribe(events)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    first = user.access_token()
    # Turned on after the login: the core's login does not wake a scheduler that is already
    # asleep (up to 300 s), so auto_refresh=True in the config would make this test wait.
    app.set_auto_refresh(True)
    await wait_for(lambda: AuthEventKind.TOKEN_REFRESHED in events.kinds(), timeout=10)
    refreshed = next(e for e in events.events if e.kind == AuthEventKind.TOKEN_REFRESHED)
    assert not refreshed.user_initiated
    assert user.access_token() != first
    assert server.refresh_count() >= 1
    app.set_auto_refresh(False)
    sub.cancel()


@aio
async def test_python_logger_never_sees_a_token(server: Server) -> None:
    class Lines(sessionkit.Logger):
        def __init__(self) -> None:
            self.lines: List[Tuple[sessionkit.LogLevel, str, str]] = []

        def log(self, level: sessionkit.LogLevel, target: str, message: str) -> None:
            self.lines.append((level, target, message))

    logger = Lines()
    app = server.app(logger=logger)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    old_refresh_token = user.refresh_token()
    await user.refresh_access_token()
    await user.log_out()
    assert logger.lines
    assert all(isinstance(level, sessionkit.LogLevel) for level, _, _ in logger.lines)
    assert old_refresh_token is not None
    secrets = [old_refresh_token]
    text = "\n".join(message for _, _, message in logger.lines)
    assert all(s not in text for s in secrets)
