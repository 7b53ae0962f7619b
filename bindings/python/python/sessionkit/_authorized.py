"""What the HTTP client integrations (``sessionkit.httpx_auth``, ``sessionkit.requests_auth``)
share (#15): the user's token for a request, the destination check, and the refreshes made
after a 401, one per refused token however many requests were refused it.

The semantics are the Swift binding's ``URLSession.data(for:user:)``
(bindings/swift/Sources/SessionKit/AuthorizedRequests.swift) and PROTOCOL.md's client refresh
rules: on a 401, one refresh and one replay, never a loop.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import ipaddress
import json
import threading
import time
import typing
import urllib.parse

from . import AppError, User
from . import blocking as _blocking


def async_user(user: typing.Any) -> User:
    """The asyncio-API handle of ``user`` (a ``sessionkit.User`` or a
    ``sessionkit.blocking.User``); TypeError for anything else."""
    if isinstance(user, _blocking.User):
        return user.inner
    if isinstance(user, User):
        return user
    raise TypeError(
        f"user must be a sessionkit.User or sessionkit.blocking.User, not {type(user).__name__}"
    )


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_destination(url: str, allow_insecure_http: bool) -> None:
    """Only http(s), and plain http only to loopback hosts unless allowed: the SDK's
    ``allow_insecure_http`` rule, applied to the app's API, so that the token never crosses a
    network in clear. Raises ``AppError.InvalidArgument`` or ``AppError.InsecureUrl``."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("http", "https") or not host:
        raise AppError.InvalidArgument(message="url: must be an http or https URL with a host")
    if scheme == "http" and not allow_insecure_http and not _is_loopback(host):
        # Scheme and host only: a query may carry secrets of its own.
        raise AppError.InsecureUrl(url=f"http://{host}")


def token_sync(user: User, min_ttl_secs: typing.Optional[int]) -> str:
    """``valid_access_token`` from synchronous code. A fresh token is answered on the first
    poll of the SDK's future, without a hop to its runtime (bindings/ffi/src/user.rs); a due
    refresh is made there, one however many callers. Raises RuntimeError inside a running
    event loop (use the async client there)."""
    return _blocking._run(user.valid_access_token(min_ttl_secs))


# AppConfig.refresh_margin_secs's default: the time left asked for when min_ttl_secs is None.
DEFAULT_MIN_TTL_SECS = 60


class Tokens:
    """The user's token for each request. While the stored token (``access_token()``, one
    synchronous call) has the time left that is asked for by its own ``exp`` and ``iat``, it is
    used as is, with no event loop and no SDK future (about 14 µs, against 120 µs for
    ``valid_access_token`` from synchronous code, on the test machine). Otherwise, or when its
    claims cannot be read, it is ``valid_access_token``, which refreshes first, one
    refresh however many requests ask. The device clock judges the fast path: one that is
    behind lets a token past its end through, and the API's 401 then makes the one refresh and
    replay; one that is ahead only sends every request down the slower path."""

    def __init__(self, user: User, min_ttl_secs: typing.Optional[int]) -> None:
        if min_ttl_secs is not None and min_ttl_secs < 0:
            raise AppError.InvalidArgument(message="min_ttl_secs: must not be negative")
        self.user = user
        self.min_ttl_secs = min_ttl_secs
        # The last token read, with its exp and the time left it needs (seconds).
        self._known: typing.Optional[typing.Tuple[str, float, float]] = None

    def _decode(self, token: str) -> typing.Optional[typing.Tuple[str, float, float]]:
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            exp, iat = float(claims["exp"]), float(claims["iat"])
        except (IndexError, ValueError, KeyError, TypeError):
            return None  # not a JWT with exp and iat: every read asks the SDK
        lifetime = max(exp - iat, 0.0)
        wanted = float(self.min_ttl_secs if self.min_ttl_secs is not None else DEFAULT_MIN_TTL_SECS)
        # The SDK's rule: a margin that even a new token could not meet is half its lifetime.
        return token, exp, wanted if wanted < lifetime else lifetime / 2

    def fresh(self) -> typing.Optional[str]:
        """The stored token when it has the time left asked for, else None."""
        current = self.user.access_token()
        if current is None:
            return None
        known = self._known
        if known is None or known[0] != current:
            known = self._decode(current)
            if known is None:
                return None
            self._known = known
        return current if known[1] - time.time() >= known[2] else None

    def sync(self) -> str:
        """A token with the time left asked for, from synchronous code (see the class)."""
        return self.fresh() or token_sync(self.user, self.min_ttl_secs)

    async def asynchronous(self) -> str:
        """A token with the time left asked for, awaited (see the class)."""
        return self.fresh() or await self.user.valid_access_token(self.min_ttl_secs)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


