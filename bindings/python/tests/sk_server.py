"""Shared by the pytest suite (conftest.py), the conformance runner
(tests/conformance/runners/python_runner.py) and the token bench (bench/bench_tokens.py): a real
sessionkit-server started from a config text, and the plain-urllib calls all of them make to it.

Standard library only, so the runner can import it as a script without the test dependencies.
Each caller keeps its own config template, app id and keys; they are parameters here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple, Union

REPO = pathlib.Path(__file__).resolve().parents[3]
ADMIN_API = "/api/admin/v3.0"
LISTENING = "listening on "


def default_server_bin() -> str:
    """The binary when none is named: env SESSIONKIT_SERVER_BIN, else the debug build."""
    return os.environ.get("SESSIONKIT_SERVER_BIN", str(REPO / "target" / "debug" / "sessionkit-server"))


def http(method: str, url: str, body: Any = None, token: Optional[str] = None) -> Tuple[int, Any]:
    """One JSON request: (status, parsed body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            return resp.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        # An error body need not be JSON (a plain-text 404): the status is still the answer.
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, None


def admin_login(base_url: str, public: str, private: str, error: type = RuntimeError) -> str:
    """An admin access token; a refused login raises `error`, the caller's kind of failure."""
    status, doc = http(
        "POST",
        f"{base_url}{ADMIN_API}/auth/providers/mongodb-cloud/login",
        {"username": public, "apiKey": private},
    )
    if status != 200:
        raise error(f"admin login: {status} {doc}")
    return str(doc["access_token"])


def b64url(raw: bytes) -> str:
    """JWT segments are unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_hs256(claims: Dict[str, Any], key: str) -> str:
    """An HS256 JWT, as the app's own identity provider would issue it."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    sig = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(sig)}"


class ServerProcess:
    """sessionkit-server on a free loopback port, in a fresh temporary dir that holds its config
    (`template` formatted with `data_dir` and `fields`) and data. stop(), or the end of a `with`
    block, ends the process and removes the dir."""

    def __init__(self, binary: Union[str, "os.PathLike[str]"], template: str, prefix: str = "sessionkit-", **fields: Any) -> None:
        binary = pathlib.Path(binary)
        if not binary.is_file():
            raise RuntimeError(f"{binary} not found: run `cargo build -p sessionkit-server` first")
        self.dir = tempfile.mkdtemp(prefix=prefix)
        config = pathlib.Path(self.dir, "server.toml")
        config.write_text(template.format(data_dir=pathlib.Path(self.dir, "data").as_posix(), **fields))
        # A file, not a pipe: nothing reads stderr while the server runs, but a failed start quotes it.
        self._stderr = open(pathlib.Path(self.dir, "server.stderr"), "w")
        self.proc = subprocess.Popen(
            [str(binary), "--config", str(config), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self.proc.stdout is not None  # stdout=PIPE
        stdout = self.proc.stdout
        line = stdout.readline().strip()
        if not line.startswith(LISTENING):
            self._end()
            stderr = pathlib.Path(self.dir, "server.stderr").read_text().strip()[-2000:]
            self.stop()
            how = f"printed {line!r} first" if line else f"exited with status {self.proc.returncode}"
            raise RuntimeError(f"{binary} did not start ({how}); stderr: {stderr or '(empty)'}")
        self.base_url = line[len(LISTENING):]
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=stdout.read, daemon=True).start()

    def _end(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self._end()
        self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class IssuerProcess:
    """The loopback test issuer (tests/src/issuer.rs, the `test_issuer` binary, built by
    scripts/test-all) standing in for Google, Apple, Facebook and OpenID Connect: it mints the
    social tokens, so neither the tests nor the conformance runner sign anything themselves.
    It exits when its stdin closes, so it cannot outlive its user. Raises RuntimeError when it
    cannot be started."""

    def __init__(self) -> None:
        target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        binary = os.environ.get("SESSIONKIT_TEST_ISSUER_BIN", str(target / "debug" / "test_issuer"))
        if not pathlib.Path(binary).is_file():
            raise RuntimeError(f"{binary} not found: run `cargo build -p sessionkit-tests --bin test_issuer`")
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None  # stdout=PIPE
        line = self.proc.stdout.readline()
        if not line.startswith(LISTENING):
            self.stop()
            raise RuntimeError(f"the test issuer did not start ({binary}): {line!r}")
        self.url = line[len(LISTENING):].strip()

    def providers_toml(self) -> str:
        """The server config's provider tables that trust this issuer (GET /control/providers.toml)."""
        with urllib.request.urlopen(f"{self.url}/control/providers.toml", timeout=10) as r:
            return str(r.read().decode())

    def credential(self, kind: str, spec: Dict[str, Any]) -> str:
        """A token (or, for `google_auth_code`, a code) for `kind` from a conformance spec such
        as `{"sub": "u1", "aud": "wrong"}` (POST /control/credential; tests/src/issuer.rs
        `credential`)."""
        status, doc = http("POST", f"{self.url}/control/credential", {"kind": kind, "spec": spec})
        if status != 200:
            raise RuntimeError(f"the test issuer refused {kind} {spec}: {status} {doc}")
        return str(doc["token"])

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
