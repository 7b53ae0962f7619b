"""Processes that use the SDK exit cleanly: scripts that end with Apps open, refreshes in flight,
listeners, loggers and a custom store that run Python on SDK threads, each run many times
(SESSIONKIT_EXIT_RUNS, default 200) while the machine is kept busy. No run may die abnormally
(the SIGABRT "FATAL: exception not rethrown" at interpreter exit), and every session a run
saved must be there, logged in, afterwards. Plus App.close() itself: what it waits for, what
fails after it.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import sys
import tempfile

import asyncio
from typing import Any, Coroutine, Iterator, List, Optional, Tuple

import pytest

import sessionkit
from conftest import Server, APP_ID, Recorder, aio, start_server
from sessionkit import AppError, Credentials, StorageConfig, UserState

SCRIPTS = pathlib.Path(__file__).parent / "exit_scripts"
RUNS = int(os.environ.get("SESSIONKIT_EXIT_RUNS", "200"))


@pytest.fixture(scope="module")
def exit_server() -> Iterator[Server]:
    with start_server() as s:
        yield s


@pytest.fixture(scope="module")
def busy_machine() -> Iterator[None]:
    """Two busy loops on the two cores: the exit race shows up when threads are descheduled."""
    spin = "import time\nend = time.time() + 900\nwhile time.time() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    yield
    for p in procs:
        p.kill()
        p.wait()


def _run_many(script: str, base_url: str, runs: int) -> List[Tuple[pathlib.Path, int, str, str]]:
    """Runs the script `runs` times, four at once; returns [(dir, returncode, stdout, stderr)]."""
    root = pathlib.Path(tempfile.mkdtemp(prefix=f"sk-exit-{script}-"))

    def one(i: int) -> Tuple[pathlib.Path, int, str, str]:
        d = root / str(i)
        d.mkdir()
        p = subprocess.run(
            [sys.executable, str(SCRIPTS / f"{script}.py"), base_url, APP_ID, str(d)],
            capture_output=True, text=True, timeout=120,
        )
        return d, p.returncode, p.stdout.strip(), p.stderr

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(runs)))


class _FileStore(sessionkit.SessionStore):
    """Reads what the custom_store script's store wrote."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def load(self) -> Optional[bytes]:
        return self.path.read_bytes() if self.path.exists() else None

    def save(self, data: bytes) -> None:
        raise AssertionError("the check only reads")


@pytest.mark.parametrize(
    "script",
    ["blocking_subscribed", "asyncio_login", "with_closed", "refresh_in_flight", "custom_store"],
)
def test_scripts_exit_cleanly_and_keep_their_sessions(
    script: str, exit_server: Server, busy_machine: None
) -> None:
    results = _run_many(script, exit_server.base_url, RUNS)
    abnormal = [(rc, err[-300:]) for _, rc, _, err in results if rc != 0]
    assert not abnormal, f"{len(abnormal)} of {RUNS} runs exited abnormally: {abnormal[:3]}"
    for d, _, out, _ in results:
        user_id = out.split()[0]
        if script == "custom_store":
            storage: StorageConfig = StorageConfig.CUSTOM(store=_FileStore(d / "custom-store.bin"))
        else:
            storage = StorageConfig.FILE(dir=str(d), encryption_key=None)
        app = sessionkit.App(exit_server.config(storage=storage))
        users = {u.id(): u for u in app.all_users()}
        assert user_id in users, f"{script}: the session saved in {d} is gone"
        assert users[user_id].state() == UserState.LOGGED_IN
        app.close()


