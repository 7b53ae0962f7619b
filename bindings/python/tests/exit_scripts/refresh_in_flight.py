"""Refreshes in flight at exit, with a listener, a logger and a session error handler that
all run Python code on SDK threads; the App is never closed."""
import asyncio
import sys

import sessionkit as sk


class L(sk.AuthEventListener):
    def on_event(self, e: sk.AuthEvent) -> None:
        sum(range(1000))


class H(sk.SessionErrorHandler):
    def on_session_error(self, user: sk.User, error: sk.SessionError) -> None:
        pass


class Log(sk.Logger):
    def log(self, level: sk.LogLevel, target: str, message: str) -> None:
        pass


async def main() -> None:
    app = sk.App(sk.AppConfig(app_id=sys.argv[2], base_url=sys.argv[1],
                 storage=sk.StorageConfig.FILE(dir=sys.argv[3], encryption_key=None),
                 auto_refresh=True, logger=Log()))
    app.set_session_error_handler(H())
    sub = app.subscribe(L())
    u = await app.log_in(sk.Credentials.ANONYMOUS(reuse=False))
    print(u.id(), flush=True)
    # Started, never awaited: asyncio.run cancels them, the SDK finishes them on its threads.
    for _ in range(3):
        asyncio.ensure_future(u.refresh_access_token())
    await asyncio.sleep(0)
    globals()["keep"] = (app, sub)


asyncio.run(main())
