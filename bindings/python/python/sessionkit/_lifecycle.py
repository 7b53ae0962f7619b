"""Closing Apps: ``close()``, ``with App(...) as app:``, and every live App closed at exit.

The SDK works on threads of its own (the refresh scheduler, refreshes, event delivery) that call
back into Python: listeners, the session error handler, a logger, a custom store. A call that
arrives while the interpreter is finalising cannot take the GIL, and the thread is torn down
under native frames, which aborts the process ("FATAL: exception not rethrown", exit -6). So
``atexit`` closes every App still open before finalisation begins: after ``App.close()`` the SDK
calls no Python code, and what it had saved is on disk. Then the SDK is told that Python is
exiting (``foreign_runtime_exiting``), so that no SDK thread enters Python from then on at all.

One call into Python is not the SDK's to hold back: when a Python thread polls a Rust future
that is already done, UniFFI's scaffolding runs the continuation callback inline, in that
thread, under the poll's native frames. A daemon thread (an asyncio loop of its own, the
blocking facade's) caught there by finalisation aborted the process the same way (seen under
qemu-aarch64, 3 runs of 120 of the exit test's custom_store script, with a core dump showing
``pthread_exit`` from ``PyGILState_Ensure`` in ctypes' callback inside
``ffi_sessionkit_ffi_rust_future_poll_void``). So the poll functions are gated here: at exit no
new poll starts (its coroutine never resumes; the thread ends with the interpreter, outside
native code), and the polls already running are waited for while the interpreter can still
run their callbacks.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any, Callable

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


_polls_lock = threading.Lock()
_polls_done = threading.Condition(_polls_lock)
_polls_running = 0
_polls_closed = False


def _gated_poll(poll: Callable[..., None]) -> Callable[..., None]:
    def gated(rust_future: Any, callback: Any, data: Any) -> None:
        global _polls_running
        with _polls_lock:
            if _polls_closed:
                return
            _polls_running += 1
        try:
            poll(rust_future, callback, data)
        finally:
            with _polls_lock:
                _polls_running -= 1
                if _polls_running == 0:
                    _polls_done.notify_all()

    return gated


def _close_polls(timeout_s: float) -> None:
    """No poll starts from now on; waits (GIL released) for the ones running to return."""
    global _polls_closed
    deadline = time.monotonic() + timeout_s
    with _polls_lock:
        _polls_closed = True
        while _polls_running > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _polls_done.wait(left)


@atexit.register
def _close_live_apps() -> None:
    for app in list(_live):
        app.close()
    _close_polls(_EXIT_WAIT_MS / 1000)
    # Then no SDK thread may enter Python any more: waking an awaiting coroutine, a listener,
    # releasing a Python object. The ones already inside are let finish (the GIL is released
    # while this waits).
    _ffi.foreign_runtime_exiting(_EXIT_WAIT_MS)


def install() -> None:
    """Adds the context manager and the exit-time close to the generated ``App`` class."""
    _ffi.App.__init__ = _init  # type: ignore[method-assign]
    _ffi.App.__enter__ = _enter  # type: ignore[attr-defined]
    _ffi.App.__exit__ = _exit  # type: ignore[attr-defined]
    # The generated code looks the poll functions up on the library at each call.
    lib = _ffi._UniffiLib
    for name in [n for n in vars(lib) if n.startswith("ffi_sessionkit_ffi_rust_future_poll_")]:
        setattr(lib, name, _gated_poll(getattr(lib, name)))
