"""DPoP-bound sessions from Python (#29): ``AppConfig(dpop=True)`` against the real server, the
HTTP client hooks' proofs checked by an API of the test's own that verifies them with PyJWT
(``verify_access_token``), nonce challenges, and a ``DpopSigner`` on ``cryptography`` keys
(DER signatures and SPKI public keys, as a platform key store gives them)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import sessionkit
from sessionkit import AppError, Credentials, DpopSigner, DpopSignerError, UserState, blocking
from sessionkit._authorized import dpop_proof as direct_proof
from sessionkit.httpx_auth import UserAuth as HttpxAuth
from sessionkit.requests_auth import UserAuth as RequestsAuth

from conftest import APP_ID, Server, aio, start_server

REQUIRED = 'access_token_algorithm = "ES256"\ndpop = "required"'


def claims(token: str) -> Dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@pytest.fixture
def required() -> Iterator[Server]:
    with start_server(app_extra=REQUIRED) as s:
        yield s


async def email_user(app: sessionkit.App, email: str) -> sessionkit.User:
    await app.email_password_auth().register_user(email, "password-123")
    return await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="password-123"))


def stolen_refresh(server: Server, refresh_token: str) -> Tuple[int, Any]:
    request = urllib.request.Request(
        f"{server.base_url}/api/client/v2.0/auth/session",
        method="POST",
        headers={"Authorization": f"Bearer {refresh_token}"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Api:
    """The app's own API, on loopback: it verifies each request's access token and DPoP proof
    with ``verify_access_token`` (PyJWT), as the app's backend would; with ``nonce`` set it first
    asks for that nonce (RFC 9449 section 9). Records what it saw, never the token."""

    def __init__(self, server: Server, nonce: Optional[str] = None) -> None:
        self.server, self.nonce = server, nonce
        self.seen: List[Tuple[str, int]] = []
        # How many requests to refuse first as if their token had expired (a 401 that makes
        # the hooks refresh and replay).
        self.refuse = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def _answer(self) -> None:
                status, headers = api.judge(self.command, f"{api.url}{self.path}", self.headers)
                api.seen.append((self.headers.get("Authorization", "").split(" ")[0], status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def judge(self, method: str, url: str, headers: Any) -> Tuple[int, Dict[str, str]]:
        if self.refuse > 0:
            self.refuse -= 1
            return 401, {"WWW-Authenticate": 'DPoP error="invalid_token"'}
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        proof = headers.get("DPoP")
        try:
            sessionkit.verify_access_token(
                token, base_url=self.server.base_url, app_id=APP_ID, method=method, url=url, dpop=proof
            )
        except sessionkit.AccessTokenError:
            return 401, {"WWW-Authenticate": 'DPoP error="invalid_dpop_proof"'}
        if proof is not None:
            if scheme != "DPoP":
                return 401, {}
            if self.nonce is not None and claims(proof).get("nonce") != self.nonce:
                return 401, {"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": self.nonce}
        return 200, {}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@aio
async def test_a_bound_session_proves_its_key_on_every_request_and_stolen_tokens_are_useless(
    required: Server,
) -> None:
    app = required.app(dpop=True)
    user = await email_user(app, "bound@example.com")
    thumbprint = user.dpop_thumbprint()
    assert thumbprint and claims(user.access_token() or "")["cnf"]["jkt"] == thumbprint
    await user.refresh_access_token()
    assert await user.call_function("sum", 1, 2) == 3
    assert (await user.request("GET", "/api/client/v2.0/auth/profile", None)).status == 200
    assert len(await user.sessions()) == 1

    refresh_token = user.refresh_token() or ""
    status, body = stolen_refresh(required, refresh_token)
    assert (status, body["error_code"]) == (400, "InvalidDPoPProof")
    assert user.state() == UserState.LOGGED_IN and user.refresh_token() == refresh_token
    await user.refresh_access_token()

    # The hooks against the server's own route, which checks proofs as a backend would.
    profile = f"{required.base_url}/api/client/v2.0/auth/profile"
    assert requests.get(profile, auth=RequestsAuth(user)).status_code == 200
    with httpx.Client(auth=HttpxAuth(user)) as client:
        assert client.get(profile).status_code == 200
    async with httpx.AsyncClient(auth=HttpxAuth(user)) as aclient:
        assert (await aclient.get(profile)).status_code == 200

    await user.log_out()
    assert user.dpop_thumbprint() is None
    app.close()


@aio
async def test_the_hooks_proofs_pass_an_independent_verifier_and_answer_its_nonce(required: Server) -> None:
    app = required.app(dpop=True)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    api = Api(required, nonce="n-1")
    try:
        # requests: the challenge, then the retry with the nonce (in the response's history).
        r = requests.post(f"{api.url}/orders?page=2", json={"a": 1}, auth=RequestsAuth(user))
        assert r.status_code == 200 and [h.status_code for h in r.history] == [401]
        # The nonce is kept for the origin: no challenge for the next requests.
        assert requests.get(f"{api.url}/orders", auth=RequestsAuth(user)).history == []
        with httpx.Client(auth=HttpxAuth(user)) as client:
            assert client.get(f"{api.url}/a").status_code == 200
            api.nonce = "n-2"  # the API moves on to a new nonce: one more challenge
            assert client.post(f"{api.url}/b", content=b"x").status_code == 200
        async with httpx.AsyncClient(auth=HttpxAuth(user)) as aclient:
            assert (await aclient.get(f"{api.url}/c")).status_code == 200
        assert [s for _, s in api.seen] == [401, 200, 200, 200, 401, 200, 200]
        assert {scheme for scheme, _ in api.seen} == {"DPoP"}
        # A bearer session's hook sends Bearer, and the verifier takes it.
        plain = required.app()
        with pytest.raises(AppError.Service) as refused:
            await plain.log_in(Credentials.ANONYMOUS(reuse=False))
        assert refused.value.code == "InvalidDPoPProof"
        plain.close()
    finally:
        api.close()
    app.close()


@aio
async def test_a_nonce_asked_for_after_the_refresh_and_replay_is_answered_too(required: Server) -> None:
    # A 401 for the token (refresh, replay), then the replay's proof asked for a nonce: one more
    # try with it, and the nonce kept (found by a fresh user trying the hooks, #29).
    app = required.app(dpop=True)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))

    def api() -> Api:
        a = Api(required, nonce="n-9")  # a new origin each time: nonces are kept per origin
        a.refuse = 1
        return a

    async def async_get(url: str) -> int:
        async with httpx.AsyncClient(auth=HttpxAuth(user)) as aclient:
            return (await aclient.get(url)).status_code

    for send in (
        lambda url: requests.get(url, auth=RequestsAuth(user)).status_code,
        lambda url: httpx.Client(auth=HttpxAuth(user)).get(url).status_code,
        None,
    ):
        a = api()
        try:
            # The synchronous hooks refresh with blocking calls: off the event loop.
            status = await asyncio.to_thread(send, f"{a.url}/x") if send else await async_get(f"{a.url}/x")
            assert status == 200
            assert [s for _, s in a.seen] == [401, 401, 200]
            # Kept: the next request is not challenged.
            again = await asyncio.to_thread(requests.get, f"{a.url}/y", auth=RequestsAuth(user))
            assert again.history == []
        finally:
            a.close()
    app.close()


def test_an_optional_app_binds_only_the_clients_that_ask() -> None:
    with start_server(app_extra='access_token_algorithm = "ES256"\ndpop = "optional"') as server:
        bound = blocking.App(server.config(dpop=True))
        plain = blocking.App(server.config())
        b = bound.log_in(Credentials.ANONYMOUS(reuse=False))
        p = plain.log_in(Credentials.ANONYMOUS(reuse=False))
        assert b.dpop_thumbprint() and p.dpop_thumbprint() is None
        token = p.access_token() or ""
        assert p.dpop_proof("GET", "https://api.example/x", token) is None
        assert b.dpop_proof("GET", "https://api.example/x", b.access_token() or "")
        # The hooks' direct call: the same answers.
        assert direct_proof(p.inner, "GET", "https://api.example/x", token, None) is None
        proof = direct_proof(b.inner, "GET", "https://api.example/x?q=1", b.access_token() or "", "n")
        assert proof and claims(proof)["htu"] == "https://api.example/x" and claims(proof)["nonce"] == "n"
        api = Api(server)
        try:
            for user in (b, p):
                user.refresh_access_token()
                assert requests.get(f"{api.url}/x", auth=RequestsAuth(user)).status_code == 200
            assert [scheme for scheme, _ in api.seen] == ["DPoP", "Bearer"]
        finally:
            api.close()
        bound.close()
        plain.close()


class Keystore(DpopSigner):
    """A signer as a platform key store is one: keys by alias, SPKI public keys, DER signatures."""

    def __init__(self) -> None:
        self.keys: Dict[str, ec.EllipticCurvePrivateKey] = {}
        self.locked = False

    def create_key(self) -> str:
        alias = f"sessionkit-{len(self.keys)}"
        self.keys[alias] = ec.generate_private_key(ec.SECP256R1())
        return alias

    def public_key(self, handle: str) -> bytes:
        return self.keys[handle].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, handle: str, message: bytes) -> bytes:
        if self.locked:
            raise DpopSignerError.Failed("the device is locked")
        return self.keys[handle].sign(message, ec.ECDSA(hashes.SHA256()))

    def delete_key(self, handle: str) -> None:
        del self.keys[handle]


@aio
async def test_a_signer_holds_the_key_and_a_locked_one_keeps_the_session(required: Server) -> None:
    keystore = Keystore()
    app = required.app(dpop=True, dpop_signer=keystore)
    user = await email_user(app, "signer@example.com")
    assert list(keystore.keys) == ["sessionkit-0"]
    assert claims(user.access_token() or "")["cnf"]["jkt"] == user.dpop_thumbprint()
    await user.refresh_access_token()
    assert await user.call_function("sum", 2) == 2

    keystore.locked = True
    with pytest.raises(AppError.Storage) as locked:
        await user.refresh_access_token()
    assert "locked" in locked.value.message
    # The hooks' direct proof call falls back to the generated one, which says why.
    profile = f"{required.base_url}/api/client/v2.0/auth/profile"
    with pytest.raises(AppError.Storage):
        requests.get(profile, auth=RequestsAuth(user))
    assert user.state() == UserState.LOGGED_IN
    keystore.locked = False
    await user.refresh_access_token()
    assert requests.get(profile, auth=RequestsAuth(user)).status_code == 200

    await user.log_out()
    assert keystore.keys == {}, "deleted once the session was revoked"
    app.close()

    with pytest.raises(AppError.InvalidArgument) as e:
        required.app(dpop_signer=Keystore())
    assert "dpop_signer" in e.value.message


@aio
async def test_a_signer_or_handler_with_the_methods_need_not_subclass(required: Server) -> None:
    # API.md: callback interfaces take any object with their methods (a fresh user's trial found
    # the generated lowering refusing them at App(config) and set_session_error_handler).
    inner = Keystore()

    class Duck:
        def create_key(self) -> str:
            return inner.create_key()

        def public_key(self, handle: str) -> bytes:
            return inner.public_key(handle)

        def sign(self, handle: str, message: bytes) -> bytes:
            return inner.sign(handle, message)

        def delete_key(self, handle: str) -> None:
            inner.delete_key(handle)

    class Handler:
        def on_session_error(self, user: Any, error: Any) -> None:
            pass

    app = required.app(dpop=True, dpop_signer=Duck())
    app.set_session_error_handler(Handler())  # type: ignore[arg-type]  # duck-typed, as documented
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    assert list(inner.keys) == ["sessionkit-0"] and user.dpop_thumbprint()
    await user.log_out()
    assert inner.keys == {}
    app.close()
    with pytest.raises(TypeError):
        required.app(dpop=True, dpop_signer=object())
