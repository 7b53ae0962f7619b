"""The HTTP client integrations (#15): sessionkit.httpx_auth.UserAuth (httpx.Client and
httpx.AsyncClient) and sessionkit.requests_auth.UserAuth, against the server's own
bearer-checked routes (GET /auth/profile: 200 with a valid access token, 401 otherwise;
functions/call to see a body replayed), and a local API that refuses every token. Refreshes
are counted by the server's admin metrics."""

from __future__ import annotations

import asyncio
import http.server
import io
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, List, Tuple

import httpx
import pytest
import requests

import sessionkit
from sessionkit import AppError, Credentials, SessionError, SessionErrorKind, User
from sessionkit import blocking
from sessionkit.httpx_auth import UserAuth as HttpxAuth
from sessionkit.requests_auth import UserAuth as RequestsAuth

from conftest import APP_ID, Server, aio, start_server, wait_for

PROFILE = "/api/client/v2.0/auth/profile"
CALL = f"/api/client/v2.0/app/{APP_ID}/functions/call"


class Handler(sessionkit.SessionErrorHandler):
    def __init__(self) -> None:
        self.calls: List[Tuple[str, SessionErrorKind]] = []

    def on_session_error(self, user: User, error: SessionError) -> None:
        self.calls.append((user.id(), error.kind))


