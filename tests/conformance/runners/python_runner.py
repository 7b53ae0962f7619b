#!/usr/bin/env python3
"""The Python conformance runner: every scenario through the `sessionkit` Python package.

Usage: python_runner.py [--scenarios DIR] [--out FILE] [--base-url URL --app-id ID]
                        [--admin PUBLIC:PRIVATE] [--jwt-key KEY] [--filter TEXT] [--server-bin PATH]

Without --base-url, each scenario gets a fresh sessionkit-server (the binary from --server-bin,
env SESSIONKIT_SERVER_BIN, or target/debug/sessionkit-server). Writes the transcript that
tests/conformance/report.py lines up with the other languages', and prints
`python: N passed, N failed`. The format is in tests/conformance/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Optional

import requests

import sessionkit
from sessionkit import AppConfig, AppError, Credentials, DeviceInfo, LogOutScope, StorageConfig
from sessionkit.requests_auth import UserAuth as RequestsAuth

REPO = pathlib.Path(__file__).resolve().parents[3]
# The server and HTTP helpers shared with the pytest suite; found from this file, whatever the cwd.
sys.path.insert(0, str(REPO / "bindings" / "python" / "tests"))
import sk_server  # noqa: E402

APP_ID = "sk-test"
JWT_KEY = "test-jwt-signing-key-0123456789"
ADMIN = ("test-admin-public", "test-admin-private")

SERVER_CONFIG = """
listen = "127.0.0.1:0"
data_dir = "{data_dir}"
test_clock = true
rate_limits = {{ enabled = false }}

[admin]
public_key = "{admin_public}"
private_key = "{admin_private}"

[[app]]
id = "{app_id}"
access_token_lifetime_secs = {access}
refresh_token_lifetime_secs = {refresh}
refresh_token_rotation = {rotation}
dpop = "{dpop}"

[app.providers.anon-user]
[app.providers.local-userpass]
auto_confirm = {auto_confirm}
reset_function = "{reset_function}"
allow_insecure_reset_function = true
{mail_links}[app.providers.api-key]
[app.providers.custom-token]
algorithm = "HS256"
key = "{jwt_key}"
[app.providers.custom-function]
id_field = "username"
{social}
{email_otp}
{mail}
"""

# Scenarios with "server": {"mail": true}: the server sends its mail through a loopback SMTP relay
# (tests/smtp/relay.py) and links to these pages; read_mail recognises the links by them.
MAIL_FROM = "SessionKit Conformance <no-reply@example.com>"
CONFIRM_URL = "https://app.example/confirm"
RESET_URL = "https://app.example/reset"
# "server": {"email_otp": true}: one-time codes by mail, living 300 s of the server's clock.
EMAIL_OTP_TOML = "[app.providers.email-otp]\ncode_lifetime_secs = 300\n"
MAIL_WAIT_SECS = 15
# The device the scenario's first App is (README "open_device").
MAIN_DEVICE = "main"
# The device open_process names its App (README).
PROCESS_DEVICE = "process"
# revoke_session with "session": "unknown": an id no session has.
UNKNOWN_SESSION_ID = "000000000000000000000000"
LOG_OUT_SCOPES = {
    "this_device": LogOutScope.THIS_DEVICE,
    "other_devices": LogOutScope.OTHER_DEVICES,
    "everywhere": LogOutScope.EVERYWHERE,
}
HOW_TO_GET_THE_RELAY = (
    "the mail scenarios need a Python with aiosmtpd for their SMTP relay: python3 -m venv "
    "target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd cryptography, then set "
    "SESSIONKIT_TEST_SMTP_PYTHON=$PWD/target/smtp-venv/bin/python (scripts/test-all does both)"
)

# The social credential kinds of scenarios with "server": {"social": true}, and the
# constructors they become; the OpenID Connect issuer is named "conformance" by the test issuer.
SOCIAL = {
    "google_id_token": lambda t: Credentials.GOOGLE_ID_TOKEN(id_token=t),
    "google_auth_code": lambda t: Credentials.GOOGLE_AUTH_CODE(auth_code=t),
    "apple_id_token": lambda t: Credentials.APPLE_ID_TOKEN(id_token=t),
    "facebook_access_token": lambda t: Credentials.FACEBOOK_ACCESS_TOKEN(access_token=t),
    "oidc_id_token": lambda t: Credentials.OIDC_ID_TOKEN(provider="conformance", id_token=t),
}


class Script(Exception):
    """The scenario is wrong (unknown label, bad step): the scenario fails."""


def pascal(name: str) -> str:
    """UniFFI's Python enums are UPPER_SNAKE; transcripts use the Rust names."""
    return "".join(part.capitalize() for part in name.split("_"))


