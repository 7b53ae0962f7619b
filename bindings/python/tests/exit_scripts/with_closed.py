"""`with App(...) as app:`: closed explicitly, then calls fail with AppClosed."""
import sys

import sessionkit as sk
from sessionkit.blocking import App

with App(sk.AppConfig(app_id=sys.argv[2], base_url=sys.argv[1],
         storage=sk.StorageConfig.FILE(dir=sys.argv[3], encryption_key=None),
         auto_refresh=True)) as app:
    u = app.log_in(sk.Credentials.ANONYMOUS(reuse=False))
try:
    u.refresh_access_token()
    raise SystemExit("a call after close() succeeded")
except sk.AppError.AppClosed:
    pass
print(u.id())
