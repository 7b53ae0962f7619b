"""Email one-time codes (#23) against the real server: the code is read from its dev outbox
through the admin API (kind ``email-otp``, the code in ``token``), as a mail would bring it."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid

import pytest

from sessionkit import AppError, Credentials, blocking

from conftest import Server, aio, start_server

OTP = "[app.providers.email-otp]"


def unique_email() -> str:
    return f"py-otp-{uuid.uuid4().hex[:12]}@example.com"


def mailed_code(server: Server, email: str) -> str:
    """The newest one-time code the server mailed to ``email``."""
    status, mails = server.admin("GET", f"/outbox?email={urllib.parse.quote(email)}")
    assert status == 200, mails
    codes = [m["token"] for m in mails if m.get("kind") == "email-otp"]
    assert codes, f"no email-otp mail for {email}: {mails}"
    return str(codes[-1])


def wrong(code: str) -> str:
    """Another code of the same length."""
    return code[:-1] + str((int(code[-1]) + 1) % 10)


@aio
async def test_a_mailed_code_logs_in_once_as_a_user_with_an_email_otp_identity() -> None:
    with start_server(providers_extra=OTP) as server:
        app = server.app()
        email = unique_email()
        await app.email_otp().send(email)
        code = mailed_code(server, email)
        assert code.isdigit() and len(code) >= 6, code

        with pytest.raises(AppError.Service) as refused:
            await app.log_in(Credentials.EMAIL_OTP(email=email, code=wrong(code)))
        assert (refused.value.code, refused.value.http_status) == ("InvalidCode", 401)
        assert wrong(code) not in str(refused.value)

        user = await app.log_in(Credentials.EMAIL_OTP(email=email, code=code))
        assert user.provider_type() == "email-otp"
        assert [i.provider_type for i in user.identities()] == ["email-otp"]
        assert user.profile().email == email

        # Single use: the same code again finds no live code.
        with pytest.raises(AppError.Service) as again:
            await app.log_in(Credentials.EMAIL_OTP(email=email, code=code))
        assert (again.value.code, again.value.http_status) == ("CodeExpired", 401)
        app.close()


@aio
async def test_a_code_linked_to_an_anonymous_user_later_logs_into_that_user() -> None:
    with start_server(providers_extra=OTP) as server:
        app = server.app()
        anon = await app.log_in(Credentials.ANONYMOUS(reuse=False))
        email = unique_email()
        await app.email_otp().send(email)
        await anon.link_credentials(Credentials.EMAIL_OTP(email=email, code=mailed_code(server, email)))
        assert sorted(i.provider_type for i in anon.identities()) == ["anon-user", "email-otp"]

        # On another device (a fresh App), through the blocking facade, which refuses to run
        # inside this test's event loop: it gets a thread of its own, as a script's would be.
        def other_device() -> str:
            other = blocking.App(server.config())
            try:
                other.email_otp().send(email)
                code = mailed_code(server, email)
                return other.log_in(Credentials.EMAIL_OTP(email=email, code=code)).id()
            finally:
                other.close()

        assert await asyncio.to_thread(other_device) == anon.id()
        app.close()