def normalise_error(e: Exception) -> dict:
    kind = type(e).__name__
    out: dict = {"type": kind}
    if isinstance(e, AppError.Service):
        out["code"] = e.code
    if isinstance(e, AppError.SessionExpired):
        out["kind"] = pascal(e.kind.name)
    return out


class Relay:
    """The loopback SMTP relay of a scenario with "server": {"mail": true}: tests/smtp/relay.py
    run by the Python of SESSIONKIT_TEST_SMTP_PYTHON in a fresh directory, on a port the kernel
    picks (--port 0; the port is in DIR/ready). Each mail it takes is DIR/mail-NNNN.json. Raises
    RuntimeError, saying how to get the relay, when it cannot start."""

    def __init__(self) -> None:
        python = os.environ.get("SESSIONKIT_TEST_SMTP_PYTHON")
        if not python:
            raise RuntimeError(f"SESSIONKIT_TEST_SMTP_PYTHON is not set; {HOW_TO_GET_THE_RELAY}")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="sk-conformance-relay-"))
        # A file, not a pipe that nobody reads while the relay runs; a failed start quotes it.
        self.stderr = open(self.dir / "relay.stderr", "w")
        try:
            self.proc = subprocess.Popen(
                [python, str(REPO / "tests" / "smtp" / "relay.py"), "--dir", str(self.dir), "--port", "0"],
                stdout=subprocess.DEVNULL, stderr=self.stderr)
        except OSError as e:
            self.stderr.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"cannot run the SMTP relay with {python} ({e}); {HOW_TO_GET_THE_RELAY}") from None
        ready = self.dir / "ready"
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None:
                err = (self.dir / "relay.stderr").read_text()
                self.stop()
                raise RuntimeError(f"the SMTP relay exited ({self.proc.returncode}): {err.strip()[-500:]}\n"
                                   f"{HOW_TO_GET_THE_RELAY}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the SMTP relay did not start within 30 s")
            time.sleep(0.05)
        self.port = int(ready.read_text().strip())

    def toml(self) -> str:
        """The server's [mail] table, pointing at this relay."""
        return f'[mail]\nsmtp_url = "smtp://127.0.0.1:{self.port}"\nfrom = "{MAIL_FROM}"\n'

    def mails_to(self, address: str) -> list:
        """Every mail received for `address` so far, in order of arrival."""
        out = []
        for f in sorted(self.dir.glob("mail-*.json")):
            mail = json.loads(f.read_text())
            if any(r.lower() == address.lower() for r in mail.get("rcpt_tos", [])):
                out.append(mail)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def mail_link(text: str, page: str) -> Optional[str]:
    """The first link in a mail's text part to `page` (confirm_url or reset_url) with a query."""
    m = re.search(re.escape(page) + r"\?\S+", text)
    return m.group(0) if m else None


def mail_code(text: str) -> Optional[str]:
    """The one-time code a mail carries: the first run of 6 to 10 digits (no digit on either
    side) in its text part, with the words that hold a link left out (a token in a link may hold
    digits)."""
    for word in text.split():
        if "://" in word:
            continue
        for run in re.split(r"[^0-9]", word):
            if 6 <= len(run) <= 10:
                return run
    return None


def local_server(binary: str, server_opts: dict, social: str = "", relay: Optional[Relay] = None) -> sk_server.ServerProcess:
    """A sessionkit-server process for one scenario, configured by its "server" options;
    `social`: the test issuer's provider tables, when the scenario signs in with them; `relay`:
    the SMTP relay its mail goes through ("mail": true)."""
    return sk_server.ServerProcess(
        binary,
        SERVER_CONFIG,
        prefix="sk-conformance-",
        admin_public=ADMIN[0],
        admin_private=ADMIN[1],
        app_id=APP_ID,
        access=server_opts.get("access_token_lifetime_secs", 1800),
        refresh=server_opts.get("refresh_token_lifetime_secs", 3600),
        rotation=str(server_opts.get("refresh_token_rotation", False)).lower(),
        dpop=server_opts.get("dpop", "optional"),
        auto_confirm=str(server_opts.get("auto_confirm", True)).lower(),
        reset_function=server_opts.get("reset_function", "pending"),
        jwt_key=JWT_KEY,
        social=social,
        mail_links=f'confirm_url = "{CONFIRM_URL}"\nreset_url = "{RESET_URL}"\n' if relay else "",
        mail=relay.toml() if relay else "",
        email_otp=EMAIL_OTP_TOML if server_opts.get("email_otp") else "",
    )


