"""Closing Apps: ``close()``, ``with App(...) as app:``, and every live App closed at exit.

The SDK works on threads of its own (the refresh scheduler, refreshes, event delivery) that call
back into Python: listeners, the session error handler, a logger, a custom store. A call that
arrives while the interpreter is finalising cannot take the GIL, and the thread is torn down
under native frames, which aborts the process ("FATAL: exception not rethrown", exit -6). So
``atexit`` closes every App still open before finalisation begins: after ``App.close()`` the SDK
calls no Python code, and what it had saved is on disk. Then the SDK is told that Python is
exiting (``foreign_runtime_exiting``), so that no SDK thread enters Python from then on at all.
"""

from __future__ import annotations

import atexit
import weakref

from ._native import sessionkit_ffi as _ffi

_live: "weakref.WeakSet[_ffi.App]" = weakref.WeakSet()
_generated_init = _ffi.App.__init__


def _init(self: _ffi.App, config: _ffi.AppConfig) -> None:
    _generated_init(self, config)
    _live.add(self)


def _enter(self: _ffi.App) -> _ffi.App:
    return self


def _exit(self: _ffi.App, *exc: object) -> None:
    self.close()


# How long exit waits for SDK threads already running Python code (a listener, a store save).
_EXIT_WAIT_MS = 5000


@atexit.register
def _close_live_apps() -> None:
    for app in list(_live):
        app.close()
    # Then no SDK thread may enter Python any more: waking an awaiting coroutine, a listener,
    # releasing a Python object. The ones already inside are let finish (the GIL is released
    # while this waits).
    _ffi.foreign_runtime_exiting(_EXIT_WAIT_MS)


def install() -> None:
    """Adds the context manager and the exit-time close to the generated ``App`` class."""
    _ffi.App.__init__ = _init  # type: ignore[method-assign]
    _ffi.App.__enter__ = _enter  # type: ignore[attr-defined]
    _ffi.App.__exit__ = _exit  # type: ignore[attr-defined]
