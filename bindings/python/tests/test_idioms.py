"""Python idioms (#13, in part): events as an async iterator, and the blocking facade refusing
to run inside an event loop with a message that says what to do."""

from __future__ import annotations

import asyncio
from typing import List

import pytest

from conftest import Server, aio
from sessionkit import AuthEventKind, Credentials
from sessionkit import blocking


@aio
async def test_auth_events_as_an_async_iterator(server: Server) -> None:
    app = server.app()
    seen: List[AuthEventKind] = []

    async def collect() -> None:
        async for event in app.auth_events():
            seen.append(event.kind)
            if event.kind == AuthEventKind.TOKEN_REFRESHED:
                break

    task = asyncio.ensure_future(collect())
    await asyncio.sleep(0.05)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    await user.refresh_access_token()
    await asyncio.wait_for(task, 10)
    assert seen[0] == AuthEventKind.INITIAL_STATE
    assert AuthEventKind.SIGNED_IN in seen and seen[-1] == AuthEventKind.TOKEN_REFRESHED
    # The loop ended, so the subscription did: later events go nowhere, and nothing breaks.
    await user.refresh_access_token()
    # A user's own stream.
    mine = user.auth_events()
    first = await asyncio.wait_for(mine.__anext__(), 5)
    assert first.kind == AuthEventKind.INITIAL_STATE and first.user_id == user.id()
    await mine.aclose()
    app.close()


@aio
async def test_the_blocking_facade_inside_an_event_loop_says_to_use_asyncio(server: Server) -> None:
    app = blocking.App(server.config())
    with pytest.raises(RuntimeError, match="asyncio API"):
        app.log_in(Credentials.ANONYMOUS(reuse=False))
    app.close()
