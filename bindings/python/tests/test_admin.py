"""sessionkit.admin.AdminClient (#15) against the real server's admin API."""

from __future__ import annotations

import uuid
from typing import List, Tuple

import pytest

import sessionkit
from sessionkit import AppError, Credentials, SessionError, SessionErrorKind, User, UserState
from sessionkit.admin import AdminClient, AdminError

from conftest import ADMIN_PRIVATE, ADMIN_PUBLIC, APP_ID, Server, aio, wait_for


def _admin(server: Server) -> AdminClient:
    return AdminClient(server.base_url, APP_ID, ADMIN_PUBLIC, ADMIN_PRIVATE)


class Handler(sessionkit.SessionErrorHandler):
    def __init__(self) -> None:
        self.calls: List[Tuple[str, SessionErrorKind]] = []

    def on_session_error(self, user: User, error: SessionError) -> None:
        self.calls.append((user.id(), error.kind))


@aio
async def test_revoke_ends_a_logged_in_users_session_at_its_next_refresh(server: Server) -> None:
    app = server.app()
    handler = Handler()
    app.set_session_error_handler(handler)
    email = f"py-{uuid.uuid4().hex[:10]}@example.com"
    await app.email_password_auth().register_user(email, "correct-horse")
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
    admin = _admin(server)
    admin.revoke_sessions(user.id())
    assert user.state() == UserState.LOGGED_IN  # nothing happens until the next refresh
    with pytest.raises(AppError.SessionExpired) as err:
        await user.refresh_access_token()
    assert err.value.kind == SessionErrorKind.SESSION_REVOKED
    await wait_for(lambda: len(handler.calls) >= 1)
    assert handler.calls == [(user.id(), SessionErrorKind.SESSION_REVOKED)]
    assert user.state() == UserState.LOGGED_OUT
    with pytest.raises(AppError.ClientUserNotLoggedIn):
        await user.refresh_access_token()
    assert len(handler.calls) == 1


@aio
async def test_list_find_disable_enable_custom_data_and_delete(server: Server) -> None:
    admin = _admin(server)
    email = f"py-{uuid.uuid4().hex[:10]}@example.com"
    created = admin.create_user(email, "correct-horse")
    uid = created["_id"]
    anon = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    assert {u["_id"] for u in admin.list_users()} == {uid, anon.id()}
    assert [u["_id"] for u in admin.find_users(email=email.upper())] == [uid]
    assert [u["_id"] for u in admin.find_users(provider_type="anon-user")] == [anon.id()]
    assert admin.get_user(uid)["disabled"] is False

    app = server.app()
    admin.disable_user(uid)
    assert admin.get_user(uid)["disabled"] is True
    with pytest.raises(AppError.Service) as refused:
        await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
    assert refused.value.code == "UserDisabled"
    admin.enable_user(uid)
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))

    admin.set_custom_data(uid, {"plan": "pro", "seats": 3})
    assert await user.refresh_custom_data() == {"plan": "pro", "seats": 3}

    admin.delete_user(uid)
    with pytest.raises(AdminError) as err:
        admin.get_user(uid)
    assert err.value.code == "UserNotFound" and err.value.http_status == 404
    with pytest.raises(AdminError) as err:
        admin.revoke_sessions("no-such-user")
    assert err.value.code == "UserNotFound"


@aio
async def test_verify_token_decodes_refuses_forged_and_says_expired(server: Server) -> None:
    admin = _admin(server)
    user = await server.app().log_in(Credentials.ANONYMOUS(reuse=False))
    token = user.access_token()
    assert token is not None
    claims = admin.verify_token(token)
    assert claims is not None and claims["sub"] == user.id()
    head, payload, sig = token.split(".")
    with pytest.raises(AdminError) as err:
        admin.verify_token(f"{head}.{payload}.{sig[:-4]}AAAA")
    assert err.value.http_status == 401 and err.value.code == "InvalidSession"
    server.advance_clock(1801)  # past the access token's 30 minutes
    # The admin token has expired too: the client logs in again by itself.
    assert admin.verify_token(token) is None


@pytest.mark.lifetimes(refresh=86400)
@aio
async def test_refresh_token_lifetime_applies_to_new_sessions(server: Server) -> None:
    admin = _admin(server)
    admin.set_refresh_token_lifetime(3600)
    app = server.app()
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    email = f"py-{uuid.uuid4().hex[:10]}@example.com"
    admin.create_user(email, "correct-horse")
    member = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
    server.advance_clock(3601)
    with pytest.raises(AppError.SessionExpired) as err:
        await member.refresh_access_token()
    assert err.value.kind == SessionErrorKind.TOKEN_EXPIRED
    await user.refresh_access_token()  # anonymous refresh tokens do not expire
    with pytest.raises(AdminError) as bad:
        admin.set_refresh_token_lifetime(0)
    assert bad.value.code == "BadRequest" and bad.value.http_status == 400


