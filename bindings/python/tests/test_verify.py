"""sessionkit.verify_access_token (#15) against the real server's JWKS: an app whose access
tokens are signed with a key pair (`access_token_algorithm`), verified offline as a backend
would."""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys
import time
from typing import Any, Dict

import pytest

import sessionkit
import sk_server
from sessionkit import AccessTokenError, Credentials, verify_access_token

from conftest import APP_ID, CONFIG, NO_RATE_LIMITS, Issuer, Server, _server_bin, aio, start_server


def _segment(token: str, i: int) -> Dict[str, Any]:
    raw = token.split(".")[i]
    return dict(json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))))


async def _token(server: Server) -> str:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    token = user.access_token()
    assert token is not None
    return token


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
@aio
async def test_a_valid_token_verifies_and_gives_its_claims(algorithm: str) -> None:
    with start_server(app_extra=f'access_token_algorithm = "{algorithm}"') as server:
        user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
        token = user.access_token()
        assert token is not None and _segment(token, 0)["alg"] == algorithm
        claims = verify_access_token(token, base_url=server.base_url, app_id=APP_ID)
        assert claims["sub"] == user.id()
        assert claims["iss"] == APP_ID and claims["aud"] in (APP_ID, [APP_ID])
        assert claims["exp"] > time.time()
        # The same with the JWKS URL named, and the issuer and audience given.
        jwks = f"{server.base_url}/api/client/v2.0/app/{APP_ID}/.well-known/jwks.json"
        again = verify_access_token(token, jwks_url=jwks, audience=APP_ID, issuer=APP_ID)
        assert again == claims


@aio
async def test_wrong_audience_issuer_forged_and_malformed_tokens_are_refused() -> None:
    with start_server(app_extra='access_token_algorithm = "ES256"') as server:
        token = await _token(server)
        verify = functools.partial(verify_access_token, base_url=server.base_url, app_id=APP_ID)
        with pytest.raises(AccessTokenError) as err:
            verify(token, audience="another-app")
        assert err.value.reason == "audience"
        with pytest.raises(AccessTokenError) as err:
            verify(token, issuer="another-issuer")
        assert err.value.reason == "issuer"
        # Forged: another subject under the real header and signature.
        header, payload, signature = token.split(".")
        claims = _segment(token, 1)
        claims["sub"] = "someone-else"
        forged = ".".join([header, sk_server.b64url(json.dumps(claims).encode()), signature])
        with pytest.raises(AccessTokenError) as err:
            verify(forged)
        assert err.value.reason == "signature"
        assert forged not in str(err.value) and forged not in repr(err.value)
        # HS256 (anyone who knows a key could sign it), even with the right kid.
        kid = _segment(token, 0)["kid"]
        hs = sk_server.b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        with pytest.raises(AccessTokenError) as err:
            verify(f"{hs}.{payload}.{signature}")
        assert err.value.reason == "signature"
        with pytest.raises(AccessTokenError) as err:
            verify("not-a-jwt")
        assert err.value.reason == "malformed"


@aio
async def test_an_expired_token_is_refused_within_leeway_accepted() -> None:
    with start_server(access=1, app_extra='access_token_algorithm = "ES256"') as server:
        token = await _token(server)
        time.sleep(2.2)  # exp is iat + 1 s, in whole seconds
        with pytest.raises(AccessTokenError) as err:
            verify_access_token(token, base_url=server.base_url, app_id=APP_ID, leeway_secs=1)
        assert err.value.reason == "expired"
        # The default leeway is 60 s.
        claims = verify_access_token(token, base_url=server.base_url, app_id=APP_ID)
        assert claims["exp"] < time.time()


