"""The server's Prometheus metrics (#26, docs/SERVER.md "Metrics"), read with an independent
parser (prometheus_client's OpenMetrics parser) after a scripted flow through the SDK:
registration, a login, a wrong password, a refresh, a logout. The counters move by exactly
what the flow did; no token, password or email is anywhere in the exposition."""

import base64
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterable, Tuple, cast

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from sessionkit import AppError, Credentials

from conftest import ADMIN_PRIVATE, ADMIN_PUBLIC, aio, start_server

Labels = Tuple[Tuple[str, str], ...]

# prometheus_client's parser has no type annotations.
parse_openmetrics = cast(Callable[[str], Iterable[Any]], text_string_to_metric_families)


def scrape(base_url: str, user: str = ADMIN_PUBLIC, password: str = ADMIN_PRIVATE) -> Tuple[int, str]:
    request = urllib.request.Request(f"{base_url}/metrics")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> Dict[Tuple[str, Labels], float]:
    """Every sample by name and sorted labels, as prometheus_client parses them."""
    out: Dict[Tuple[str, Labels], float] = {}
    for family in parse_openmetrics(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: Dict[Tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        v for (n, ls), v in parsed.items() if n == name and set(labels.items()) <= set(ls)
    )


@aio
async def test_a_scripted_flow_moves_exactly_its_counters() -> None:
    with start_server(providers_extra="[metrics]\nenabled = true") as server:
        assert scrape(server.base_url, password="wrong")[0] == 401
        app = server.app()
        auth = app.email_password_auth()
        await auth.register_user("mo@example.com", "mo-password-1")
        user = await app.log_in(Credentials.EMAIL_PASSWORD(email="mo@example.com", password="mo-password-1"))
        with pytest.raises(AppError.Service) as err:
            await app.log_in(Credentials.EMAIL_PASSWORD(email="mo@example.com", password="not-it"))
        assert err.value.code == "InvalidPassword"
        await user.refresh_access_token()
        access, refresh = user.access_token(), user.refresh_token()
        await user.log_out()
        app.close()

        status, text = scrape(server.base_url)
        assert status == 200, text
        parsed = samples(text)
        logins = "sessionkit_logins_total"
        assert value(parsed, logins, provider="local-userpass", outcome="success") == 1
        assert value(parsed, logins, provider="local-userpass", outcome="InvalidPassword") == 1
        assert value(parsed, "sessionkit_refreshes_total", outcome="success") == 1
        assert value(parsed, "sessionkit_revocations_total", by="logout") == 1
        assert value(parsed, "sessionkit_revocations_total", by="reuse") == 0
        route = "/api/client/v2.0/app/{app_id}/auth/providers/local-userpass/register"
        assert value(parsed, "sessionkit_http_requests_total", route=route, status="201") == 1
        assert value(parsed, "sessionkit_http_request_duration_seconds_count", route=route) == 1
        assert value(parsed, "sessionkit_process_resident_memory_bytes") > 0
        # Store operations by kind: one login's session, the refresh and the logout each used
        # the refresh token once.
        operations = "sessionkit_database_operation_duration_seconds_count"
        assert value(parsed, operations, operation="login") == 1
        assert value(parsed, operations, operation="use_refresh_token") == 2
        assert value(parsed, operations, operation="register") == 1
        in_use = value(parsed, "sessionkit_database_connections", state="in_use")
        idle = value(parsed, "sessionkit_database_connections", state="idle")
        assert 1 <= in_use + idle <= value(parsed, "sessionkit_database_connections_max")
        for secret in (access, refresh, "mo-password-1", "not-it", "mo@example.com", ADMIN_PRIVATE):
            assert secret and secret not in text