class Recorder(sessionkit.AuthEventListener):
    def __init__(self) -> None:
        self.events: list = []
        self.lock = threading.Lock()

    def on_event(self, event) -> None:
        with self.lock:
            self.events.append(event)


class ErrorHandler(sessionkit.SessionErrorHandler):
    """Records (device, user id, kind) for every device's App in one list."""

    def __init__(self, sink: list, device: str) -> None:
        self.sink, self.device = sink, device

    def on_session_error(self, user, error) -> None:
        self.sink.append((self.device, user.id(), pascal(error.kind.name)))


class Runner:
    counter = 0

    def __init__(self, base_url: str, app_id: str, admin: Optional[tuple], jwt_key: str, file_storage: bool,
                 dpop: bool = False):
        self.base_url, self.app_id, self.admin, self.jwt_key = base_url, app_id, admin, jwt_key
        # client.dpop: the main App (its restarts and processes) binds its sessions.
        self.dpop = dpop
        self.admin_token: Optional[str] = None
        self.storage_dir = tempfile.mkdtemp(prefix="sk-conformance-client-") if file_storage else None
        self.session_errors: list = []
        self.app = self.new_app()
        # The Apps open_device made, by device name: each its own in-memory store.
        self.devices: dict = {}
        self.users: dict = {}
        # (device, user id) -> label: the same user on two devices has two labels.
        self.labels: dict = {}
        # label -> the device its user is on.
        self.label_devices: dict = {}
        # label -> the session ids of its last `sessions` list.
        self.session_lists: dict = {}
        self.emails: dict = {}
        self.keys: dict = {}
        self.listeners: dict = {}
        self.refresh_base = self.refresh_count() if admin else 0
        self.issuer: Optional[sk_server.IssuerProcess] = None
        self.relay: Optional[Relay] = None
        # Per address: how many of its mails read_mail has read, and the last one.
        self.mails_read: dict = {}
        self.last_mail: dict = {}

    def new_app(self, device: str = MAIN_DEVICE, platform: Optional[str] = None, dpop: Optional[bool] = None):
        """An App of the scenario: the main device (file storage if asked; also a process on
        it), or an opened one (in memory) that tells the server `platform`."""
        on_main_store = device in (MAIN_DEVICE, PROCESS_DEVICE)
        storage = StorageConfig.FILE(dir=self.storage_dir, encryption_key=None) \
            if self.storage_dir and on_main_store else StorageConfig.IN_MEMORY()
        extra = {}
        if platform is not None:
            extra["device"] = DeviceInfo(platform=platform, platform_version="1.0",
                                         device_name=f"{platform} test device")
        app = sessionkit.App(AppConfig(app_id=self.app_id, base_url=self.base_url, storage=storage,
                                       request_timeout_ms=10_000,
                                       dpop=self.dpop if dpop is None else dpop, **extra))
        app.set_session_error_handler(ErrorHandler(self.session_errors, device))
        return app

    def app_of(self, device: str):
        if device == MAIN_DEVICE:
            return self.app
        if device not in self.devices:
            raise Script(f"unknown device {device!r} (open_device first)")
        return self.devices[device]

    def session_id(self, spec) -> str:
        """The id a revoke_session step names: {"of": LABEL, "index": N} or "unknown"."""
        if spec == "unknown":
            return UNKNOWN_SESSION_ID
        if not isinstance(spec, dict) or "of" not in spec or "index" not in spec:
            raise Script(f'"session" is {{"of", "index"}} or "unknown", not {spec!r}')
        ids = self.session_lists.get(spec["of"], [])
        if not 0 <= spec["index"] < len(ids):
            raise Script(f"{spec['of']!r} listed no session {spec['index']} (sessions first)")
        return ids[spec["index"]]

    # ---- helpers ---------------------------------------------------------------------------
    def user(self, step: dict, key: str = "user"):
        label = step.get(key)
        if label not in self.users:
            raise Script(f"unknown user label {label!r}")
        return self.users[label]

    def label(self, user, as_name: Optional[str], device: str = MAIN_DEVICE) -> str:
        key = (device, user.id())
        label = self.labels.get(key)
        if label is None:
            label = as_name or f"user{len(self.labels) + 1}"
            self.labels[key] = label
        for name in (label, as_name):
            if name:
                self.users[name] = user
                self.label_devices[name] = device
        return label

    def label_of_id(self, user_id: Optional[str], device: str = MAIN_DEVICE):
        if user_id is None:
            return None
        return self.labels.get((device, user_id), "?")

    def email(self, name: str) -> str:
        if name not in self.emails:
            Runner.counter += 1
            self.emails[name] = f"{name}-{os.getpid()}-{Runner.counter}@example.com"
        return self.emails[name]

    def text(self, v) -> str:
        s = v if isinstance(v, str) else ""
        return self.email(s[len("$email:"):]) if s.startswith("$email:") else s

    def placeholders(self, value):
        if isinstance(value, str):
            for name, email in self.emails.items():
                if email == value:
                    return f"$email:{name}"
            return value
        if isinstance(value, list):
            return [self.placeholders(v) for v in value]
        if isinstance(value, dict):
            return {k: self.placeholders(v) for k, v in value.items()}
        return value

    def credentials(self, c: dict):
        if "anonymous" in c:
            return Credentials.ANONYMOUS(reuse=c["anonymous"].get("reuse", True))
        if "email_password" in c:
            e = c["email_password"]
            return Credentials.EMAIL_PASSWORD(email=self.text(e["email"]), password=self.text(e["password"]))
        if "api_key" in c:
            key = self.keys.get(c["api_key"], (None, None))[1]
            return Credentials.API_KEY(key=key or c["api_key"])
        if "jwt" in c:
            return Credentials.JWT(token=sign_jwt(c["jwt"], self.jwt_key, self.app_id))
        if "function" in c:
            return Credentials.FUNCTION(payload_json=json.dumps(c["function"]))
        if "email_otp" in c:
            e = c["email_otp"]
            return Credentials.EMAIL_OTP(email=self.text(e["email"]), code=self.mailed_code(e))
        for kind, make in SOCIAL.items():
            if kind in c:
                if self.issuer is None:
                    raise Script('social credentials need "server": {"social": true}')
                try:
                    return make(self.issuer.credential(kind, c[kind]))
                except RuntimeError as e:
                    raise Script(str(e)) from None
        raise Script(f"unknown credentials {c}")

    def admin_login(self) -> str:
        if not self.admin:
            raise Script("this step needs the admin API (--admin)")
        self.admin_token = sk_server.admin_login(self.base_url, *self.admin, error=Script)
        return self.admin_token

    def admin_call(self, method: str, path: str, body: Any = None):
        url = f"{self.base_url}{path}" if path.startswith("/api/") else \
            f"{self.base_url}{sk_server.ADMIN_API}/groups/conformance/apps/{self.app_id}{path}"
        # A cached admin token expires when a scenario moves the server clock: log in again.
        for fresh in (False, True):
            token = self.admin_token if (self.admin_token and not fresh) else self.admin_login()
            status, doc = sk_server.http(method, url, body, token)
            if status != 401 or fresh:
                return status, doc

    def admin_ok(self, method: str, path: str, body: Any = None):
        status, doc = self.admin_call(method, path, body)
        if not 200 <= status < 300:
            raise Script(f"admin {path}: {status} {doc}")

    def refresh_count(self) -> int:
        _, doc = self.admin_call("GET", "/metrics")
        return (doc or {}).get("requests", {}).get("refresh", 0)

    def outbox_token(self, email: str, kind: str):
        _, doc = self.admin_call("GET", f"/outbox?email={email}")
        items = [i for i in (doc or []) if i.get("kind") == kind]
        if not items:
            raise Script(f"no {kind} token in the outbox for {email}")
        return items[-1]["token"], items[-1]["tokenId"]

    def read_mail(self, email: str) -> dict:
        """Waits for the next mail to `email` not read yet; remembers it as its last mail."""
        if self.relay is None:
            raise Script('read_mail needs "server": {"mail": true}')
        n = self.mails_read.get(email, 0)
        deadline = time.monotonic() + MAIL_WAIT_SECS
        while True:
            mails = self.relay.mails_to(email)
            if len(mails) > n:
                break
            if time.monotonic() > deadline:
                raise Script(f"no mail number {n + 1} to {email} within {MAIL_WAIT_SECS} s ({n} read)")
            time.sleep(0.05)
        mail = mails[n]
        self.mails_read[email] = n + 1
        self.last_mail[email] = mail
        text = mail.get("text", "")
        link = "confirm" if mail_link(text, CONFIRM_URL) else "reset" if mail_link(text, RESET_URL) else None
        return {"link": link, "code": mail_code(text) is not None}

    def mailed_token(self, email: str, page: str):
        """The token and tokenId of the link to `page` in the last mail read for `email`."""
        mail = self.last_mail.get(email)
        link = mail_link(mail.get("text", ""), page) if mail else None
        if link is None:
            raise Script(f"the last mail read for {email} has no link to {page} (read_mail first)")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        if "token" not in query or "tokenId" not in query:
            raise Script(f"the link to {page} has no token and tokenId")
        return query["token"][0], query["tokenId"][0]

    def mailed_code(self, spec: dict) -> str:
        """{"email", "code": "mailed" | "wrong"}: the code in the address's last read mail, or
        that code with its last digit changed."""
        email = self.text(spec["email"])
        mail = self.last_mail.get(email)
        code = mail_code(mail.get("text", "")) if mail else None
        if code is None:
            raise Script(f"the last mail read for {email} has no code (read_mail first)")
        which = spec.get("code")
        if which == "mailed":
            return code
        if which == "wrong":
            return code[:-1] + str((int(code[-1]) + 1) % 10)
        raise Script(f'email_otp "code" is "mailed" or "wrong", not {which!r}')

    @staticmethod
    def key_view(k) -> dict:
        return {"name": k.name, "disabled": k.disabled, "has_key": k.key is not None}

    # ---- steps -----------------------------------------------------------------------------
    async def step(self, step: dict):
        op = step.get("do")
        as_name = step.get("as")
        epa = self.app.email_password_auth()
        if op == "log_in":
            device = step.get("device", MAIN_DEVICE)
            user = await self.app_of(device).log_in(self.credentials(step["credentials"]))
            return self.label(user, as_name, device)
        if op == "open_device":
            name, platform = step.get("name"), step.get("platform")
            if not isinstance(name, str) or not isinstance(platform, str):
                raise Script('open_device needs "name" and "platform"')
            if name == MAIN_DEVICE or name in self.devices:
                raise Script(f"device {name!r} is already open")
            self.devices[name] = self.new_app(name, platform, dpop=step.get("dpop") is True)
            return None
        if op == "dpop_bound":
            user = self.user(step)
            thumbprint = user.dpop_thumbprint()
            token = user.access_token()
            jkt = (jwt_payload(token).get("cnf") or {}).get("jkt") if token else None
            cnf_jkt = None if jkt is None else "thumbprint" if jkt == thumbprint else "other"
            return {"bound": thumbprint is not None, "cnf_jkt": cnf_jkt}
        if op == "stolen_refresh":
            status, doc = sk_server.http("POST", f"{self.base_url}/api/client/v2.0/auth/session",
                                         token=self.user(step).refresh_token() or "")
            return {"status": status, "code": doc.get("error_code") if isinstance(doc, dict) else None}
        if op == "stolen_access":
            status, _ = sk_server.http("GET", f"{self.base_url}/api/client/v2.0/auth/profile",
                                       token=self.user(step).access_token() or "")
            return {"status": status}
        if op == "hook_request":
            url = f"{self.base_url}{self.text(step['path'])}"
            auth = RequestsAuth(self.user(step))
            # requests blocks: off the event loop, as an app's worker thread would call it.
            response = await asyncio.to_thread(requests.request, step.get("method", "GET"), url, auth=auth)
            return {"status": response.status_code}
        if op == "open_process":
            if not self.storage_dir:
                raise Script('open_process needs "client": {"storage": "file"}')
            if PROCESS_DEVICE in self.devices:
                raise Script("a process is already open")
            uid = self.user(step).id()
            app = self.new_app(PROCESS_DEVICE)
            theirs = next((u for u in app.all_users() if u.id() == uid), None)
            if theirs is None:
                raise Script("the other process does not have the user")
            self.devices[PROCESS_DEVICE] = app
            self.label(theirs, as_name, PROCESS_DEVICE)
            return None
        if op == "sessions":
            sessions = await self.user(step).sessions()
            self.session_lists[step["user"]] = [s.id for s in sessions]
            return [{"platform": s.device.platform, "current": s.current, "provider_type": s.provider_type}
                    for s in sessions]
        if op == "revoke_session":
            user = self.user(step)
            await user.revoke_session(self.session_id(step.get("session")))
            return None
        if op == "register":
            await epa.register_user(self.text(step["email"]), self.text(step["password"]))
            return None
        if op == "confirm_from_outbox":
            token, token_id = self.outbox_token(self.text(step["email"]), "confirm")
            await epa.confirm_user(token, token_id)
            return None
        if op == "confirm":
            await epa.confirm_user(self.text(step["token"]), self.text(step["token_id"]))
            return None
        if op == "resend_confirmation":
            await epa.resend_confirmation_email(self.text(step["email"]))
            return None
        if op == "retry_custom_confirmation":
            await epa.retry_custom_confirmation(self.text(step["email"]))
            return None
        if op == "send_reset_email":
            await epa.send_reset_password_email(self.text(step["email"]))
            return None
        if op == "reset_from_outbox":
            token, token_id = self.outbox_token(self.text(step["email"]), "reset")
            await epa.reset_password(token, token_id, self.text(step["password"]))
            return None
        if op == "read_mail":
            return self.read_mail(self.text(step["email"]))
        if op == "confirm_from_mail":
            token, token_id = self.mailed_token(self.text(step["email"]), CONFIRM_URL)
            await epa.confirm_user(token, token_id)
            return None
        if op == "reset_from_mail":
            token, token_id = self.mailed_token(self.text(step["email"]), RESET_URL)
            await epa.reset_password(token, token_id, self.text(step["password"]))
            return None
        if op == "email_otp_send":
            await self.app.email_otp().send(self.text(step["email"]))
            return None
        if op == "call_reset_function":
            await epa.call_reset_password_function(
                self.text(step["email"]), self.text(step["password"]), json.dumps(step.get("args", [])))
            return None
        if op == "current_user":
            u = self.app.current_user()
            return self.label_of_id(u.id() if u else None)
        if op == "all_users":
            return [self.label_of_id(u.id()) for u in self.app.all_users()]
        if op == "state":
            return pascal(self.user(step).state().name)
        if op == "provider_type":
            return self.user(step).provider_type()
        if op == "identities":
            return sorted(i.provider_type for i in self.user(step).identities())
        if op == "profile":
            p = self.user(step).profile()
            return {"name": p.name, "email": p.email}
        if op == "has_tokens":
            u = self.user(step)
            return {"access": u.access_token() is not None, "refresh": u.refresh_token() is not None}
        if op == "switch_user":
            self.app.switch_user(self.user(step))
            return None
        if op == "log_out":
            user = self.user(step)
            if "scope" not in step:
                await user.log_out()
            elif step["scope"] in LOG_OUT_SCOPES:
                await user.log_out(LOG_OUT_SCOPES[step["scope"]])
            else:
                raise Script(f'log_out "scope" is "this_device", "other_devices" or "everywhere", not {step["scope"]!r}')
            return None
        if op == "remove_user":
            await self.app.remove_user(self.user(step))
            return None
        if op == "delete_user":
            await self.app.delete_user(self.user(step))
            return None
        if op == "link":
            await self.user(step).link_credentials(self.credentials(step["credentials"]))
            return None
        if op == "refresh":
            await self.user(step).refresh_access_token()
            return None
        if op == "valid_access_token":
            await self.user(step).valid_access_token(step.get("min_ttl_secs"))
            return None
        if op == "custom_data":
            data = self.user(step).custom_data_json()
            return json.loads(data) if data else None
        if op == "refresh_custom_data":
            data = await self.user(step).refresh_custom_data_json()
            return json.loads(data) if data else None
        if op == "refresh_profile":
            p = await self.user(step).refresh_profile()
            return {"name": p.name, "email": p.email}
        if op == "call_function":
            args = step.get("args")
            raw = args if isinstance(args, str) else json.dumps(args)
            result = await self.user(step).call_function_json(step.get("name", ""), raw)
            try:
                return json.loads(result)
            except ValueError:
                return result
        if op == "request":
            path = self.text(step["path"]).replace("$app_id", self.app_id)
            body = json.dumps(step["body"]) if "body" in step else None
            response = await self.user(step).request(step.get("method", "GET"), path, body)
            return {"status": response.status}
        if op == "api_key_create":
            k = await self.user(step).api_keys().create(step.get("name", ""))
            self.keys[as_name or k.name] = (k.id, k.key)
            return self.key_view(k)
        if op == "api_key_list":
            keys = await self.user(step).api_keys().fetch_all()
            return sorted((self.key_view(k) for k in keys), key=lambda k: k["name"])
        if op in ("api_key_fetch", "api_key_enable", "api_key_disable", "api_key_delete"):
            label = step.get("key", "")
            key_id = self.keys.get(label, (label, None))[0]
            keys = self.user(step).api_keys()
            if op == "api_key_fetch":
                return self.key_view(await keys.fetch(key_id))
            await {"api_key_enable": keys.enable, "api_key_disable": keys.disable,
                   "api_key_delete": keys.delete}[op](key_id)
            return None
        if op == "subscribe":
            if not as_name:
                raise Script("subscribe needs \"as\"")
            recorder = Recorder()
            target = self.user(step) if "user" in step else self.app
            # A user's listener names users by the labels of that user's device.
            device = self.label_devices.get(step["user"], MAIN_DEVICE) if "user" in step else MAIN_DEVICE
            self.listeners[as_name] = (recorder, target.subscribe(recorder), device)
            return None
        if op == "unsubscribe":
            label = step.get("listener")
            if label not in self.listeners:
                raise Script(f"unknown listener {label!r}")
            self.listeners.pop(label)[1].cancel()
            return None
        if op == "events":
            label = step.get("listener")
            if label not in self.listeners:
                raise Script(f"unknown listener {label!r}")
            recorder, _, device = self.listeners[label]
            with recorder.lock:
                events, recorder.events = recorder.events, []
            return [f"{pascal(e.kind.name)}:{self.label_of_id(e.user_id, device) or '-'}" for e in events]
        if op == "session_errors":
            errors = list(self.session_errors)
            self.session_errors.clear()
            return [f"{self.label_of_id(uid, device)}:{kind}" for device, uid, kind in errors]
        if op == "refresh_count":
            return self.refresh_count() - self.refresh_base
        if op == "restart_app":
            if not self.storage_dir:
                raise Script("restart_app needs \"client\": {\"storage\": \"file\"}")
            for _, sub, _ in self.listeners.values():
                sub.cancel()
            self.listeners.clear()
            self.app = self.new_app()
            # The main device's users are looked up again by id; other devices' stay as they are.
            fresh = {u.id(): u for u in self.app.all_users()}
            self.users = {
                label: u if self.label_devices.get(label, MAIN_DEVICE) != MAIN_DEVICE else fresh[u.id()]
                for label, u in self.users.items()
                if self.label_devices.get(label, MAIN_DEVICE) != MAIN_DEVICE or u.id() in fresh
            }
            return None
        if op in ("admin_revoke", "admin_disable", "admin_enable", "admin_delete"):
            uid = self.user(step).id()
            method, path = {
                "admin_revoke": ("PUT", f"/users/{uid}/logout"),
                "admin_disable": ("PUT", f"/users/{uid}/disable"),
                "admin_enable": ("PUT", f"/users/{uid}/enable"),
                "admin_delete": ("DELETE", f"/users/{uid}"),
            }[op]
            self.admin_ok(method, path)
            return None
        if op == "admin_set_custom_data":
            self.admin_ok("PUT", f"/users/{self.user(step).id()}/custom_data", step.get("data"))
            return None
        if op == "advance_server_clock":
            self.admin_ok("POST", f"{sk_server.ADMIN_API}/test/clock", {"advance_secs": step["secs"]})
            return None
        raise Script(f"unknown operation {op!r}")

    def close(self) -> None:
        for _, sub, _ in self.listeners.values():
            sub.cancel()
        for app in self.devices.values():
            app.close()
        if self.storage_dir:
            shutil.rmtree(self.storage_dir, ignore_errors=True)