@aio
async def test_a_rotated_key_is_fetched_on_its_unknown_kid_rate_limited() -> None:
    with start_server(app_extra='access_token_algorithm = "ES256"') as server:
        assert server.process is not None
        verify = functools.partial(
            verify_access_token, base_url=server.base_url, app_id=APP_ID, refetch_interval_secs=2.0
        )
        old = await _token(server)
        verify(old)  # the JWKS is fetched and cached
        config = f"{server.process.dir}/server.toml"
        rotate = subprocess.run(
            [str(_server_bin()), "--config", config, "keys", "rotate", "--app", APP_ID],
            capture_output=True, text=True, timeout=30,
        )
        assert rotate.returncode == 0, rotate.stderr
        # A second server on the same database signs with the new key at once.
        data_dir = f"{server.process.dir}/data"
        template = CONFIG.replace('data_dir = "{data_dir}"', f'data_dir = "{data_dir}"')
        with sk_server.ServerProcess(
            _server_bin(), template, prefix="sessionkit-pytest-b-", admin_public="p", admin_private="q",
            app_id=APP_ID, jwt_key="k", access=1800, refresh=86400,
            app_extra='access_token_algorithm = "ES256"', providers_extra="",
            rate_limits=NO_RATE_LIMITS,
        ) as second:
            new = await _token(Server(second.base_url))
        assert _segment(new, 0)["kid"] != _segment(old, 0)["kid"]
        # The first server sees the new kid and reloads its keys at once (docs/SERVER.md).
        sk_server.http("GET", f"{server.base_url}/api/client/v2.0/auth/profile", None, new)
        jwks = f"{server.base_url}/api/client/v2.0/app/{APP_ID}/.well-known/jwks.json"
        deadline = time.monotonic() + 10
        while _segment(new, 0)["kid"] not in [k["kid"] for k in sk_server.http("GET", jwks)[1]["keys"]]:
            assert time.monotonic() < deadline, "the server did not publish the rotated key"
            time.sleep(0.05)
        # Within the refetch interval of the last fetch, an unknown kid makes no request.
        with pytest.raises(AccessTokenError) as err:
            verify(new)
        assert err.value.reason == "unknown_key"
        time.sleep(2.1)
        assert verify(new)["sub"] == _segment(new, 1)["sub"]
        assert verify(old)["sub"] == _segment(old, 1)["sub"]  # still published


def test_without_pyjwt_the_package_imports_and_the_call_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['jwt'] = None\n"
        "import sessionkit\n"
        "try:\n"
        "    sessionkit.verify_access_token('a.b.c', base_url='http://127.0.0.1:1', app_id='x')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'sessionkit[verify]'" in out.stdout


def test_missing_arguments_are_a_value_error() -> None:
    with pytest.raises(ValueError):
        verify_access_token("a.b.c", app_id=None)
    with pytest.raises(ValueError):
        verify_access_token("a.b.c", jwks_url="http://127.0.0.1:1/jwks")  # no issuer or audience
    assert sessionkit.AccessTokenError is AccessTokenError


@aio
async def test_no_key_published_and_an_unreachable_jwks_are_told_apart() -> None:
    with start_server(app_extra='access_token_algorithm = "ES256"') as server:
        token = await _token(server)
    with start_server() as hs256:  # an HS256 app publishes an empty key set
        with pytest.raises(AccessTokenError) as err:
            verify_access_token(token, base_url=hs256.base_url, app_id=APP_ID)
        assert err.value.reason == "unknown_key"
    with pytest.raises(AccessTokenError) as err:
        verify_access_token(token, jwks_url="http://127.0.0.1:9/jwks", app_id=APP_ID, timeout_secs=2)
    assert err.value.reason == "jwks_unavailable"
    assert type(err.value).__module__ == "sessionkit"


@aio
async def test_a_token_from_a_server_whose_clock_is_ahead_verifies_by_default() -> None:
    # The server's clock a few seconds ahead: its tokens' iat is in this machine's future.
    with start_server(app_extra='access_token_algorithm = "ES256"') as server:
        verify = functools.partial(verify_access_token, base_url=server.base_url, app_id=APP_ID)
        server.advance_clock(5)
        token = await _token(server)
        assert _segment(token, 1)["iat"] > time.time() + 2
        assert verify(token)["sub"] == _segment(token, 1)["sub"]
        # Without leeway that is a token not valid yet, said as such.
        with pytest.raises(AccessTokenError) as err:
            verify(token, leeway_secs=0)
        assert err.value.reason == "not_yet_valid"
        assert token not in str(err.value) + repr(err.value)


