"""Verifying SessionKit access tokens in a backend (#15): ``sessionkit.verify_access_token``.

The JOSE work is PyJWT's (``jwt.PyJWKClient`` fetches and caches the JWKS and picks the key by
``kid``; ``jwt.decode`` checks the signature and the claims), with ``cryptography`` for ES256
and RS256. Both are the optional extra ``sessionkit[verify]``: this module imports them only
when a token is verified, so ``import sessionkit`` works without them.
"""

from __future__ import annotations

import threading
import typing

__all__ = ["verify_access_token", "AccessTokenError"]

# The algorithms sessionkit-server signs access tokens with (docs/PROTOCOL.md, Tokens). HS256
# is never accepted: it would let anyone holding a public key forge tokens.
_ALGORITHMS = ["ES256", "RS256"]
# The server serves its JWKS with Cache-Control: max-age=300.
_JWKS_LIFESPAN_SECS = 300.0
# Clock skew tolerated on exp, nbf and iat by default: the server's own leeway for the tokens it
# verifies (docs/PROTOCOL.md, Tokens). Without it a token from a server whose clock is a second
# ahead is refused (iat in the future).
DEFAULT_LEEWAY_SECS = 60.0


# Every reason AccessTokenError gives, for type checkers.
Reason = typing.Literal[
    "expired",
    "not_yet_valid",
    "audience",
    "issuer",
    "signature",
    "unknown_key",
    "malformed",
    "jwks_unavailable",
    "dpop",
]


