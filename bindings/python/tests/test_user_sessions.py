"""A user's sessions (#25): two Apps with their own stores act as two devices of one user
(different DeviceInfo); the list, revoking the other device, log_out scopes, what the other
device hears, the blocking facade, argument checks and the readable, secret-free repr."""

import datetime
from typing import List, Tuple

import pytest

import sessionkit
from sessionkit import (
    AppError,
    Credentials,
    DeviceInfo,
    LogOutScope,
    SessionDevice,
    SessionErrorHandler,
    SessionErrorKind,
    SessionInfo,
    UserState,
)

from conftest import Server, aio

PASSWORD = "correct-horse"


class Errors(SessionErrorHandler):
    """The session-error handler's calls on one device: (user id, kind)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, SessionErrorKind]] = []

    def on_session_error(self, user: sessionkit.User, error: sessionkit.SessionError) -> None:
        self.calls.append((user.id(), error.kind))


def device_app(server: Server, platform: str) -> Tuple[sessionkit.App, Errors]:
    """An App of its own (in-memory store) whose logins tell the server `platform`."""
    device = DeviceInfo(
        platform=platform,
        platform_version="1.0",
        device_name=f"{platform} test device",
        app_version=f"{platform}-2.4.0",
    )
    app = server.app(device=device)
    errors = Errors()
    app.set_session_error_handler(errors)
    return app, errors


async def on_device(server: Server, platform: str, email: str) -> Tuple[sessionkit.User, Errors]:
    app, errors = device_app(server, platform)
    user = await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password=PASSWORD))
    return user, errors


async def register(server: Server, email: str) -> None:
    app = server.app()
    await app.email_password_auth().register_user(email, PASSWORD)
    app.close()


@aio
async def test_each_device_lists_both_sessions_as_typed_values(server: Server) -> None:
    await register(server, "kim@example.com")
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    phone, _ = await on_device(server, "iOS", "kim@example.com")
    laptop, _ = await on_device(server, "macOS", "kim@example.com")
    assert phone.id() == laptop.id()

    seen = await phone.sessions()
    assert [type(s) for s in seen] == [SessionInfo, SessionInfo]
    assert [(s.device.platform, s.current) for s in seen] == [("iOS", True), ("macOS", False)]
    assert isinstance(seen[1].device, SessionDevice)
    assert seen[1].device.device_name == "macOS test device"
    assert seen[1].device.platform_version == "1.0"
    assert seen[1].device.app_version == "macOS-2.4.0"
    assert seen[0].provider_type == "local-userpass"
    assert seen[0].api_key_name is None
    assert seen[0].id != seen[1].id
    for s in seen:
        assert s.created.tzinfo is not None and s.created.utcoffset() == datetime.timedelta(0)
        assert before - datetime.timedelta(seconds=5) <= s.created <= s.last_used
    from_laptop = await laptop.sessions()
    assert [s.current for s in from_laptop] == [False, True]
    assert [s.id for s in from_laptop] == [s.id for s in seen]


@aio
async def test_repr_is_readable_and_holds_no_token(server: Server) -> None:
    await register(server, "rae@example.com")
    phone, _ = await on_device(server, "iOS", "rae@example.com")
    (own,) = await phone.sessions()
    text = repr(own)
    assert text == str(own)
    assert text.startswith(f"SessionInfo(id={own.id!r}, created=datetime.datetime(")
    assert "device=SessionDevice(platform='iOS', platform_version='1.0'" in text
    assert "device_name='iOS test device', app_version='iOS-2.4.0')" in text
    assert "provider_type='local-userpass'" in text and text.endswith("current=True)")
    # Fields that are None are left out; no token of the user appears.
    assert "api_key_name" not in text and "None" not in text
    for secret in (phone.access_token(), phone.refresh_token()):
        assert secret and secret not in text


@aio
async def test_revoking_the_other_device_ends_it_at_its_next_refresh(server: Server) -> None:
    await register(server, "lea@example.com")
    phone, phone_errors = await on_device(server, "Android", "lea@example.com")
    laptop, laptop_errors = await on_device(server, "Windows", "lea@example.com")
    other = (await phone.sessions())[1]

    await phone.revoke_session(other.id)
    assert [s.current for s in await phone.sessions()] == [True]
    with pytest.raises(AppError.SessionExpired):
        await laptop.refresh_access_token()
    assert laptop.state() == UserState.LOGGED_OUT
    with pytest.raises(AppError.ClientUserNotLoggedIn):
        await laptop.refresh_access_token()
    assert laptop_errors.calls == [(laptop.id(), SessionErrorKind.SESSION_REVOKED)]
    await phone.refresh_access_token()
    assert phone_errors.calls == []

    with pytest.raises(AppError.Service) as again:
        await phone.revoke_session(other.id)
    assert again.value.code == "SessionNotFound" and again.value.http_status == 404
    with pytest.raises(AppError.InvalidArgument):
        await phone.revoke_session("../profile")


@aio
async def test_another_users_session_id_is_not_found_and_stays(server: Server) -> None:
    await register(server, "ann@example.com")
    await register(server, "bob@example.com")
    ann, _ = await on_device(server, "iOS", "ann@example.com")
    bob, bob_errors = await on_device(server, "macOS", "bob@example.com")
    (bobs,) = await bob.sessions()
    for foreign in (bobs.id, "000000000000000000000000"):
        with pytest.raises(AppError.Service) as refused:
            await ann.revoke_session(foreign)
        assert refused.value.code == "SessionNotFound"
    await bob.refresh_access_token()
    assert [s.id for s in await bob.sessions()] == [bobs.id]
    assert bob_errors.calls == []


@aio
async def test_revoking_this_devices_own_session_logs_it_out(server: Server) -> None:
    await register(server, "max@example.com")
    phone, errors = await on_device(server, "iOS", "max@example.com")
    (own,) = await phone.sessions()
    await phone.revoke_session(own.id)
    assert phone.state() == UserState.LOGGED_OUT
    assert errors.calls == []


@aio
async def test_log_out_other_devices_keeps_this_one(server: Server) -> None:
    await register(server, "ida@example.com")
    phone, phone_errors = await on_device(server, "Android", "ida@example.com")
    tablet, tablet_errors = await on_device(server, "iPadOS", "ida@example.com")
    laptop, _ = await on_device(server, "Windows", "ida@example.com")

    await phone.log_out(scope=LogOutScope.OTHER_DEVICES)
    assert phone.state() == UserState.LOGGED_IN
    await phone.refresh_access_token()
    for other in (tablet, laptop):
        with pytest.raises(AppError.SessionExpired) as ended:
            await other.refresh_access_token()
        assert ended.value.kind == SessionErrorKind.SESSION_REVOKED
    assert tablet_errors.calls == [(tablet.id(), SessionErrorKind.SESSION_REVOKED)]
    assert phone_errors.calls == []
    assert [(s.device.platform, s.current) for s in await phone.sessions()] == [("Android", True)]


@aio
async def test_log_out_everywhere_ends_this_device_too(server: Server) -> None:
    await register(server, "eve@example.com")
    phone, phone_errors = await on_device(server, "iOS", "eve@example.com")
    laptop, laptop_errors = await on_device(server, "Linux", "eve@example.com")

    await phone.log_out(LogOutScope.EVERYWHERE)
    assert phone.state() == UserState.LOGGED_OUT
    assert phone_errors.calls == []  # a logout, not an expiry
    with pytest.raises(AppError.SessionExpired):
        await laptop.refresh_access_token()
    assert laptop_errors.calls == [(laptop.id(), SessionErrorKind.SESSION_REVOKED)]


@aio
async def test_log_out_without_a_scope_is_this_device_only(server: Server) -> None:
    await register(server, "ola@example.com")
    phone, _ = await on_device(server, "iOS", "ola@example.com")
    laptop, laptop_errors = await on_device(server, "macOS", "ola@example.com")
    await phone.log_out()
    assert phone.state() == UserState.LOGGED_OUT
    await laptop.log_out(scope=None)  # None is THIS_DEVICE too
    assert laptop.state() == UserState.LOGGED_OUT
    again, _ = await on_device(server, "Linux", "ola@example.com")
    await again.log_out(LogOutScope.THIS_DEVICE)
    assert again.state() == UserState.LOGGED_OUT
    assert laptop_errors.calls == []


@aio
async def test_wrong_argument_types_raise_type_error(server: Server) -> None:
    await register(server, "tom@example.com")
    phone, _ = await on_device(server, "iOS", "tom@example.com")
    with pytest.raises(TypeError, match=r"log_out\(\): scope must be a sessionkit.LogOutScope or None, not str"):
        await phone.log_out(scope="everywhere")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"revoke_session\(\): id must be a str, not int"):
        await phone.revoke_session(42)  # type: ignore[arg-type]
    assert phone.state() == UserState.LOGGED_IN


def test_blocking_facade_lists_revokes_and_logs_out(server: Server) -> None:
    from sessionkit import blocking

    email = "uma@example.com"
    blocking.App(server.config()).email_password_auth().register_user(email, PASSWORD)
    devices = []
    for platform in ("iOS", "macOS", "Linux"):
        app = blocking.App(server.config(device=DeviceInfo(platform=platform, platform_version="1.0")))
        devices.append(app.log_in(Credentials.EMAIL_PASSWORD(email=email, password=PASSWORD)))
    phone, laptop, desktop = devices

    seen = phone.sessions()
    assert [(s.device.platform, s.current) for s in seen] == [("iOS", True), ("macOS", False), ("Linux", False)]
    phone.revoke_session(seen[1].id)
    with pytest.raises(AppError.SessionExpired):
        laptop.refresh_access_token()
    phone.log_out(scope=LogOutScope.OTHER_DEVICES)
    assert [s.current for s in phone.sessions()] == [True]
    with pytest.raises(AppError.SessionExpired):
        desktop.refresh_access_token()
    phone.log_out(LogOutScope.EVERYWHERE)
    assert phone.state() == UserState.LOGGED_OUT
    with pytest.raises(TypeError, match=r"revoke_session\(\): id must be a str, not NoneType"):
        phone.revoke_session(None)  # type: ignore[arg-type]
