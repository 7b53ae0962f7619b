"""Auth events as an async iterator: ``async for event in app.auth_events(): ...``.

Beside the listener classes (``App.subscribe``): the subscription is made when iteration
starts (its ``INITIAL_STATE`` event comes first) and cancelled when the loop ends (``break``,
an exception, or the generator being closed). Events reach the iterating event loop from the
SDK's threads without blocking them; they queue without bound until consumed.
"""

from __future__ import annotations

import asyncio
import typing

from ._native import sessionkit_ffi as _ffi


class _ToLoop(_ffi.AuthEventListener):
    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[_ffi.AuthEvent]"):
        self._loop = loop
        self._queue = queue

    def on_event(self, event: _ffi.AuthEvent) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:
            pass  # the loop was closed: nobody is iterating any more


async def _iterate(subscribe: typing.Callable[[_ffi.AuthEventListener], _ffi.Subscription]
                   ) -> typing.AsyncIterator[_ffi.AuthEvent]:
    queue: "asyncio.Queue[_ffi.AuthEvent]" = asyncio.Queue()
    subscription = subscribe(_ToLoop(asyncio.get_running_loop(), queue))
    try:
        while True:
            yield await queue.get()
    finally:
        subscription.cancel()


def _app_auth_events(self: _ffi.App) -> typing.AsyncIterator[_ffi.AuthEvent]:
    """Every auth event of this app, an ``INITIAL_STATE`` first, for as long as it is iterated.

    Returns an async iterator; use it in a coroutine: ``async for event in app.auth_events():``.
    Raises nothing itself; the subscription ends when the loop does.
    """
    return _iterate(self.subscribe)


def _user_auth_events(self: _ffi.User) -> typing.AsyncIterator[_ffi.AuthEvent]:
    """This user's events only, an ``INITIAL_STATE`` first; see ``App.auth_events``."""
    return _iterate(self.subscribe)


def install() -> None:
    """Adds ``auth_events()`` to the generated ``App`` and ``User``."""
    _ffi.App.auth_events = _app_auth_events  # type: ignore[attr-defined]
    _ffi.User.auth_events = _user_auth_events  # type: ignore[attr-defined]
