"""A client of sessionkit-server's admin API, for backends and scripts (#15)::

    from sessionkit.admin import AdminClient

    admin = AdminClient("https://auth.example", "myapp-abcde", public_key, private_key)
    admin.revoke_sessions(user_id)   # each device's session ends at its next refresh

The paths are docs/PROTOCOL.md's "Admin API subset" (``/api/admin/v3.0``). Standard library
HTTP only (urllib); synchronous, safe to share between threads. The admin key pair and the
admin token never appear in a repr, an error or a log line.
"""

from __future__ import annotations

import json
import threading
import typing
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["AdminClient", "AdminError"]

_API = "/api/admin/v3.0"
# The server's bounds on one import request (docs/SERVER.md, "Importing users"): 1,000 lines and
# a 1 MiB body; the bytes kept under it with room for the array's punctuation.
_IMPORT_BATCH_LINES = 1000
_IMPORT_BATCH_BYTES = 900 * 1024


class AdminError(Exception):
    """The admin API refused a call, or could not be reached.

    ``code``: the server's ``error_code`` (``UserNotFound``, ``InvalidSession``, ``BadRequest``,
    ...), ``"Network"`` when the server could not be reached, ``"MalformedResponse"`` for an
    answer that is not the protocol's; ``http_status``: the HTTP status (0 without an answer).
    """

    def __init__(self, code: str, message: str, http_status: int) -> None:
        super().__init__(f"{message} (admin API error {code}, HTTP {http_status})")
        self.code = code
        self.message = message
        self.http_status = http_status

    def __repr__(self) -> str:
        return f"AdminError(code={self.code!r}, message={self.message!r}, http_status={self.http_status})"