@aio
async def test_close_saves_waits_and_then_refuses(server: Server, tmp_path: pathlib.Path) -> None:
    storage = StorageConfig.FILE(dir=str(tmp_path), encryption_key=None)
    app = sessionkit.App(server.config(storage=storage, auto_refresh=True))
    events = Recorder()
    sub = app.subscribe(events)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    refreshing = [asyncio_task(user.refresh_access_token()) for _ in range(3)]
    app.close()
    assert app.is_closed()
    # The refreshes in flight finished (or were refused before they started), and were saved.
    for task in refreshing:
        try:
            await task
        except AppError.AppClosed:
            pass
    seen = len(events.events)
    with pytest.raises(AppError.AppClosed):
        await app.log_in(Credentials.ANONYMOUS(reuse=False))
    with pytest.raises(AppError.AppClosed):
        await user.refresh_access_token()
    with pytest.raises(AppError.AppClosed):
        app.switch_user(user)
    # Getters answer from memory; no event reaches a listener any more.
    assert user.access_token() is not None
    assert len(events.events) == seen
    app.close()  # again: nothing more happens
    sub.cancel()
    reopened = sessionkit.App(server.config(storage=storage))
    assert [u.id() for u in reopened.all_users()] == [user.id()]
    current = reopened.current_user()
    assert current is not None and current.access_token() == user.access_token()
    reopened.close()


def test_with_statement_closes_and_listener_may_close(server: Server) -> None:
    from sessionkit.blocking import App

    class Closer(sessionkit.AuthEventListener):
        def __init__(self) -> None:
            self.app: Optional[App] = None

        def on_event(self, event: sessionkit.AuthEvent) -> None:
            # Closing from a callback does not wait for itself.
            if event.kind == sessionkit.AuthEventKind.SIGNED_IN:
                assert self.app is not None
                self.app.close()

    with App(server.config()) as app:
        closer = Closer()
        closer.app = app
        sub = app.subscribe(closer)
        app.log_in(Credentials.ANONYMOUS(reuse=False))
        assert app.is_closed()
        sub.cancel()
    with App(server.config()) as app:
        pass
    assert app.is_closed()
    with pytest.raises(AppError.AppClosed):
        app.log_in(Credentials.ANONYMOUS(reuse=False))


def asyncio_task(coro: Coroutine[Any, Any, None]) -> "asyncio.Future[None]":
    import asyncio

    return asyncio.ensure_future(coro)


def test_no_future_is_polled_once_exit_begins(server: Server) -> None:
    """At exit every Rust future poll is gated (sessionkit/_lifecycle.py): after the gate
    closes, an SDK coroutine never resumes, so no thread is left running a continuation callback
    under the poll's native frames while the interpreter finalises. In a process of its own,
    since the gate does not reopen."""
    script = (
        "import asyncio, sys\n"
        "import sessionkit as sk\n"
        "from sessionkit import _lifecycle\n"
        "lib = _lifecycle._ffi._UniffiLib\n"
        "polls = [n for n in vars(lib) if n.startswith('ffi_sessionkit_ffi_rust_future_poll_')]\n"
        "gated = [n for n in polls if getattr(lib, n).__name__ == 'gated']\n"
        "print(len(polls), len(gated))\n"
        "app = sk.App(sk.AppConfig(app_id=sys.argv[2], base_url=sys.argv[1],\n"
        "                          storage=sk.StorageConfig.IN_MEMORY()))\n"
        "async def main():\n"
        "    await app.log_in(sk.Credentials.ANONYMOUS(reuse=False))\n"
        "    print('before: logged in')\n"
        "    _lifecycle._close_polls(5.0)\n"
        "    try:\n"
        "        await asyncio.wait_for(app.log_in(sk.Credentials.ANONYMOUS(reuse=False)), 2)\n"
        "        print('after: logged in')\n"
        "    except asyncio.TimeoutError:\n"
        "        print('after: never resumed')\n"
        "asyncio.run(main())\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script, server.base_url, APP_ID],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    counts, before, after = p.stdout.split("\n")[:3]
    polls, gated = (int(n) for n in counts.split())
    assert polls >= 10 and gated == polls, counts
    assert before == "before: logged in"
    assert after == "after: never resumed"