def test_a_wrong_key_pair_and_an_unreachable_server_raise_admin_error(server: Server) -> None:
    with pytest.raises(AdminError) as err:
        AdminClient(server.base_url, APP_ID, ADMIN_PUBLIC, "wrong-private").list_users()
    assert err.value.http_status == 401
    assert "wrong-private" not in str(err.value)
    with pytest.raises(AdminError) as err:
        AdminClient("http://127.0.0.1:9", APP_ID, ADMIN_PUBLIC, ADMIN_PRIVATE, timeout_secs=2).list_users()
    assert err.value.code == "Network" and err.value.http_status == 0
    assert ADMIN_PRIVATE not in repr(_admin(server))


# An argon2id hash argon2-cffi made (server/tests/fixtures/legacy-hashes/vectors.json).
_ARGON2_PASSWORD = "correct horse battery staple"
_ARGON2_HASH = "$argon2id$v=19$m=65536,t=3,p=4$jBN4emKrU7ZFsqrx10K8Gg$r3eFJN0Qm7YpLdVMVYUU3+6T1cnAgaAXQeOhklFU+44"


@aio
async def test_import_users_keeps_the_exported_ids_for_the_sdks_logins(server: Server) -> None:
    import time

    from conftest import sign_jwt

    admin = _admin(server)
    tag = uuid.uuid4().hex[:10]
    user_id = uuid.uuid4().hex[:24]  # an ObjectId-shaped id, as App Services exports them
    email = f"py-imp-{tag}@example.com"
    lines = [
        {
            "id": user_id,
            "created_at": "2021-06-01T12:00:00Z",
            "custom_data": {"plan": "pro"},
            "identities": [
                {"provider_type": "local-userpass", "id": uuid.uuid4().hex[:24],
                 "profile_data": {"email": email}, "password_hash": _ARGON2_HASH},
                {"provider_type": "custom-token", "id": f"sub-{tag}"},
            ],
        },
        "",  # a blank line: counted, nothing imported
        '{"id": "x", "colour": 1}',
    ]
    dry = admin.import_users(lines, dry_run=True)
    assert (dry["created"], dry["refused"], dry["dry_run"]) == (1, 1, True)
    assert admin.find_users(email=email) == []
    report = admin.import_users(lines)
    assert (report["created"], report["updated"], report["unchanged"], report["refused"]) == (1, 0, 0, 1)
    assert [r["line"] for r in report["refusals"]] == [3]
    assert "colour" in report["refusals"][0]["reason"]

    app = server.app()
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password=_ARGON2_PASSWORD))
    assert user.id() == user_id
    token = sign_jwt({"sub": f"sub-{tag}", "exp": int(time.time()) + 600})
    again = await app.log_in(Credentials.JWT(token=token))
    assert again.id() == user_id
    assert admin.import_users(lines[:1])["unchanged"] == 1


def test_import_users_splits_batches_and_numbers_lines_as_given(server: Server) -> None:
    admin = _admin(server)
    tag = uuid.uuid4().hex[:8]
    lines = [{"id": f"batch-{tag}-{i}"} for i in range(1203)]
    lines[1100] = {"id": f"batch-{tag}-x", "disabled": "no"}
    report = admin.import_users(lines)
    assert (report["created"], report["refused"]) == (1202, 1)
    assert [r["line"] for r in report["refusals"]] == [1101]


@aio
async def test_events_record_an_sdk_flow_in_order_without_secrets(server: Server) -> None:
    app = server.app()
    email = f"py-{uuid.uuid4().hex[:10]}@example.com"
    await app.email_password_auth().register_user(email, "correct-horse")
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
    with pytest.raises(AppError.Service):
        await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="wrong-horse"))
    refresh = user.refresh_token()
    await user.log_out()
    admin = _admin(server)
    admin.disable_user(user.id())

    events = admin.events()
    assert [e["kind"] for e in events] == [
        "registered", "login", "login_failed", "sessions_revoked", "user_disabled",
    ]
    assert [e["actor"] for e in events] == ["user", "user", "user", "user", "admin"]
    assert events[1]["user_id"] == user.id() and events[1]["ip"] == "127.0.0.1"
    assert events[2]["detail"] == {"provider": "local-userpass", "error": "InvalidPassword"}
    assert [e["kind"] for e in admin.events(kinds=["login_failed", "user_disabled"])] == [
        "login_failed", "user_disabled",
    ]
    assert [e["seq"] for e in admin.events(limit=2)] == [e["seq"] for e in events[:2]]
    assert len(admin.events(user_id=user.id())) == 3
    assert admin.events(since=events[-1]["at"] + 3600) == []
    with pytest.raises(AdminError) as err:
        admin.events(kinds=["no_such_kind"])
    assert err.value.code == "BadRequest"
    text = repr(events)
    for secret in (refresh, "correct-horse", "wrong-horse", email):
        assert secret and secret not in text
    app.close()
