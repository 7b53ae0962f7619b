"""The server's login lockout seen through the SDK (#22): a 429 with ``Retry-After`` raises
``AppError.Service`` carrying ``retry_after_secs``, so an app can say "try again in N minutes";
errors without one answer ``None``, on every variant."""

from __future__ import annotations

import pytest

from sessionkit import AppError, Credentials

from conftest import aio, start_server


@aio
async def test_the_login_lockout_carries_retry_after_secs() -> None:
    # Two attempts an hour on one account: the third is refused until one more is earned
    # (half an hour on), and the server says so in Retry-After.
    with start_server(rate_limits="{ logins_per_account_per_hour = 2 }") as server:
        app = server.app()
        email = "lockout@example.com"
        await app.email_password_auth().register_user(email, "correct-horse")
        await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
        with pytest.raises(AppError.Service) as refused:
            await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="wrong-horse"))
        assert refused.value.http_status == 401
        assert refused.value.retry_after_secs is None
        with pytest.raises(AppError) as locked:
            await app.log_in(Credentials.EMAIL_PASSWORD(email=email, password="correct-horse"))
        e = locked.value
        assert isinstance(e, AppError.Service), repr(e)
        assert (e.http_status, e.code) == (429, "TooManyRequests")
        assert e.retry_after_secs is not None and 60 <= e.retry_after_secs <= 3600, repr(e)
        assert f"retry_after_secs={e.retry_after_secs}" in str(e)
        assert "correct-horse" not in str(e) + repr(e)


def test_every_variant_answers_retry_after_secs() -> None:
    assert AppError.Network(message="down").retry_after_secs is None
    assert AppError.Service(
        code="TooManyRequests", message="slow", http_status=429, link=None, retry_after_secs=20
    ).retry_after_secs == 20