class AdminClient:
    """sessionkit-server's admin API for one app.

    ``base_url``: the server; ``app_id``: the app; ``public_key``/``private_key``: the admin
    key pair of the server's ``[admin]`` table (read them from the environment or a secret
    store, not from a command line); ``group_id``: the hosted service's project id, any string
    for sessionkit-server; ``timeout_secs``: per request, in seconds. Logs in lazily with the
    key pair (POST ``/auth/providers/mongodb-cloud/login``) and again when the admin token has
    expired. Every method raises ``AdminError`` with the server's code when a call is refused
    or cannot be made.
    """

    def __init__(
        self,
        base_url: str,
        app_id: str,
        public_key: str,
        private_key: str,
        *,
        group_id: str = "sessionkit",
        timeout_secs: float = 30,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._public_key = public_key
        self._private_key = private_key
        self.group_id = group_id
        self.timeout_secs = timeout_secs
        self._token: typing.Optional[str] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AdminClient(base_url={self.base_url!r}, app_id={self.app_id!r})"

    # ---- plumbing ----

    def _send(self, method: str, url: str, body: typing.Any, token: typing.Optional[str]) -> typing.Tuple[int, typing.Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_secs) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
            e.close()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise AdminError("Network", f"cannot reach {self.base_url}: {reason}", 0) from None
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = None
            if 200 <= status < 300:
                raise AdminError("MalformedResponse", "the admin API answered something not JSON", status) from None
        if not 200 <= status < 300:
            code, message = "Unknown", f"HTTP {status}"
            if isinstance(doc, dict):
                code = str(doc.get("error_code") or code)
                message = str(doc.get("error") or message)
            raise AdminError(code, message, status)
        return status, doc

    def _login(self) -> str:
        _, doc = self._send(
            "POST",
            f"{self.base_url}{_API}/auth/providers/mongodb-cloud/login",
            {"username": self._public_key, "apiKey": self._private_key},
            None,
        )
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
            raise AdminError("MalformedResponse", "the admin login answered no access_token", 200)
        return str(doc["access_token"])

    def _call(self, method: str, path: str, body: typing.Any = None) -> typing.Any:
        url = f"{self.base_url}{_API}/groups/{_quote(self.group_id)}/apps/{_quote(self.app_id)}{path}"
        with self._lock:
            token = self._token
        for attempt in (0, 1):
            if token is None:
                token = self._login()
                with self._lock:
                    self._token = token
            try:
                return self._send(method, url, body, token)[1]
            except AdminError as e:
                # An admin token that expired: log in once more, then give up.
                if e.http_status != 401 or attempt == 1 or e.code == "UserDisabled":
                    raise
                token = None
        return None  # not reached

    # ---- users ----

    def log_in(self) -> None:
        """Logs in with the key pair now (otherwise done at the first call); returns None.
        Raises ``AdminError`` (``code`` ``InvalidSession``/``AuthError`` for a wrong key pair,
        ``NotFound`` when the server has no ``[admin]`` table)."""
        token = self._login()
        with self._lock:
            self._token = token

    def list_users(self) -> typing.List[typing.Dict[str, typing.Any]]:
        """Returns every user of the app, oldest first, as the server's documents (``_id``,
        ``identities``, ``disabled``, ``data``, ``custom_data``, ``creation_date`` and
        ``last_authentication_date`` in Unix seconds). GET ``/users``. Raises ``AdminError``."""
        doc = self._call("GET", "/users")
        return list(doc or [])

    def get_user(self, user_id: str) -> typing.Dict[str, typing.Any]:
        """Returns one user's document (as in ``list_users``). GET ``/users/{id}``. Raises
        ``AdminError`` (``code='UserNotFound'``, HTTP 404, for an unknown id)."""
        return dict(self._call("GET", f"/users/{_quote(user_id)}"))

    def find_users(self, *, email: typing.Optional[str] = None, provider_type: typing.Optional[str] = None) -> typing.List[typing.Dict[str, typing.Any]]:
        """Returns the users whose profile ``data.email`` equals ``email`` (case-insensitive)
        and/or who have an identity of ``provider_type`` (e.g. ``"oauth2-google"``); filtered
        here from ``list_users()`` (the admin API has no search). Raises ``AdminError``."""
        found = []
        for user in self.list_users():
            data = user.get("data") or {}
            if email is not None and str(data.get("email", "")).lower() != email.lower():
                continue
            if provider_type is not None and not any(
                i.get("provider_type") == provider_type for i in user.get("identities") or []
            ):
                continue
            found.append(user)
        return found

    def create_user(self, email: str, password: str) -> typing.Dict[str, typing.Any]:
        """Creates a confirmed email/password user and returns its document. POST ``/users``.
        Raises ``AdminError`` (``AccountNameInUse``, ``BadRequest`` for a password outside 6 to
        128 characters)."""
        return dict(self._call("POST", "/users", {"email": email, "password": password}))

    def revoke_sessions(self, user_id: str) -> None:
        """Revokes every session of the user: each device's session ends at its next refresh
        (access tokens already issued stay valid until they expire); returns None. PUT
        ``/users/{id}/logout``. Raises ``AdminError`` (``UserNotFound``)."""
        self._call("PUT", f"/users/{_quote(user_id)}/logout")

    def disable_user(self, user_id: str) -> None:
        """Disables the user and ends its sessions: logins and refreshes answer
        ``UserDisabled``; returns None. PUT ``/users/{id}/disable``. Raises ``AdminError``."""
        self._call("PUT", f"/users/{_quote(user_id)}/disable")

    def enable_user(self, user_id: str) -> None:
        """Enables a disabled user (its ended sessions stay ended); returns None. PUT
        ``/users/{id}/enable``. Raises ``AdminError``."""
        self._call("PUT", f"/users/{_quote(user_id)}/enable")

    def delete_user(self, user_id: str) -> None:
        """Deletes the user with its identities, sessions and API keys; returns None. DELETE
        ``/users/{id}``. Raises ``AdminError`` (``UserNotFound``)."""
        self._call("DELETE", f"/users/{_quote(user_id)}")

    def set_custom_data(self, user_id: str, data: typing.Dict[str, typing.Any]) -> None:
        """Sets the user's custom data: the ``user_data`` claim of its next access tokens (the
        SDK's ``refresh_custom_data()`` reads it); returns None. PUT ``/users/{id}/custom_data``.
        Raises ``AdminError``; TypeError when ``data`` is not JSON-serializable."""
        self._call("PUT", f"/users/{_quote(user_id)}/custom_data", data)

    def import_users(self, lines: typing.Iterable[typing.Any], dry_run: bool = False) -> typing.Dict[str, typing.Any]:
        """Imports users (docs/SERVER.md, "Importing users") and returns the report:
        ``created``, ``updated``, ``unchanged``, ``refused`` (counts), ``dry_run``, and
        ``refusals``, a list of ``{"line", "reason"}`` whose ``line`` is the 1-based position in
        ``lines``. Each line is a dict (one user, or a ``{"firebase_params": ...}`` line that
        holds for the lines after it) or its JSON text; blank text lines count but import
        nothing, and text that is not JSON is refused here. Sent in batches of at most 1,000
        lines and under 1 MiB (POST ``/users/import``, ``?dry_run=true``), the last Firebase
        parameters line repeated at the head of each later batch; with ``dry_run`` nothing is
        written. A refused line is in the report, not an exception. Raises ``AdminError`` when
        a batch is refused whole (``BadRequest``) or cannot be sent (the batches before it
        stay imported); TypeError when a line is not JSON-serializable."""
        report: typing.Dict[str, typing.Any] = {
            "created": 0, "updated": 0, "unchanged": 0, "refused": 0,
            "dry_run": bool(dry_run), "refusals": [],
        }
        items: typing.List[typing.Tuple[int, typing.Any]] = []
        for n, line in enumerate(lines, start=1):
            if isinstance(line, bytes):
                line = line.decode()
            if isinstance(line, str):
                if not line.strip():
                    continue
                try:
                    line = json.loads(line)
                except json.JSONDecodeError as e:
                    report["refused"] += 1
                    report["refusals"].append({"line": n, "reason": f"not JSON: {e.msg} at column {e.colno}"})
                    continue
            items.append((n, line))
        path = "/users/import" + ("?dry_run=true" if dry_run else "")
        params: typing.Any = None
        i = 0
        while i < len(items):
            batch: typing.List[typing.Any] = [] if params is None else [params]
            numbers: typing.List[typing.Optional[int]] = [None] * len(batch)
            carried = len(batch)
            size = len(json.dumps(batch))
            while i < len(items) and len(batch) < _IMPORT_BATCH_LINES:
                n, line = items[i]
                cost = len(json.dumps(line)) + 1
                if len(numbers) > carried and size + cost > _IMPORT_BATCH_BYTES:
                    break
                batch.append(line)
                numbers.append(n)
                size += cost
                if isinstance(line, dict) and "firebase_params" in line:
                    params = line
                i += 1
            doc = self._call("POST", path, batch)
            if not isinstance(doc, dict):
                raise AdminError("MalformedResponse", "the import answered no report", 200)
            for key in ("created", "updated", "unchanged", "refused"):
                report[key] += int(doc.get(key) or 0)
            for refusal in doc.get("refusals") or []:
                at = int(refusal["line"]) - 1
                original = numbers[at] if 0 <= at < len(numbers) else None
                if original is None:
                    # The repeated parameters line: already reported with its own batch.
                    report["refused"] -= 1
                    continue
                report["refusals"].append({"line": original, "reason": str(refusal["reason"])})
        report["refusals"].sort(key=lambda r: r["line"])
        return report

    # ---- tokens and security ----

    def verify_token(self, token: str) -> typing.Optional[typing.Dict[str, typing.Any]]:
        """Verifies an access token on the server and returns its decoded claims (``sub``,
        ``exp``, ``iat`` in Unix seconds, ``iss``, ``domain_id``, ``device_id``), or None when
        it has expired. POST ``/users/verify_token``. Raises ``AdminError`` (``code``
        ``InvalidSession``, HTTP 401, when it is forged or signed by no key of the app)."""
        doc = self._call("POST", "/users/verify_token", {"token": token})
        if doc == "token expired":
            return None
        if not isinstance(doc, dict):
            raise AdminError("MalformedResponse", "verify_token answered no claims", 200)
        return doc

    def set_refresh_token_lifetime(self, seconds: int) -> None:
        """Sets the lifetime of the app's refresh tokens issued from now on, in seconds
        (the hosted service allowed 30 minutes to 5 years); returns None. PUT
        ``/security/refresh_token_expiration``. Raises ``AdminError`` (``BadRequest`` for a
        value that is not positive)."""
        self._call("PUT", "/security/refresh_token_expiration", {"expiration_time_seconds": int(seconds)})

    def events(
        self,
        *,
        user_id: typing.Optional[str] = None,
        kinds: typing.Optional[typing.Iterable[str]] = None,
        since: typing.Optional[int] = None,
        until: typing.Optional[int] = None,
        limit: typing.Optional[int] = None,
    ) -> typing.List[typing.Dict[str, typing.Any]]:
        """The app's audit events (docs/SERVER.md, "Audit log"), oldest first: dicts with
        ``seq``, ``at`` (Unix seconds), ``app_id``, ``kind``, ``user_id``, ``session_id``,
        ``ip``, ``user_agent``, ``actor`` (``user``, ``admin`` or ``server``) and ``detail``;
        never a token, password, code or hash. Filtered by user, kinds (e.g.
        ``["login_failed"]``) and time (``since`` inclusive, ``until`` exclusive, Unix
        seconds); every page of GET ``/events`` is fetched unless ``limit`` caps the count.
        Raises ``AdminError`` (``BadRequest`` for an unknown kind)."""
        base: typing.List[typing.Tuple[str, str]] = []
        if user_id is not None:
            base.append(("user_id", user_id))
        if kinds:
            base.append(("kind", ",".join(kinds)))
        if since is not None:
            base.append(("since", str(int(since))))
        if until is not None:
            base.append(("until", str(int(until))))
        out: typing.List[typing.Dict[str, typing.Any]] = []
        after: typing.Optional[int] = None
        while limit is None or len(out) < limit:
            page = 1000 if limit is None else min(1000, limit - len(out))
            query = base + [("limit", str(page))] + ([("after", str(after))] if after is not None else [])
            doc = self._call("GET", "/events?" + urllib.parse.urlencode(query))
            if not isinstance(doc, dict):
                raise AdminError("MalformedResponse", "events answered no page", 200)
            out.extend(doc.get("events") or [])
            after = doc.get("next_after")
            if after is None:
                break
        return out


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