class AccessTokenError(Exception):
    """An access token was not accepted by ``verify_access_token``.

    ``reason`` says why, one of: ``"expired"`` (past ``exp``, beyond the leeway),
    ``"not_yet_valid"`` (``nbf`` or ``iat`` ahead of this machine's clock by more than the
    leeway: a clock far off on either side, or a token not meant for use yet),
    ``"audience"`` (``aud`` is not the expected one), ``"issuer"`` (``iss`` is not the expected
    one), ``"signature"`` (forged or tampered, or an algorithm other than ES256/RS256),
    ``"unknown_key"`` (its ``kid`` is not in the JWKS, even after a refetch), ``"malformed"``
    (not a JWT, or a required claim missing), ``"jwks_unavailable"`` (the JWKS could not be
    fetched: transient, not the token's fault), ``"dpop"`` (a DPoP-bound token without a valid
    proof from its key for this request: missing, wrong, replayed or too old; RFC 9449). The
    message never contains the token.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason

    def __repr__(self) -> str:
        return f"AccessTokenError(reason={self.reason!r}, message={str(self)!r})"


def _import_jwt() -> typing.Any:
    try:
        import jwt  # noqa: F401
        import cryptography  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "sessionkit.verify_access_token needs PyJWT and cryptography: "
            "pip install 'sessionkit[verify]'  (or: pip install 'PyJWT>=2.10' cryptography)"
        ) from e
    return jwt


# One JWKS client per (URL, refetch interval): its cache lives as long as the process.
_clients: typing.Dict[typing.Tuple[str, float], typing.Any] = {}
_clients_lock = threading.Lock()


def _client(jwt: typing.Any, jwks_url: str, refetch_interval_secs: float, timeout_secs: float) -> typing.Any:
    key = (jwks_url, float(refetch_interval_secs))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = jwt.PyJWKClient(
                jwks_url,
                cache_jwk_set=True,
                lifespan=_JWKS_LIFESPAN_SECS,
                timeout=timeout_secs,
                cooldown_duration=refetch_interval_secs,
            )
            _clients[key] = client
        return client


# A DPoP proof's iat may be this old, or this far ahead (seconds): the server's own window
# (docs/PROTOCOL.md, "DPoP").
DPOP_MAX_AGE_SECS = 60
DPOP_FUTURE_SECS = 5


class _SeenProofs:
    """The proofs accepted in this process, each kept until it could no longer pass the ``iat``
    check: a second use is a replay (RFC 9449 section 11.1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: typing.Dict[str, float] = {}

    def first_use(self, key: str, until: float, now: float) -> bool:
        with self._lock:
            if len(self._until) > 10000:
                self._until = {k: u for k, u in self._until.items() if u > now}
            if self._until.get(key, 0) > now:
                return False
            self._until[key] = until
            return True


_seen = _SeenProofs()


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _target(url: str) -> typing.Optional[str]:
    """``url`` without query and fragment, scheme and host lower-case, a default port dropped
    (RFC 3986 sections 6.2.2 and 6.2.3), for comparing ``htu``."""
    import urllib.parse

    try:
        u = urllib.parse.urlsplit(url)
        port = u.port
    except ValueError:
        return None
    if u.scheme.lower() not in ("http", "https") or not u.hostname:
        return None
    default = {"http": 80, "https": 443}[u.scheme.lower()]
    netloc = u.hostname.lower() + (f":{port}" if port not in (None, default) else "")
    return f"{u.scheme.lower()}://{netloc}{u.path}"


def _check_dpop(
    jwt: typing.Any, token: str, jkt: str, method: str, url: str, proof: str, now: float
) -> None:
    """Checks ``proof`` for a request ``method`` ``url`` made with ``token``, bound to ``jkt``
    (RFC 9449 section 4.3); raises AccessTokenError("dpop", ...)."""
    import hashlib

    def refuse(why: str) -> typing.NoReturn:
        raise AccessTokenError("dpop", f"invalid DPoP proof: {why}")

    try:
        header = jwt.get_unverified_header(proof)
    except jwt.PyJWTError:
        refuse("not a JWT")
    if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256":
        refuse("typ must be dpop+jwt and alg ES256")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or "d" in jwk or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        refuse("its jwk must be a P-256 public key")
    if not all(isinstance(jwk.get(m), str) for m in ("x", "y")):
        refuse("its jwk must be a P-256 public key")
    canonical = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (jwk["x"], jwk["y"])
    if _b64url(hashlib.sha256(canonical.encode()).digest()) != jkt:
        refuse("it is not made with the key the access token is bound to (cnf.jkt)")
    try:
        claims = jwt.decode(
            proof,
            key=jwt.PyJWK(jwk, algorithm="ES256").key,
            algorithms=["ES256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        refuse("its signature does not verify with its jwk")
    if claims.get("htm") != method.upper():
        refuse("it is for another HTTP method")
    expected = _target(url)
    if expected is None or _target(str(claims.get("htu", ""))) != expected:
        refuse("it is for another URL")
    if claims.get("ath") != _b64url(hashlib.sha256(token.encode()).digest()):
        refuse("its ath is not the hash of this access token")
    iat = claims.get("iat")
    if not isinstance(iat, int) or not (now - DPOP_MAX_AGE_SECS <= iat <= now + DPOP_FUTURE_SECS):
        refuse(f"its iat is not within {DPOP_MAX_AGE_SECS} s of this machine's clock")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        refuse("it has no jti")
    if not _seen.first_use(f"{jkt}:{jti}", now + DPOP_MAX_AGE_SECS + DPOP_FUTURE_SECS, now):
        refuse("it was used before (a replay)")


def verify_access_token(
    token: str,
    *,
    jwks_url: typing.Optional[str] = None,
    base_url: typing.Optional[str] = None,
    app_id: typing.Optional[str] = None,
    audience: typing.Optional[str] = None,
    issuer: typing.Optional[str] = None,
    leeway_secs: float = DEFAULT_LEEWAY_SECS,
    refetch_interval_secs: float = 30,
    timeout_secs: float = 10,
    method: typing.Optional[str] = None,
    url: typing.Optional[str] = None,
    dpop: typing.Optional[str] = None,
) -> typing.Dict[str, typing.Any]:
    """Verifies a SessionKit access token offline, for a backend, and returns its claims.

    The keys come from the app's JWKS: ``jwks_url``, or
    ``{base_url}/api/client/v2.0/app/{app_id}/.well-known/jwks.json`` (docs/PROTOCOL.md,
    Tokens; the server must sign with ``access_token_algorithm = "ES256"`` or ``"RS256"``). The
    JWKS is fetched once and cached per URL for 300 s (the server's ``max-age``); a token whose
    ``kid`` is not in the cache makes one refetch (a rotated key), at most once per
    ``refetch_interval_secs`` seconds per URL, so made-up ``kid``s cannot make this process
    hammer the server. The token must be signed with ES256 or RS256 by that key, be before
    ``exp`` and not before ``nbf`` (when present) nor ``iat``, each with ``leeway_secs`` seconds
    of tolerance for clock skew between the server and this machine (default 60, as the server
    allows for tokens it verifies; RFC 7519 section 4.1), and carry ``iss`` equal to
    ``issuer`` and ``aud`` containing ``audience``; both default to ``app_id`` (the server sets
    both to the app id), and one of ``issuer``/``app_id`` and one of ``audience``/``app_id`` is
    required. ``timeout_secs``: for fetching the JWKS, in seconds.

    A DPoP-bound token (its ``cnf.jkt``, docs/PROTOCOL.md "DPoP", RFC 9449) is accepted only with
    the request's ``method``, ``url`` (as the client sent it; query ignored) and ``dpop`` (the
    value of its ``DPoP`` header): a proof signed by the bound key (ES256), for that method and
    URL, with ``ath`` the hash of this token, ``iat`` within 60 s back and 5 s ahead, and a
    ``jti`` not seen before in this process (several processes behind one URL should also keep
    ``jti``s somewhere shared). The caller checks that the request's ``Authorization`` scheme
    was ``DPoP``. A token that is not bound needs none of the three.

    Returns the claims as a dict (``sub`` is the user id; ``exp``/``iat`` in Unix seconds;
    ``user_data`` the custom user data when there is some).

    Raises ``AccessTokenError`` (``.reason``: ``expired``, ``not_yet_valid``, ``audience``,
    ``issuer``, ``signature``, ``unknown_key``, ``malformed``, ``jwks_unavailable``, ``dpop``) when the
    token is not accepted, ``ValueError`` for missing arguments, and ``ImportError`` saying what to install
    when PyJWT or cryptography is missing (``pip install 'sessionkit[verify]'``). Built on
    PyJWT's ``PyJWKClient`` and ``jwt.decode``. Never logs the token, nor puts it in an error.
    """
    if not isinstance(token, str):
        raise TypeError(f"verify_access_token(): token must be a str, not {type(token).__name__}")
    if jwks_url is None:
        if not base_url or not app_id:
            raise ValueError("verify_access_token(): give jwks_url, or base_url and app_id")
        jwks_url = f"{base_url.rstrip('/')}/api/client/v2.0/app/{app_id}/.well-known/jwks.json"
    audience = audience if audience is not None else app_id
    issuer = issuer if issuer is not None else app_id
    if audience is None or issuer is None:
        raise ValueError("verify_access_token(): give audience and issuer, or app_id")
    jwt = _import_jwt()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AccessTokenError("malformed", "the access token is not a JWT") from None
    if header.get("alg") not in _ALGORITHMS:
        raise AccessTokenError(
            "signature", f"the access token's algorithm {header.get('alg')!r} is not ES256 or RS256"
        )
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise AccessTokenError("malformed", "the access token's header has no kid")
    client = _client(jwt, jwks_url, refetch_interval_secs, timeout_secs)
    try:
        key = client.get_signing_key(kid)
    except jwt.PyJWKClientConnectionError as e:
        raise AccessTokenError("jwks_unavailable", f"cannot fetch the JWKS from {jwks_url}: {e}") from None
    except (jwt.PyJWKClientError, jwt.PyJWKSetError):
        # An empty set too: an HS256 app publishes no keys (its access_token_algorithm).
        raise AccessTokenError(
            "unknown_key", f"no key {kid!r} in the JWKS at {jwks_url} (after a refetch)"
        ) from None
    try:
        claims: typing.Dict[str, typing.Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=_ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=leeway_secs,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AccessTokenError("expired", "the access token has expired") from None
    except jwt.ImmatureSignatureError:
        # PyJWT's error for nbf, and for iat, in the future beyond the leeway.
        raise AccessTokenError(
            "not_yet_valid",
            f"the access token is not valid yet (nbf or iat more than {leeway_secs:g} s ahead of "
            "this machine's clock; check the clocks, or raise leeway_secs)",
        ) from None
    except jwt.InvalidAudienceError:
        raise AccessTokenError("audience", f"the access token is not for audience {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise AccessTokenError("issuer", f"the access token was not issued by {issuer!r}") from None
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        raise AccessTokenError("signature", "the access token's signature is invalid") from None
    except jwt.MissingRequiredClaimError as e:
        raise AccessTokenError("malformed", f"the access token lacks the claim {e.claim!r}") from None
    except jwt.PyJWTError as e:
        raise AccessTokenError("malformed", f"the access token was not accepted: {type(e).__name__}") from None
    cnf = claims.get("cnf")
    if isinstance(cnf, dict) and "jkt" in cnf:
        if not (isinstance(method, str) and isinstance(url, str) and isinstance(dpop, str)):
            raise AccessTokenError(
                "dpop",
                "the access token is DPoP-bound: give the request's method, url and DPoP header",
            )
        import time

        _check_dpop(jwt, token, str(cnf["jkt"]), method, url, dpop, time.time())
    return claims


# Shown as the public names in tracebacks and reprs, as the generated classes are.
AccessTokenError.__module__ = "sessionkit"
verify_access_token.__module__ = "sessionkit"
