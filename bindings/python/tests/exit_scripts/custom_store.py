"""A custom session store in Python (called from SDK threads on every save), auto refresh on,
a refresh in flight at exit; the App is never closed. The store writes the file itself."""
import os
import sys
import threading
from typing import Optional

import sessionkit as sk
from sessionkit.blocking import App, User

path = os.path.join(sys.argv[3], "custom-store.bin")


class Store(sk.SessionStore):
    def load(self) -> Optional[bytes]:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def save(self, data: bytes) -> None:
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


app = App(sk.AppConfig(app_id=sys.argv[2], base_url=sys.argv[1],
          storage=sk.StorageConfig.CUSTOM(store=Store()), auto_refresh=True))
u = app.log_in(sk.Credentials.ANONYMOUS(reuse=False))
print(u.id(), flush=True)
threading.Thread(target=lambda: User(u.inner).refresh_access_token(), daemon=True).start()
