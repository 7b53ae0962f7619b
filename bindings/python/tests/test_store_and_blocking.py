"""A SessionStore written in Python, and the blocking facade."""

import gc
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional

import pytest

import sessionkit
from sessionkit import Credentials, SessionStore, StorageConfig, StoreError, UserState, blocking

from conftest import Server, aio


class DictStore(SessionStore):
    """Keeps the session document in a dict, as an app might keep it in the Keychain."""

    def __init__(self) -> None:
        self.data: Dict[str, bytes] = {}
        self.saves = 0

    def load(self) -> Optional[bytes]:
        return self.data.get("doc")

    def save(self, bytes: bytes) -> None:
        self.data["doc"] = bytes
        self.saves += 1


@aio
async def test_python_store_restores_users_in_a_second_app(server: Server) -> None:
    store = DictStore()
    app = server.app(storage=StorageConfig.CUSTOM(store=store))
    await app.email_password_auth().register_user("keep@example.com", "correct-horse")
    kept = await app.log_in(Credentials.EMAIL_PASSWORD(email="keep@example.com", password="correct-horse"))
    anon = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    app.switch_user(kept)
    assert store.saves > 0 and isinstance(store.data["doc"], bytes)

    again = server.app(storage=StorageConfig.CUSTOM(store=store))
    assert {u.id() for u in again.all_users()} == {kept.id(), anon.id()}
    restored = again.current_user()
    assert restored is not None and restored.id() == kept.id()
    assert restored.state() == UserState.LOGGED_IN
    assert restored.refresh_token() == kept.refresh_token()
    await restored.refresh_access_token()  # the restored session works on the server
    assert await restored.call_function("sum", 2, 2) == 4


@aio
async def test_store_errors_reach_the_app(server: Server) -> None:
    class Locked(SessionStore):
        def load(self) -> Optional[bytes]:
            raise StoreError.Unavailable("device locked")

        def save(self, bytes: bytes) -> None:
            raise StoreError.Unavailable("device locked")

    with pytest.raises(sessionkit.AppError.Storage) as err:
        server.app(storage=StorageConfig.CUSTOM(store=Locked()))
    assert "device locked" in str(err.value)


def test_blocking_facade(server: Server) -> None:
    app = blocking.App(server.config())
    user = app.log_in(Credentials.ANONYMOUS(reuse=True))
    assert isinstance(user, blocking.User)
    assert app.current_user() == user
    token = user.valid_access_token()
    assert token == user.access_token()
    user.refresh_access_token()
    assert user.valid_access_token() != token
    assert user.call_function("sum", 1, 2) == 3
    assert user.call_function_json("sum", "[1, 2]") == "3"
    user.log_out()
    assert user.state() == UserState.REMOVED
    assert app.current_user() is None


def test_a_thread_that_made_blocking_calls_leaves_no_unclosed_event_loop(server: Server) -> None:
    app = blocking.App(server.config())
    user = app.log_in(Credentials.ANONYMOUS(reuse=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        worker = threading.Thread(target=user.valid_access_token)
        worker.start()
        worker.join()
        gc.collect()
    assert not [w for w in caught if "unclosed event loop" in str(w.message)]