class _Nonces:
    """The last ``DPoP-Nonce`` each origin's answers carried (RFC 9449 section 9), shared by
    every hook in the process: a new hook, or another user's, starts with the API's nonce."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_origin: typing.Dict[str, str] = {}

    def get(self, url: str) -> typing.Optional[str]:
        with self._lock:
            return self._by_origin.get(_origin(url))

    def put(self, url: str, nonce: str) -> None:
        with self._lock:
            self._by_origin[_origin(url)] = nonce


NONCES = _Nonces()


# sessionkit_ffi_user_dpop_proof_into (bindings/ffi/src/direct.rs): a proof through one ctypes
# call on the user's own handle, instead of the generated call's buffers and crossings (#29).
_NOT_BOUND = -3
_direct: typing.Any = None
_buffers = threading.local()


def _direct_fn() -> typing.Any:
    global _direct
    if _direct is None:
        from ._native import sessionkit_ffi as _ffi

        fn = _ffi._UniffiLib.sessionkit_ffi_user_dpop_proof_into
        fn.argtypes = (ctypes.c_uint64, ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p, ctypes.c_int32)
        fn.restype = ctypes.c_int32
        _direct = fn
    return _direct


def dpop_proof(user: User, method: str, url: str, token: str, nonce: typing.Optional[str]) -> typing.Optional[str]:
    """``user.dpop_proof(method, url, token, nonce)``, made through one direct call (about a
    third of the generated call's cost). When it cannot be made that way, the generated call is
    made and raises its ``AppError`` (``Storage`` when the signer failed)."""
    handle = getattr(user, "_handle", None)
    request = f"{method}\0{url}\0{token}\0{nonce or ''}\0".encode()
    if handle is None or request.count(b"\0") != 4:
        return user.dpop_proof(method, url, token, nonce)
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = ctypes.create_string_buffer(2048)
    while True:
        # `user` holds its handle for the whole call: this frame keeps it alive.
        n = _direct_fn()(handle, request, len(request), buf, len(buf))
        if n == _NOT_BOUND:
            return None
        if n < 0:
            return user.dpop_proof(method, url, token, nonce)
        if n <= len(buf):
            return buf.raw[:n].decode()
        buf = _buffers.buf = ctypes.create_string_buffer(n)


class Proofs:
    """The ``Authorization`` (and ``DPoP``) headers of one request to the app's own API (#29,
    PROTOCOL.md "DPoP"): ``Bearer <token>`` for a bearer session; for a session bound to a key,
    ``DPoP <token>`` with a proof from ``user.dpop_proof`` for the request's method and URL,
    carrying the origin's last nonce (``NONCES``) when it gave one."""

    def __init__(self, user: User) -> None:
        self.user = user

    def headers(self, method: str, url: str, token: str) -> typing.Dict[str, typing.Optional[str]]:
        """The headers to set (None: remove). Raises ``AppError.Storage`` when no proof could
        be signed."""
        proof = dpop_proof(self.user, method.upper(), url, token, NONCES.get(url))
        if proof is None:
            return {"Authorization": f"Bearer {token}", "DPoP": None}
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    def answered(self, url: str, status: int, headers: typing.Mapping[str, str]) -> bool:
        """Keeps the answer's ``DPoP-Nonce``; True when it is a nonce challenge (a 401 or 400
        whose ``WWW-Authenticate`` says ``use_dpop_nonce``) to answer by one more try."""
        nonce = headers.get("DPoP-Nonce") or headers.get("dpop-nonce")
        if not nonce:
            return False
        NONCES.put(url, nonce)
        challenge = headers.get("WWW-Authenticate") or headers.get("www-authenticate") or ""
        return status in (400, 401) and "use_dpop_nonce" in challenge


def set_headers(target: typing.MutableMapping[str, str], headers: typing.Dict[str, typing.Optional[str]]) -> None:
    """Writes ``Proofs.headers`` into a request's headers."""
    for name, value in headers.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


class _Flight:
    """One refresh made after a 401: its outcome, and the asyncio waiters of other loops."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: typing.Optional[BaseException] = None
        self.waiters: typing.List[typing.Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]] = []


def _wake(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


class Refreshes:
    """The refreshes made after a 401, one per refused token: requests that were refused the
    same token join one ``refresh_access_token()``, and a request refused a token the user no
    longer holds makes none (it was replaced meanwhile). A session found ended is remembered
    (one entry per user id), so that every request refused that token raises the same
    ``AppError.SessionExpired``, and the App's session error handler is called once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: typing.Dict[str, typing.Tuple[str, _Flight]] = {}

    def _join(self, user: User, rejected: str) -> typing.Tuple[typing.Optional[_Flight], bool]:
        uid = user.id()
        with self._lock:
            entry = self._flights.get(uid)
            if entry is not None and entry[0] == rejected:
                return entry[1], False
            if user.access_token() != rejected:
                return None, False
            flight = _Flight()
            self._flights[uid] = (rejected, flight)
            return flight, True

    def _finish(self, user: User, flight: _Flight, error: typing.Optional[BaseException]) -> None:
        uid = user.id()
        with self._lock:
            flight.error = error if isinstance(error, Exception) else None
            entry = self._flights.get(uid)
            if entry is not None and entry[1] is flight and not isinstance(error, AppError.SessionExpired):
                del self._flights[uid]
            waiters, flight.waiters = flight.waiters, []
            flight.done.set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:
                pass  # that loop has closed

    def refresh_sync(self, user: User, rejected: str) -> None:
        """Refreshes after a 401 to ``rejected``, or waits for the refresh already made for
        it. Raises what ``refresh_access_token()`` raised."""
        flight, owner = self._join(user, rejected)
        if flight is None:
            return
        if owner:
            error: typing.Optional[BaseException] = None
            try:
                _blocking._run(user.refresh_access_token())
            except BaseException as e:
                error = e
            self._finish(user, flight, error)
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error

    async def refresh_async(self, user: User, rejected: str) -> None:
        """As ``refresh_sync``, awaiting instead of blocking."""
        flight, owner = self._join(user, rejected)
        if flight is None:
            return
        if owner:
            error: typing.Optional[BaseException] = None
            try:
                await user.refresh_access_token()
            except BaseException as e:
                error = e
            self._finish(user, flight, error)
            if error is not None and not isinstance(error, Exception):
                raise error  # cancelled
        else:
            waiter: typing.Optional["asyncio.Future[None]"] = None
            with self._lock:
                if not flight.done.is_set():
                    loop = asyncio.get_running_loop()
                    waiter = loop.create_future()
                    flight.waiters.append((loop, waiter))
            if waiter is not None:
                await waiter
        if flight.error is not None:
            raise flight.error


REFRESHES = Refreshes()