def jwt_payload(token: str) -> dict:
    """The payload of a JWT, unverified ({} for text that is not one)."""
    try:
        part = token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def sign_jwt(spec: dict, key: str, app_id: str) -> str:
    now = int(time.time())
    claims = {"sub": spec["sub"], "aud": app_id, "iat": now - 120,
              "exp": now - 60 if spec.get("expired") else now + 3600}
    claims.update(spec.get("claims", {}))
    if spec.get("signature") == "none":
        header = sk_server.b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{sk_server.b64url(json.dumps(claims).encode())}."
    secret = "not-the-server-key" if spec.get("signature") == "wrong_key" else key
    return sk_server.sign_hs256(claims, secret)


def check(expect: Optional[dict], outcome: dict) -> Optional[str]:
    if expect is None:
        return f"expected success, got error {outcome['error']}" if "error" in outcome else None
    if "error" in expect:
        got = outcome.get("error")
        if got is None:
            return f"expected error {expect}, got {outcome}"
        if got["type"] != expect["error"] or any(k in expect and got.get(k) != expect[k] for k in ("code", "kind")):
            return f"expected error {expect}, got {got}"
        return None
    if "value" in expect:
        if "ok" not in outcome or outcome["ok"] != expect["value"]:
            return f"expected value {json.dumps(expect['value'])}, got {json.dumps(outcome)}"
        return None
    return f"expected success, got error {outcome['error']}" if "error" in outcome else None


