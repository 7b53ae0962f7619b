"""Calling the app's own API with httpx and the user's session (#15)::

    from sessionkit.httpx_auth import UserAuth

    async with httpx.AsyncClient(auth=UserAuth(user)) as client:
        r = await client.get("https://api.example/orders")

httpx is optional: ``import sessionkit`` works without it; importing this module without it
raises ImportError saying what to install.
"""

from __future__ import annotations

import typing

try:
    import httpx
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("sessionkit.httpx_auth needs httpx: pip install httpx") from None

from . import User, blocking
from ._authorized import REFRESHES, Proofs, Tokens, async_user, check_destination, set_headers

__all__ = ["UserAuth"]


class UserAuth(httpx.Auth):
    """An ``httpx.Auth`` for ``httpx.Client`` and ``httpx.AsyncClient`` that sends the user's
    access token as ``Authorization: Bearer <token>`` (any such header is replaced); for a
    session bound with DPoP (``AppConfig(dpop=True)``, #29) as ``Authorization: DPoP <token>``
    with a ``DPoP`` proof for the request (``user.dpop_proof``).

    - DPoP: an answer that asks for a nonce (a 401 or 400 with ``WWW-Authenticate: DPoP
      error="use_dpop_nonce"`` and a ``DPoP-Nonce`` header) is answered by sending the request
      once more with a proof carrying it, without a refresh; the last nonce of each origin goes
      into the next proofs.

    - The token has at least ``min_ttl_secs`` seconds to live (None: 60, the default
      ``refresh_margin_secs``; pass yours if you changed it). While the stored token has that by
      its own ``exp`` and ``iat`` on the device clock, it is read with one synchronous call (no
      event loop, no SDK future); otherwise it is ``user.valid_access_token(min_ttl_secs)``,
      which refreshes first, one refresh however many requests ask at once (the SDK's coalescing).
    - A 401 answer: the token is refreshed once (requests refused the same token share one
      refresh; none is made when the token was replaced meanwhile), then the request is sent
      once more, body included (it is read into memory for that), with the new token. A second
      401 is returned as the response: never a loop.
    - Any other status is returned as the response.

    Raises, with nothing sent: ``AppError.InvalidArgument`` for a URL that is not http(s),
    ``AppError.InsecureUrl`` for plain http to a host that is not a loopback address (unless
    ``allow_insecure_http``). Raises what ``valid_access_token`` and ``refresh_access_token``
    raise: ``AppError.SessionExpired`` when the refresh token was refused (the App's session
    error handler has then been called, once, and the user is logged out),
    ``AppError.ClientUserNotLoggedIn`` (also for a request begun after the session ended: the
    user is logged out), ``AppError.Network``/``Timeout`` when a needed refresh could not be
    made. With ``httpx.Client`` (synchronous) it raises RuntimeError when called
    inside a running event loop: use ``httpx.AsyncClient`` there. Never logs the token.

    ``user``: a ``sessionkit.User`` or a ``sessionkit.blocking.User``.
    """

    requires_request_body = True

    def __init__(
        self,
        user: typing.Union[User, blocking.User],
        *,
        min_ttl_secs: typing.Optional[int] = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self._user = async_user(user)
        self._tokens = Tokens(self._user, min_ttl_secs)
        self._proofs = Proofs(self._user)
        self._allow_insecure_http = allow_insecure_http

    def __repr__(self) -> str:
        return f"UserAuth(user={self._user!r})"

    def _authorize(self, request: httpx.Request, token: str) -> None:
        url = str(request.url)
        set_headers(request.headers, self._proofs.headers(request.method, url, token))

    def _challenged(self, request: httpx.Request, response: httpx.Response) -> bool:
        return self._proofs.answered(str(request.url), response.status_code, response.headers)

    def sync_auth_flow(self, request: httpx.Request) -> typing.Generator[httpx.Request, httpx.Response, None]:
        """httpx's synchronous flow: the token (and proof); on a 401 one refresh and one replay;
        a nonce challenge, first or after the replay, answered by one more try."""
        check_destination(str(request.url), self._allow_insecure_http)
        request.read()  # kept for the replay
        token = self._tokens.sync()
        self._authorize(request, token)
        response = yield request
        nonce_tried = False
        if self._challenged(request, response):
            nonce_tried = True
            self._authorize(request, token)
            response = yield request
        if response.status_code != 401:
            return
        REFRESHES.refresh_sync(self._user, token)
        token = self._tokens.sync()
        self._authorize(request, token)
        response = yield request
        if not nonce_tried and self._challenged(request, response):
            self._authorize(request, token)
            response = yield request
            self._challenged(request, response)  # keeps a nonce it brings

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> typing.AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx's asyncio flow: as the synchronous one, awaiting."""
        check_destination(str(request.url), self._allow_insecure_http)
        await request.aread()  # kept for the replay
        token = await self._tokens.asynchronous()
        self._authorize(request, token)
        response = yield request
        nonce_tried = False
        if self._challenged(request, response):
            nonce_tried = True
            self._authorize(request, token)
            response = yield request
        if response.status_code != 401:
            return
        await REFRESHES.refresh_async(self._user, token)
        token = await self._tokens.asynchronous()
        self._authorize(request, token)
        response = yield request
        if not nonce_tried and self._challenged(request, response):
            self._authorize(request, token)
            response = yield request
            self._challenged(request, response)  # keeps a nonce it brings
