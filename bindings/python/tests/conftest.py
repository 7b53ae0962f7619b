"""Fixtures: a real sessionkit-server per test (the binary is built by scripts/test-all, not
here), admin helpers over urllib, and a polling helper for callbacks that arrive on SDK
threads. The process and HTTP plumbing is in sk_server.py, shared with the conformance runner."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
import functools
from typing import Any, Callable, Coroutine, Dict, Iterator, List, Optional, Tuple

import pytest

import sessionkit
import sk_server
from sessionkit import AppConfig, StorageConfig

APP_ID = "pytest-app"
JWT_KEY = "pytest-custom-token-key"
ADMIN_PUBLIC = "pytest-admin-public"
ADMIN_PRIVATE = "pytest-admin-private"

CONFIG = """
listen = "127.0.0.1:0"
data_dir = "{data_dir}"
test_clock = true
rate_limits = {{ enabled = false }}

[admin]
public_key = "{admin_public}"
private_key = "{admin_private}"

[[app]]
id = "{app_id}"
access_token_lifetime_secs = {access}
refresh_token_lifetime_secs = {refresh}

[app.providers.anon-user]
[app.providers.local-userpass]
auto_confirm = true
reset_function = "success"
allow_insecure_reset_function = true
[app.providers.api-key]
[app.providers.custom-token]
algorithm = "HS256"
key = "{jwt_key}"
[app.providers.custom-function]
id_field = "username"
"""


class Server:
    """One running sessionkit-server and its admin API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._admin_token: Optional[str] = None

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = sk_server.admin_login(
                self.base_url, ADMIN_PUBLIC, ADMIN_PRIVATE, error=AssertionError
            )
        return self._admin_token

    def admin(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        url = f"{self.base_url}{sk_server.ADMIN_API}/groups/pytest-group/apps/{APP_ID}{path}"
        return sk_server.http(method, url, body, self.admin_token())

    def refresh_count(self) -> int:
        status, doc = self.admin("GET", "/metrics")
        assert status == 200, doc
        return int(doc["requests"].get("refresh", 0))

    def revoke_sessions(self, user_id: str) -> None:
        status, doc = self.admin("PUT", f"/users/{user_id}/logout")
        assert status == 204, doc

    def disable_user(self, user_id: str) -> None:
        status, doc = self.admin("PUT", f"/users/{user_id}/disable")
        assert status == 204, doc

    def advance_clock(self, secs: int) -> None:
        status, doc = sk_server.http(
            "POST",
            f"{self.base_url}{sk_server.ADMIN_API}/test/clock",
            {"advance_secs": secs},
            self.admin_token(),
        )
        assert status == 200, doc

    def config(self, storage: Optional[StorageConfig] = None, **kw: Any) -> AppConfig:
        kw.setdefault("request_timeout_ms", 10_000)
        return AppConfig(
            app_id=APP_ID,
            base_url=self.base_url,
            storage=storage if storage is not None else StorageConfig.IN_MEMORY(),
            **kw,
        )

    def app(self, **kw: Any) -> sessionkit.App:
        return sessionkit.App(self.config(**kw))


def _server_bin() -> pathlib.Path:
    path = pathlib.Path(sk_server.default_server_bin())
    # Relative to the repo, not to wherever pytest (or the bench) was started.
    return path if path.is_absolute() else sk_server.REPO / path


@contextlib.contextmanager
def start_server(access: int = 1800, refresh: int = 86400) -> Iterator[Server]:
    """Runs sessionkit-server on a free loopback port with a fresh data dir until exit."""
    with sk_server.ServerProcess(
        _server_bin(),
        CONFIG,
        prefix="sessionkit-pytest-",
        admin_public=ADMIN_PUBLIC,
        admin_private=ADMIN_PRIVATE,
        app_id=APP_ID,
        jwt_key=JWT_KEY,
        access=access,
        refresh=refresh,
    ) as proc:
        yield Server(proc.base_url)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A fresh server; `@pytest.mark.lifetimes(access=..., refresh=...)` sets token lifetimes."""
    marker = request.node.get_closest_marker("lifetimes")
    with start_server(**(marker.kwargs if marker else {})) as s:
        yield s


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lifetimes(access, refresh): server token lifetimes")


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Callbacks run on SDK threads; poll briefly instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a callback")
        await asyncio.sleep(0.005)


def sign_jwt(claims: Dict[str, Any], key: str = JWT_KEY) -> str:
    """An HS256 JWT signed with this app's key unless told otherwise."""
    return sk_server.sign_hs256(claims, key)


def aio(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test on a fresh event loop (no pytest-asyncio dependency)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


class Recorder(sessionkit.AuthEventListener):
    """Records every event it is given (on whatever SDK thread delivers it)."""

    def __init__(self) -> None:
        self.events: List[sessionkit.AuthEvent] = []

    def on_event(self, event: sessionkit.AuthEvent) -> None:
        self.events.append(event)

    def kinds(self) -> List[sessionkit.AuthEventKind]:
        return [e.kind for e in self.events]
