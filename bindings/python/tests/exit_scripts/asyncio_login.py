"""A bare asyncio login; the App is never closed."""
import asyncio
import sys

import sessionkit as sk


async def main() -> None:
    app = sk.App(sk.AppConfig(app_id=sys.argv[2], base_url=sys.argv[1],
                 storage=sk.StorageConfig.FILE(dir=sys.argv[3], encryption_key=None)))
    u = await app.log_in(sk.Credentials.ANONYMOUS(reuse=False))
    print(u.id())


asyncio.run(main())
