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

NO_RATE_LIMITS = "{ enabled = false }"

CONFIG = """
listen = "127.0.0.1:0"
data_dir = "{data_dir}"
test_clock = true
rate_limits = {rate_limits}

[admin]
public_key = "{admin_public}"
private_key = "{admin_private}"

[[app]]
id = "{app_id}"
access_token_lifetime_secs = {access}
refresh_token_lifetime_secs = {refresh}
{app_extra}

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
{providers_extra}
"""


class Server:
    """One running sessionkit-server and its admin API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._admin_token: Optional[str] = None
        # The process (its config file and data dir), for tests that run the server's CLI.
        self.process: Optional[sk_server.ServerProcess] = None

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = sk_server.admin_login(
                self.base_url, ADMIN_PUBLIC, ADMIN_PRIVATE, error=AssertionError
            )
        return self._admin_token

    def admin(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        url = f"{self.base_url}{sk_server.ADMIN_API}/groups/pytest-group/apps/{APP_ID}{path}"
        status, doc = sk_server.http(method, url, body, self.admin_token())
        if status == 401 and isinstance(doc, dict) and "expired" in str(doc.get("error")):
            # The admin token's 30 minutes passed on a test clock moved forward: log in again.
            self._admin_token = None
            status, doc = sk_server.http(method, url, body, self.admin_token())
        return status, doc

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
        url = f"{self.base_url}{sk_server.ADMIN_API}/test/clock"
        status, doc = sk_server.http("POST", url, {"advance_secs": secs}, self.admin_token())
        if status == 401:  # the admin token expired on a clock moved before: log in again
            self._admin_token = None
            status, doc = sk_server.http("POST", url, {"advance_secs": secs}, self.admin_token())
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
def start_server(
    access: int = 1800,
    refresh: int = 86400,
    app_extra: str = "",
    providers_extra: str = "",
    rate_limits: str = NO_RATE_LIMITS,
) -> Iterator[Server]:
    """Runs sessionkit-server on a free loopback port with a fresh data dir until exit;
    `app_extra` is added to the app's table (e.g. `access_token_algorithm = "ES256"`),
    `providers_extra` after its providers (e.g. the test issuer's tables), `rate_limits` is the
    `[rate_limits]` table inline (off unless given, e.g. `{ logins_per_account_per_hour = 2 }`)."""
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
        app_extra=app_extra,
        providers_extra=providers_extra,
        rate_limits=rate_limits,
    ) as proc:
        server = Server(proc.base_url)
        server.process = proc
        yield server


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


class Issuer:
    """The test issuer process (sk_server.IssuerProcess), with specs as keyword arguments:
    `credential("apple_id_token", sub="u1", aud="wrong")`."""

    def __init__(self) -> None:
        self.process = sk_server.IssuerProcess()
        self.url = self.process.url

    def providers_toml(self) -> str:
        return self.process.providers_toml()

    def credential(self, kind: str, **spec: Any) -> str:
        return self.process.credential(kind, spec)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    """A test issuer process for one test."""
    started = Issuer()
    try:
        yield started
    finally:
        started.stop()
