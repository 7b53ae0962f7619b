"""The issue's script: blocking API, a subscription, auto refresh on; the App is never closed."""
import sys

import sessionkit as sk
from sessionkit.blocking import App


class L(sk.AuthEventListener):
    def on_event(self, e: sk.AuthEvent) -> None:
        pass


app = App(sk.AppConfig(app_id=sys.argv[2], base_url=sys.argv[1],
          storage=sk.StorageConfig.FILE(dir=sys.argv[3], encryption_key=None), auto_refresh=True))
sub = app.subscribe(L())
u = app.log_in(sk.Credentials.ANONYMOUS(reuse=False))
print(u.id())
