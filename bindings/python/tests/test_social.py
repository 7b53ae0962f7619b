"""Social sign-in (#14) against the real server, with tokens minted by the loopback test issuer
(tests/src/issuer.rs) that the server is configured to trust."""

from __future__ import annotations

from typing import Dict

import pytest

from sessionkit import AppError, Credentials, UserState

from conftest import Issuer, aio, start_server


@aio
async def test_google_id_token_logs_in_and_again_as_the_same_user(issuer: Issuer) -> None:
    with start_server(providers_extra=issuer.providers_toml()) as server:
        app = server.app()
        token = issuer.credential("google_id_token", sub="g-ada", email="ada@example.com", name="Ada")
        user = await app.log_in(Credentials.GOOGLE_ID_TOKEN(id_token=token))
        assert user.state() == UserState.LOGGED_IN
        assert user.provider_type() == "oauth2-google"
        assert user.profile().email == "ada@example.com"
        assert user.profile().name == "Ada"
        # Another token for the same subject, without the email: the same account.
        again = await server.app().log_in(
            Credentials.GOOGLE_ID_TOKEN(id_token=issuer.credential("google_id_token", sub="g-ada"))
        )
        assert again.id() == user.id()
        # Another subject: another account.
        other = await server.app().log_in(
            Credentials.GOOGLE_ID_TOKEN(id_token=issuer.credential("google_id_token", sub="g-bob"))
        )
        assert other.id() != user.id()


@aio
async def test_apple_token_linked_to_an_anonymous_user_logs_in_as_that_user(issuer: Issuer) -> None:
    with start_server(providers_extra=issuer.providers_toml()) as server:
        app = server.app()
        anon = await app.log_in(Credentials.ANONYMOUS(reuse=False))
        linked = Credentials.APPLE_ID_TOKEN(id_token=issuer.credential("apple_id_token", sub="apple-1"))
        await anon.link_credentials(linked)
        assert sorted(i.provider_type for i in anon.identities()) == ["anon-user", "oauth2-apple"]
        # On another device (a fresh App), a new Apple token for the same subject.
        later = Credentials.APPLE_ID_TOKEN(id_token=issuer.credential("apple_id_token", sub="apple-1"))
        user = await server.app().log_in(later)
        assert user.id() == anon.id()
        assert user.provider_type() == "oauth2-apple"


@pytest.mark.parametrize(
    "spec",
    [{"aud": "wrong"}, {"time": "expired"}, {"signature": "tampered"}, {"signature": "HS256-public-key"}],
    ids=["wrong-audience", "expired", "tampered", "hs256-with-public-key"],
)
@aio
async def test_a_refused_google_token_raises_service_auth_error(issuer: Issuer, spec: Dict[str, str]) -> None:
    with start_server(providers_extra=issuer.providers_toml()) as server:
        app = server.app()
        token = issuer.credential("google_id_token", sub="g-eve", **spec)
        with pytest.raises(AppError.Service) as err:
            await app.log_in(Credentials.GOOGLE_ID_TOKEN(id_token=token))
        assert err.value.code == "AuthError"
        assert err.value.http_status == 401
        assert token not in str(err.value) and token not in repr(err.value)
        assert app.current_user() is None


@aio
async def test_openid_connect_and_facebook_log_in(issuer: Issuer) -> None:
    with start_server(providers_extra=issuer.providers_toml()) as server:
        oidc = await server.app().log_in(
            Credentials.OIDC_ID_TOKEN(provider="conformance", id_token=issuer.credential("oidc_id_token", sub="o-1"))
        )
        assert oidc.provider_type() == "oidc-conformance"
        fb = await server.app().log_in(
            Credentials.FACEBOOK_ACCESS_TOKEN(
                access_token=issuer.credential("facebook_access_token", sub="fb-1", name="Fay")
            )
        )
        assert fb.provider_type() == "oauth2-facebook"
        assert fb.profile().name == "Fay"


def test_social_credentials_redact_their_secrets() -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"
    cases = [
        (Credentials.GOOGLE_ID_TOKEN(id_token=secret), "Credentials.GOOGLE_ID_TOKEN(id_token=<redacted>)"),
        (Credentials.GOOGLE_AUTH_CODE(auth_code=secret), "Credentials.GOOGLE_AUTH_CODE(auth_code=<redacted>)"),
        (Credentials.APPLE_ID_TOKEN(id_token=secret), "Credentials.APPLE_ID_TOKEN(id_token=<redacted>)"),
        (
            Credentials.FACEBOOK_ACCESS_TOKEN(access_token=secret),
            "Credentials.FACEBOOK_ACCESS_TOKEN(access_token=<redacted>)",
        ),
        (
            Credentials.OIDC_ID_TOKEN(provider="corp", id_token=secret),
            "Credentials.OIDC_ID_TOKEN(provider='corp', id_token=<redacted>)",
        ),
    ]
    for credentials, shown in cases:
        assert repr(credentials) == shown
        assert str(credentials) == shown
        assert secret not in f"{credentials!r} {credentials} {[credentials]}"
