#!/usr/bin/env python3
"""Median cost of token getters from Python, through the real bindings, against a real server.

    python bindings/python/bench/bench_tokens.py [--server-bin PATH] [--iterations N]

Starts sessionkit-server (the same way the pytest fixture does), logs in anonymously, then
times `user.access_token()` (a synchronous getter) and `await user.valid_access_token(None)`
on a valid token (no refresh: the server's refresh counter is checked before and after);
then, on a session bound with DPoP (#29, an app with `dpop = "required"`),
`user.dpop_proof(method, url, token)`, the proof the HTTP client hooks add to each request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402  (reuses the server fixture's config and admin helpers)

import sessionkit  # noqa: E402
from sessionkit import Credentials  # noqa: E402


def median_ns(samples: list) -> float:
    return statistics.median(samples)


async def bench(server: conftest.Server, iterations: int) -> dict:
    app = server.app()
    user = await app.log_in(Credentials.ANONYMOUS(reuse=True))
    before = server.refresh_count()
    clock = time.perf_counter_ns

    for _ in range(1000):  # warm up
        user.access_token()
        await user.valid_access_token(None)

    getter = []
    for _ in range(iterations):
        t0 = clock()
        user.access_token()
        getter.append(clock() - t0)

    valid = []
    for _ in range(iterations):
        t0 = clock()
        await user.valid_access_token(None)
        valid.append(clock() - t0)

    assert server.refresh_count() == before, "a refresh happened: the token was not valid"
    return {"access_token": median_ns(getter), "valid_access_token": median_ns(valid)}


async def bench_dpop(server: conftest.Server, iterations: int) -> tuple:
    app = server.app(dpop=True)
    user = await app.log_in(Credentials.ANONYMOUS(reuse=False))
    token = user.access_token() or ""
    url = "https://api.example.com/orders"
    assert user.dpop_proof("GET", url, token), "the session is not bound"
    clock = time.perf_counter_ns
    for _ in range(1000):  # warm up
        user.dpop_proof("GET", url, token)
    samples = []
    for _ in range(iterations):
        t0 = clock()
        user.dpop_proof("GET", url, token)
        samples.append(clock() - t0)
    # The hooks' path: one direct call (sessionkit._authorized.dpop_proof).
    from sessionkit._authorized import dpop_proof

    assert dpop_proof(user, "GET", url, token, None)
    direct = []
    for _ in range(iterations):
        t0 = clock()
        dpop_proof(user, "GET", url, token, None)
        direct.append(clock() - t0)
    app.close()
    return median_ns(samples), median_ns(direct)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", default=None)
    ap.add_argument("--iterations", type=int, default=20000)
    args = ap.parse_args()
    if args.server_bin:
        os.environ["SESSIONKIT_SERVER_BIN"] = args.server_bin

    with conftest.start_server(app_extra='dpop = "optional"') as server:
        result = asyncio.run(bench(server, args.iterations))
        result["dpop_proof"], result["dpop_direct"] = asyncio.run(bench_dpop(server, args.iterations))
    print(f"sessionkit {pathlib.Path(sessionkit.__file__).parent}")
    print(f"iterations: {args.iterations} each, median of per-call perf_counter_ns")
    print(f"user.access_token():                 {result['access_token'] / 1000:.2f} us")
    print(f"await user.valid_access_token(None): {result['valid_access_token'] / 1000:.2f} us")
    print(f"user.dpop_proof(method, url, token): {result['dpop_proof'] / 1000:.2f} us")
    print(f"the hooks' direct proof call:        {result['dpop_direct'] / 1000:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