async def run_scenario(path: pathlib.Path, args) -> dict:
    name = path.stem
    scenario = json.loads(path.read_text())
    server_opts = scenario.get("server", {})
    if args.base_url and server_opts:
        return {"name": name, "skipped": "needs its own server configuration", "passed": False,
                "failures": [], "transcript": []}
    server = None
    issuer = relay = None
    try:
        issuer = sk_server.IssuerProcess() if server_opts.get("social") and not args.base_url else None
        relay = Relay() if server_opts.get("mail") and not args.base_url else None
    except RuntimeError as e:
        if issuer:
            issuer.stop()
        return {"name": name, "skipped": None, "passed": False, "failures": [str(e)], "transcript": []}
    if args.base_url:
        base_url, app_id, admin = args.base_url, args.app_id, args.admin
    else:
        try:
            server = local_server(args.server_bin, server_opts, issuer.providers_toml() if issuer else "", relay)
        except BaseException as e:
            for side in (issuer, relay):
                if side:
                    side.stop()
            if not isinstance(e, RuntimeError):
                raise
            # The server refused its config (a provider this build lacks, say): this scenario
            # fails, the others still run.
            return {"name": name, "skipped": None, "passed": False, "failures": [str(e)], "transcript": []}
        base_url, app_id, admin = server.base_url, APP_ID, ADMIN
    failures, transcript = [], []
    runner = Runner(base_url, app_id, admin, args.jwt_key or JWT_KEY,
                    scenario.get("client", {}).get("storage") == "file",
                    scenario.get("client", {}).get("dpop") is True)
    runner.issuer = issuer
    runner.relay = relay
    try:
        for i, step in enumerate(scenario.get("steps", [])):
            op = step.get("do", "?")
            try:
                outcome = {"ok": runner.placeholders(await runner.step(step))}
            except Script as e:
                failures.append(f"step {i} ({op}): {e}")
                break
            except AppError as e:
                outcome = {"error": normalise_error(e)}
            problem = check(step.get("expect"), outcome)
            if problem:
                failures.append(f"step {i} ({op}): {problem}")
            transcript.append({"step": i, "do": op, "outcome": outcome})
    finally:
        runner.close()
        if server:
            server.stop()
        if issuer:
            issuer.stop()
        if relay:
            relay.stop()
    return {"name": name, "skipped": None, "passed": not failures, "failures": failures, "transcript": transcript}


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=str(REPO / "tests/conformance/scenarios"))
    p.add_argument("--out", default=str(REPO / "target/conformance/python.json"))
    p.add_argument("--base-url")
    p.add_argument("--app-id")
    p.add_argument("--admin", type=lambda v: tuple(v.split(":", 1)))
    p.add_argument("--jwt-key")
    p.add_argument("--filter")
    p.add_argument("--server-bin", default=sk_server.default_server_bin())
    args = p.parse_args()
    if bool(args.base_url) != bool(args.app_id):
        p.error("--base-url and --app-id go together")
    files = sorted(pathlib.Path(args.scenarios).glob("*.json"))
    if args.filter:
        files = [f for f in files if args.filter in f.name]
    results = []
    for f in files:
        r = await run_scenario(f, args)
        if r["skipped"]:
            print(f"SKIP {r['name']} ({r['skipped']})")
        elif r["passed"]:
            print(f"PASS {r['name']}")
        else:
            print(f"FAIL {r['name']}\n  " + "\n  ".join(r["failures"]))
        results.append(r)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"language": "python", "scenarios": results}, indent=2))
    ran = [r for r in results if not r["skipped"]]
    failed = sum(1 for r in ran if not r["passed"])
    skipped = len(results) - len(ran)
    print(f"python: {len(ran) - failed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
