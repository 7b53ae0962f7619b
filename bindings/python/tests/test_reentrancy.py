"""Callbacks may call the SDK, blocking or async, and it completes (#12 item 18): listeners,
the session error handler, a logger and a custom store run on SDK threads; a blocking call from
one of them must neither hang nor starve the SDK for other Apps."""

from __future__ import annotations

import threading
import time

from typing import Any, Callable, Dict, List, Optional

import pytest

import sessionkit
from sessionkit import AuthEventKind, Credentials, StorageConfig
from sessionkit import blocking

from conftest import Server

TIMEOUT = 30.0


def _run_with_deadline(fn: Callable[[], Any], what: str) -> Any:
    """Runs fn on a thread; fails (instead of hanging the suite) if it does not end in time."""
    out: Dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), f"{what} hung"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_blocking_calls_from_listeners_complete_many_at_once(server: Server) -> None:
    app = blocking.App(server.config())
    results: List[Any] = []
    errors: List[Exception] = []

    class CallsBack(sessionkit.AuthEventListener):
        def on_event(self, event: sessionkit.AuthEvent) -> None:
            if event.kind != AuthEventKind.TOKEN_REFRESHED:
                return
            try:
                current = app.inner.current_user()
                assert current is not None
                user = blocking.User(current)
                results.append(user.call_function("sum", 1, 2))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    sub = app.subscribe(CallsBack())
    user = app.log_in(Credentials.ANONYMOUS(reuse=False))

    def refresh_many() -> None:
        threads = [threading.Thread(target=user.refresh_access_token) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    for _ in range(4):
        _run_with_deadline(refresh_many, "refreshes whose listener makes blocking calls")
    assert not errors, errors
    assert results and all(r == 3 for r in results), results
    # The SDK is not starved: another App still logs in.
    other = blocking.App(server.config())
    _run_with_deadline(lambda: other.log_in(Credentials.ANONYMOUS(reuse=False)), "a new App's login")
    sub.cancel()
    app.close()
    other.close()


def test_handler_logger_and_store_may_call_back(server: Server) -> None:
    calls: List[Any] = []
    holder: Dict[str, Any] = {}

    class Logs(sessionkit.Logger):
        def log(self, level: sessionkit.LogLevel, target: str, message: str) -> None:
            app = holder.get("app")
            if app is not None:
                calls.append(("log", len(app.all_users())))

    class Store(sessionkit.SessionStore):
        data = None

        def load(self) -> Optional[bytes]:
            return self.data

        def save(self, data: bytes) -> None:
            self.data = data
            app = holder.get("app")
            if app is not None:
                calls.append(("save", app.current_user() is not None))

    class Handler(sessionkit.SessionErrorHandler):
        def on_session_error(self, user: sessionkit.User, error: sessionkit.SessionError) -> None:
            # A blocking login from inside the token-expiry callback.
            calls.append(("handler", holder["app"].log_in(Credentials.ANONYMOUS(reuse=False)).id()))

    app = blocking.App(server.config(storage=StorageConfig.CUSTOM(store=Store()), logger=Logs()))
    holder["app"] = app
    app.set_session_error_handler(Handler())
    user = app.log_in(Credentials.ANONYMOUS(reuse=False))
    server.revoke_sessions(user.id())
    with pytest.raises(sessionkit.AppError.SessionExpired):
        _run_with_deadline(user.refresh_access_token, "a refresh whose handler logs in")
    deadline = time.time() + TIMEOUT
    while not any(c[0] == "handler" for c in calls) and time.time() < deadline:
        time.sleep(0.05)
    assert any(c[0] == "handler" for c in calls), calls
    assert any(c[0] == "save" for c in calls), calls
    current = app.current_user()
    assert current is not None and current.id() != user.id()
    app.close()