def test_iat_ahead_within_the_leeway_is_accepted_nbf_far_ahead_is_not_yet_valid(
    issuer: Issuer,
) -> None:
    verify = functools.partial(
        verify_access_token, jwks_url=f"{issuer.url}/jwks", audience="backend", issuer=issuer.url
    )

    def mint(**claims: Any) -> str:
        status, doc = sk_server.http(
            "POST",
            f"{issuer.url}/control/mint",
            {"claims": {"sub": "u1", "aud": "backend", **claims}, "alg": "ES256"},
        )
        assert status == 200, doc
        return str(doc["token"])

    now = int(time.time())
    for ahead in (1, 10, 30):
        assert verify(mint(iat=now + ahead))["sub"] == "u1", ahead
    with pytest.raises(AccessTokenError) as err:
        verify(mint(iat=now, nbf=now + 3600, exp=now + 7200))
    assert err.value.reason == "not_yet_valid"
    with pytest.raises(AccessTokenError) as err:
        verify(mint(iat=now + 3600, exp=now + 7200))
    assert err.value.reason == "not_yet_valid"
    # exp gets the same leeway: ten seconds ago is still accepted, two minutes ago is not.
    assert verify(mint(iat=now - 600, exp=now - 10))["sub"] == "u1"
    with pytest.raises(AccessTokenError) as err:
        verify(mint(iat=now - 600, exp=now - 120))
    assert err.value.reason == "expired"


@aio
async def test_a_dpop_bound_token_needs_a_proof_from_its_key_for_this_request() -> None:
    # #29: the proofs here are PyJWT's (cryptography's P-256 key), the token the real server's
    # for a session bound to that key (`dpop = "required"`).
    import hashlib
    import urllib.request
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    def new_key() -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        n = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}
        return key, jwk

    key, jwk = new_key()

    def proof(method: str, url: str, token: Any = None, iat: Any = None, signer: Any = None) -> str:
        claims: Dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": url,
            "iat": int(time.time()) if iat is None else iat,
        }
        if token is not None:
            claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
        k, j = signer or (key, jwk)
        return str(jwt.encode(claims, k, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": j}))

    with start_server(app_extra='access_token_algorithm = "ES256"\ndpop = "required"') as server:
        login_url = f"{server.base_url}/api/client/v2.0/app/{APP_ID}/auth/providers/anon-user/login"
        request = urllib.request.Request(
            login_url,
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json", "DPoP": proof("POST", login_url)},
        )
        with urllib.request.urlopen(request) as answer:
            token = json.loads(answer.read())["access_token"]
        assert _segment(token, 1)["cnf"]["jkt"]
        verify = functools.partial(verify_access_token, base_url=server.base_url, app_id=APP_ID)
        url = "https://api.example.com/orders"

        def refused(**kw: Any) -> str:
            with pytest.raises(AccessTokenError) as e:
                verify(token, **kw)
            assert e.value.reason == "dpop", e.value
            assert token not in str(e.value)
            return str(e.value)

        # Bound: nothing passes without the request's proof.
        assert "method, url and DPoP header" in refused()
        good = proof("GET", url, token)
        claims = verify(token, method="GET", url=url + "?page=2", dpop=good)
        assert claims["sub"] and claims["cnf"]["jkt"]
        assert "replay" in refused(method="GET", url=url, dpop=good)
        refused(method="GET", url=url, dpop=proof("GET", url, token, signer=new_key()))
        refused(method="GET", url="https://api.example.com/other", dpop=proof("GET", url, token))
        refused(method="POST", url=url, dpop=proof("GET", url, token))
        refused(method="GET", url=url, dpop=proof("GET", url))  # no ath
        refused(method="GET", url=url, dpop=proof("GET", url, "another token"))
        refused(method="GET", url=url, dpop=proof("GET", url, token, iat=int(time.time()) - 120))
        refused(method="GET", url=url, dpop="not a jwt")