class Refuser:
    """A local API that answers 401 to every request, counting them and the bearer tokens."""

    def __init__(self) -> None:
        self.tokens: List[str] = []
        seen = self.tokens

        class Answer(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization", ""))
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/orders"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def refuser() -> Iterator[Refuser]:
    r = Refuser()
    yield r
    r.stop()


def _blocking_user(server: Server, handler: Handler) -> blocking.User:
    app = blocking.App(server.config())
    app.set_session_error_handler(handler)
    return app.log_in(Credentials.ANONYMOUS(reuse=False))


# ---- a fresh token: sent as is, no refresh ----


@aio
async def test_httpx_async_sends_the_fresh_token_without_a_refresh(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    async with httpx.AsyncClient(base_url=server.base_url, auth=HttpxAuth(user)) as client:
        r = await client.get(PROFILE)
    assert r.status_code == 200 and r.json()["user_id"] == user.id()
    assert r.request.headers["Authorization"] == f"Bearer {user.access_token()}"
    assert server.refresh_count() == 0


def test_httpx_sync_and_requests_send_the_fresh_token_without_a_refresh(server: Server) -> None:
    user = _blocking_user(server, Handler())
    with httpx.Client(base_url=server.base_url, auth=HttpxAuth(user)) as client:
        r = client.get(PROFILE)
    assert r.status_code == 200 and r.json()["user_id"] == user.id()
    r2 = requests.get(server.base_url + PROFILE, auth=RequestsAuth(user), timeout=10)
    assert r2.status_code == 200 and r2.json()["user_id"] == user.id()
    assert r2.request.headers["Authorization"] == f"Bearer {user.access_token()}"
    assert server.refresh_count() == 0
    # Without the integration the same route refuses: the token is what makes it pass.
    assert requests.get(server.base_url + PROFILE, timeout=10).status_code == 401


# ---- a 401: one refresh, one replay with the body ----


@aio
async def test_httpx_async_401_refreshes_once_and_replays_the_body(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    before = user.access_token()
    server.advance_clock(1801)  # the server refuses the access token; the SDK still holds it
    async with httpx.AsyncClient(base_url=server.base_url, auth=HttpxAuth(user)) as client:
        r = await client.post(CALL, json={"name": "echo", "arguments": ["x", 2]})
    assert r.status_code == 200 and r.json() == ["x", 2]
    assert server.refresh_count() == 1
    assert user.access_token() != before
    assert r.request.headers["Authorization"] == f"Bearer {user.access_token()}"


def test_httpx_sync_and_requests_401_refresh_once_and_replay_the_body(server: Server) -> None:
    user = _blocking_user(server, Handler())
    server.advance_clock(1801)
    with httpx.Client(base_url=server.base_url, auth=HttpxAuth(user)) as client:
        r = client.post(CALL, json={"name": "echo", "arguments": ["sync"]})
    assert r.status_code == 200 and r.json() == ["sync"]
    assert server.refresh_count() == 1
    server.advance_clock(1801)
    body = b'{"name": "echo", "arguments": ["requests"]}'
    r2 = requests.post(
        server.base_url + CALL, data=body, headers={"Content-Type": "application/json"},
        auth=RequestsAuth(user), timeout=10,
    )
    assert r2.status_code == 200 and r2.json() == ["requests"]
    assert [h.status_code for h in r2.history] == [401]
    assert server.refresh_count() == 2


@aio
async def test_a_second_401_is_returned_never_a_loop(server: Server, refuser: Refuser) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    first = user.access_token()
    async with httpx.AsyncClient(auth=HttpxAuth(user)) as client:
        r = await client.get(refuser.url)
    assert r.status_code == 401
    assert len(refuser.tokens) == 2 and server.refresh_count() == 1
    assert refuser.tokens[0] == f"Bearer {first}" and refuser.tokens[1] == f"Bearer {user.access_token()}"
    assert first != user.access_token()


def test_a_second_401_is_returned_never_a_loop_sync(server: Server, refuser: Refuser) -> None:
    user = _blocking_user(server, Handler())
    with httpx.Client(auth=HttpxAuth(user)) as client:
        assert client.get(refuser.url).status_code == 401
    assert len(refuser.tokens) == 2 and server.refresh_count() == 1
    assert requests.get(refuser.url, auth=RequestsAuth(user), timeout=10).status_code == 401
    assert len(refuser.tokens) == 4 and server.refresh_count() == 2


# ---- concurrency: one refresh ----


@aio
async def test_concurrent_requests_refused_the_same_token_share_one_refresh(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    server.advance_clock(1801)
    async with httpx.AsyncClient(base_url=server.base_url, auth=HttpxAuth(user)) as client:
        answers = await asyncio.gather(*(client.get(PROFILE) for _ in range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert server.refresh_count() == 1


def test_concurrent_threads_refused_the_same_token_share_one_refresh(server: Server) -> None:
    user = _blocking_user(server, Handler())
    server.advance_clock(1801)
    auth = RequestsAuth(user)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: requests.get(server.base_url + PROFILE, auth=auth, timeout=10).status_code, range(8)))
    assert codes == [200] * 8
    assert server.refresh_count() == 1


@aio
async def test_concurrent_requests_on_an_expiring_token_share_one_refresh() -> None:
    # A 3 s token with a 1 s margin is fresh for about 2 s, then due for a refresh.
    with start_server(access=3) as server:
        app = server.app(refresh_margin_secs=1)
        user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
        await asyncio.sleep(2.3)
        async with httpx.AsyncClient(base_url=server.base_url, auth=HttpxAuth(user)) as client:
            answers = await asyncio.gather(*(client.get(PROFILE) for _ in range(8)))
        assert [r.status_code for r in answers] == [200] * 8
        assert server.refresh_count() == 1


# ---- the end of a session ----


@aio
async def test_an_ended_session_raises_session_expired_and_calls_the_handler_once(server: Server) -> None:
    app = server.app()
    handler = Handler()
    app.set_session_error_handler(handler)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    server.revoke_sessions(user.id())
    server.advance_clock(1801)
    async with httpx.AsyncClient(base_url=server.base_url, auth=HttpxAuth(user)) as client:
        results = await asyncio.gather(*(client.get(PROFILE) for _ in range(4)), return_exceptions=True)
    assert all(isinstance(e, AppError.SessionExpired) for e in results), results
    await wait_for(lambda: len(handler.calls) >= 1)
    await asyncio.sleep(0.1)
    assert handler.calls == [(user.id(), SessionErrorKind.SESSION_REVOKED)]
    assert server.refresh_count() == 1


def test_an_ended_session_raises_session_expired_sync(server: Server) -> None:
    handler = Handler()
    user = _blocking_user(server, handler)
    server.revoke_sessions(user.id())
    server.advance_clock(1801)
    auth = RequestsAuth(user)

    def get(_: int) -> BaseException:
        try:
            requests.get(server.base_url + PROFILE, auth=auth, timeout=10)
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            return e
        raise AssertionError("the request did not fail")

    with ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(get, range(4)))
    # Threads that sent the refused token share its SessionExpired; one that asked for a token
    # only after the session had ended was refused without sending: the user is logged out.
    assert all(isinstance(e, (AppError.SessionExpired, AppError.ClientUserNotLoggedIn)) for e in errors), errors
    assert any(isinstance(e, AppError.SessionExpired) for e in errors), errors
    with pytest.raises(AppError.ClientUserNotLoggedIn):
        with httpx.Client(base_url=server.base_url, auth=HttpxAuth(user)) as client:
            client.get(PROFILE)
    assert handler.calls == [(user.id(), SessionErrorKind.SESSION_REVOKED)]
    assert server.refresh_count() == 1


# ---- where tokens may go ----


@aio
async def test_plain_http_beyond_loopback_is_refused_before_sending(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    async with httpx.AsyncClient(auth=HttpxAuth(user)) as client:
        with pytest.raises(AppError.InsecureUrl) as err:
            await client.get("http://api.example.invalid/orders?secret=1")
    assert err.value.url == "http://api.example.invalid"
    with pytest.raises(TypeError):
        HttpxAuth("not a user")  # type: ignore[arg-type]
    token = user.access_token()
    assert token is not None and token not in repr(HttpxAuth(user))


def test_requests_replays_a_file_body_from_where_it_started(server: Server) -> None:
    user = _blocking_user(server, Handler())
    server.advance_clock(1801)
    body = io.BytesIO(b'--skipped--{"name": "echo", "arguments": ["from a file"]}')
    body.seek(len(b"--skipped--"))
    r = requests.post(
        server.base_url + CALL, data=body, headers={"Content-Type": "application/json"},
        auth=RequestsAuth(user), timeout=10,
    )
    assert r.status_code == 200 and r.json() == ["from a file"]
    assert [h.status_code for h in r.history] == [401]
    assert server.refresh_count() == 1


def test_the_package_imports_without_httpx_requests_and_pyjwt() -> None:
    code = (
        "import sys\n"
        "for name in ('httpx', 'requests', 'jwt'):\n"
        "    sys.modules[name] = None\n"
        "import sessionkit, sessionkit.admin\n"
        "for module in ('sessionkit.httpx_auth', 'sessionkit.requests_auth'):\n"
        "    try:\n"
        "        __import__(module)\n"
        "    except ImportError as e:\n"
        "        print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "sessionkit.httpx_auth needs httpx: pip install httpx",
        "sessionkit.requests_auth needs requests: pip install requests",
    ]
