"""Logging in with each of the five providers, against the real server."""

import json
import time
import uuid

import pytest

from sessionkit import AppError, Credentials, UserState

from conftest import Server, aio, sign_jwt


def unique_email() -> str:
    return f"py-{uuid.uuid4().hex[:12]}@example.com"


@aio
async def test_anonymous_login_and_reuse(server: Server) -> None:
    app = server.app()
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    assert user.provider_type() == "anon-user"
    assert user.state() == UserState.LOGGED_IN
    assert app.current_user() == user
    assert user.access_token() and user.refresh_token()
    again = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    assert again == user
    fresh = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    assert fresh != user
    assert {u.id() for u in app.all_users()} == {user.id(), fresh.id()}


@aio
async def test_email_password_login(server: Server) -> None:
    app = server.app()
    email = unique_email()
    await app.email_password_auth().register_user(email, "correct-horse")
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
    assert user.provider_type() == "local-userpass"
    assert user.profile().email == email
    assert [i.provider_type for i in user.identities()] == ["local-userpass"]
    with pytest.raises(AppError.Service) as err:
        await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="wrong-horse"))
    assert err.value.code == "InvalidPassword"
    assert err.value.http_status == 401


@aio
async def test_api_key_login(server: Server) -> None:
    app = server.app()
    email = unique_email()
    await app.email_password_auth().register_user(email, "correct-horse")
    owner = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
    key = await owner.api_keys().create("ci-script")
    assert key.key and key.name == "ci-script" and not key.disabled
    assert [k.id for k in await owner.api_keys().fetch_all()] == [key.id]
    user = await server.app().log_in(Credentials.API_KEY(key=key.key))
    assert user.id() == owner.id()
    await owner.api_keys().disable(key.id)
    assert (await owner.api_keys().fetch(key.id)).disabled


@aio
async def test_custom_jwt_login(server: Server) -> None:
    app = server.app()
    sub = f"jwt-{uuid.uuid4().hex[:8]}"
    token = sign_jwt({"sub": sub, "exp": int(time.time()) + 600, "name": "Ada"})
    user = await app.log_in(Credentials.JWT(token=token))
    assert user.provider_type() == "custom-token"
    assert user.profile().name == "Ada"
    bad = sign_jwt({"sub": sub, "exp": int(time.time()) + 600}, key="not-the-key")
    with pytest.raises(AppError.Service) as err:
        await app.log_in(Credentials.JWT(token=bad))
    assert err.value.http_status == 401


@aio
async def test_custom_function_login(server: Server) -> None:
    app = server.app()
    payload = json.dumps({"username": f"fn-{uuid.uuid4().hex[:8]}"})
    first = await app.log_in(Credentials.FUNCTION(payload_json=payload))
    assert first.provider_type() == "custom-function"
    second = await server.app().log_in(Credentials.FUNCTION(payload_json=payload))
    assert second.id() == first.id()
    with pytest.raises(AppError.InvalidArgument):
        await app.log_in(Credentials.FUNCTION(payload_json="not json"))


@aio
async def test_call_function_and_request(server: Server) -> None:
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=True))
    assert await user.call_function("sum", 1, 2, 3) == 6
    assert await user.call_function_json("sum", "[1, 2, 3]") == "6"
    response = await user.request("GET", f"/api/client/v2.0/auth/profile")
    assert response.status == 200
    assert json.loads(response.body)["user_id"] == user.id()
