"""Calling the app's own API with requests and the user's session (#15)::

    from sessionkit.requests_auth import UserAuth

    r = requests.get("https://api.example/orders", auth=UserAuth(user))

requests is optional: ``import sessionkit`` works without it; importing this module without it
raises ImportError saying what to install.
"""

from __future__ import annotations

import functools
import typing

try:
    import requests
    import requests.auth
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("sessionkit.requests_auth needs requests: pip install requests") from None

from . import User, blocking
from ._authorized import REFRESHES, Proofs, Tokens, async_user, check_destination, set_headers

__all__ = ["UserAuth"]

_REPLAYED = "_sessionkit_replayed"
_NONCE_RETRIED = "_sessionkit_nonce_retried"


class UserAuth(requests.auth.AuthBase):
    """A ``requests`` auth (``auth=UserAuth(user)``, per request or on a ``Session``) that
    sends the user's access token as ``Authorization: Bearer <token>`` (any such header is
    replaced); for a session bound with DPoP (``AppConfig(dpop=True)``, #29) as
    ``Authorization: DPoP <token>`` with a ``DPoP`` proof for the request (``user.dpop_proof``).

    - DPoP: an answer that asks for a nonce (a 401 or 400 with ``WWW-Authenticate: DPoP
      error="use_dpop_nonce"`` and a ``DPoP-Nonce`` header) is answered by sending the request
      once more with a proof carrying it, without a refresh (the challenge is in the new
      response's ``history``); the last nonce of each origin goes into the next proofs.

    - The token has at least ``min_ttl_secs`` seconds to live (None: 60, the default
      ``refresh_margin_secs``; pass yours if you changed it). While the stored token has that by
      its own ``exp`` and ``iat`` on the device clock, it is read with one synchronous call (no
      event loop, no SDK future); otherwise it is ``user.valid_access_token(min_ttl_secs)``,
      which refreshes first, one refresh however many threads ask at once (the SDK's coalescing).
    - A 401 answer: the token is refreshed once (requests refused the same token share one
      refresh; none is made when the token was replaced meanwhile), then the request is sent
      once more, body included, with the new token; the 401 is in the new response's
      ``history``. A second 401 is returned as the response: never a loop. A body that is a
      stream which cannot be rewound (a generator) is not sent twice: its 401 is returned
      after the refresh.
    - Any other status is returned as the response.

    Raises, with nothing sent: ``AppError.InvalidArgument`` for a URL that is not http(s),
    ``AppError.InsecureUrl`` for plain http to a host that is not a loopback address (unless
    ``allow_insecure_http``). Raises what ``valid_access_token`` and ``refresh_access_token``
    raise: ``AppError.SessionExpired`` when the refresh token was refused (the App's session
    error handler has then been called, once, and the user is logged out),
    ``AppError.ClientUserNotLoggedIn`` (also for a request begun after the session ended: the
    user is logged out), ``AppError.Network``/``Timeout`` when a needed refresh could not be
    made; RuntimeError when called inside a running event loop (the SDK's
    blocking calls refuse there). Never logs the token.

    ``user``: a ``sessionkit.User`` or a ``sessionkit.blocking.User``.
    """

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

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sets the bearer token on ``r`` and hooks its response for the 401 replay."""
        check_destination(r.url or "", self._allow_insecure_http)
        token = self._tokens.sync()
        set_headers(r.headers, self._proofs.headers(r.method or "GET", r.url or "", token))
        position: typing.Optional[int] = None
        tell = getattr(r.body, "tell", None)
        if tell is not None:
            try:
                position = int(tell())
            except (OSError, ValueError):
                position = None
        r.register_hook("response", functools.partial(self._on_response, token, position))  # type: ignore[no-untyped-call]
        return r

    def _on_response(
        self, token: str, position: typing.Optional[int], response: requests.Response, **kwargs: typing.Any
    ) -> requests.Response:
        response = self._answer_nonce(response, position, token, kwargs)
        if response.status_code != 401 or getattr(response.request, _REPLAYED, False):
            return response
        REFRESHES.refresh_sync(self._user, token)
        fresh = self._tokens.sync()
        replayed = self._replay(response, position, fresh, _REPLAYED, kwargs)
        if replayed is None:
            return response
        # The replay's proof may be asked for a nonce in turn (a clock that is off).
        return self._answer_nonce(replayed, position, fresh, kwargs)

    def _answer_nonce(
        self,
        response: requests.Response,
        position: typing.Optional[int],
        token: str,
        kwargs: typing.Dict[str, typing.Any],
    ) -> requests.Response:
        """Keeps the answer's nonce; a nonce challenge to a proof is answered by one more try
        with it (once per request), whose answer is returned (with its nonce kept too)."""
        request = response.request
        challenged = self._proofs.answered(request.url or "", response.status_code, response.headers)
        if not challenged or "DPoP" not in request.headers or getattr(request, _NONCE_RETRIED, False):
            return response
        retried = self._replay(response, position, token, _NONCE_RETRIED, kwargs)
        if retried is None:
            return response
        self._proofs.answered(retried.request.url or "", retried.status_code, retried.headers)
        return retried

    def _replay(
        self,
        response: requests.Response,
        position: typing.Optional[int],
        token: str,
        marker: str,
        kwargs: typing.Dict[str, typing.Any],
    ) -> typing.Optional[requests.Response]:
        """Sends ``response``'s request once more with ``token`` (and a new proof), marked with
        ``marker``; None when its body is a stream that cannot be sent twice."""
        request = response.request
        body = request.body
        if body is not None and not isinstance(body, (bytes, str)):
            seek = getattr(body, "seek", None)
            if seek is None or position is None:
                return None  # a stream the first attempt has read
            seek(position)
        response.content  # noqa: B018 - read, so that the connection can be reused
        response.close()
        replay = request.copy()
        set_headers(replay.headers, self._proofs.headers(replay.method or "GET", replay.url or "", token))
        for flag in (_REPLAYED, _NONCE_RETRIED):
            if getattr(request, flag, False):
                setattr(replay, flag, True)
        setattr(replay, marker, True)
        # The adapter's send, as requests' own HTTPDigestAuth replays: no hooks run for it.
        second: requests.Response = response.connection.send(replay, **kwargs)
        second.history = [*response.history, response]
        second.request = replay
        return second
