"""Authentication, the active org unit and access, per semantics.md."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.auth import has_valid_checksum, new_secret
from tests.conftest import make_app, refresh
from tests.world import World, basic

Client = TestClient[Litestar]
ENDPOINTS = ["/analytics/campaigns", "/analytics/campaigns/spring/leads", "/org-units"]


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", lead=world.lead(unit))
    return unit


@pytest.fixture
def ready(client: Client, unit: str) -> Client:
    refresh(client)
    return client


def assert_401(response: object) -> None:
    assert response.status_code == 401  # type: ignore[attr-defined]
    challenge = response.headers["www-authenticate"]  # type: ignore[attr-defined]
    assert "Bearer" in challenge
    assert "Basic" in challenge
    assert response.json()["status"] == 401  # type: ignore[attr-defined]


def eventually(client: Client, headers: dict[str, str], status: int) -> None:
    """The status arrives within the 5 seconds that cached credentials may live."""
    started = time.monotonic()
    while (response := client.get("/analytics/campaigns", headers=headers)).status_code != status:
        assert time.monotonic() - started < 5, response.status_code
        time.sleep(0.1)
    if status == 401:
        assert_401(response)


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        "Token abc",
        "Basic",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        basic("nobody", "secret"),
    ],
)
def test_missing_malformed_or_unknown_credentials_are_401(
    ready: Client, path: str, authorization: str | None
) -> None:
    """Every endpoint answers 401 with a challenge naming both schemes."""
    headers = {"Authorization": authorization} if authorization is not None else {}
    assert_401(ready.get(path, headers=headers))


@pytest.mark.parametrize("path", ENDPOINTS)
def test_token_states(world: World, unit: str, ready: Client, path: str) -> None:
    """Valid works; revoked, expired and disabled-user tokens are 401, on every endpoint."""
    user = world.user(default_org_unit=unit)
    world.member(user, unit, "owner")
    valid = world.token(user)
    expired = world.token(user, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    future = world.token(user, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert ready.get(path, headers={"Authorization": valid}).status_code == 200
    assert ready.get(path, headers={"Authorization": future}).status_code == 200
    assert_401(ready.get(path, headers={"Authorization": expired}))
    revoked = world.token(user)
    world.sql(
        "UPDATE personal_access_tokens SET revoked_at = now() WHERE token_sha256 = sha256(%s)",
        (revoked.removeprefix("Bearer ").encode(),),
    )
    assert_401(ready.get(path, headers={"Authorization": revoked}))
    world.sql("UPDATE users SET disabled_at = now() WHERE id = %s", (user,))
    eventually(ready, {"Authorization": valid}, 401)


def test_any_token_text_whose_digest_is_stored_is_valid(
    world: World, unit: str, ready: Client
) -> None:
    """Validity is the stored SHA-256 of the UTF-8 bytes, whatever the token's format."""
    user = world.user(default_org_unit=unit)
    world.member(user, unit)
    header = world.token(user, text="日本語-token ✓")
    assert (
        ready.get("/analytics/campaigns", headers={"Authorization": header.encode()}).status_code
        == 200
    )


def test_service_account_states(world: World, unit: str, ready: Client) -> None:
    """A service account reads its own org unit with analytics:read; wrong secret or revoked is 401."""
    client_id, header = world.service_account(unit)
    assert ready.get("/analytics/campaigns", headers={"Authorization": header}).status_code == 200
    assert_401(
        ready.get("/analytics/campaigns", headers={"Authorization": basic(client_id, "wrong")})
    )
    _, no_scope = world.service_account(unit, scopes=["something:else"])
    response = ready.get("/analytics/campaigns", headers={"Authorization": no_scope})
    assert response.status_code == 403
    other = world.org_unit("Other")
    response = ready.get(
        "/analytics/campaigns", headers={"Authorization": header, "X-Org-Unit-Id": other}
    )
    assert response.status_code == 403
    world.sql("UPDATE service_accounts SET revoked_at = now() WHERE client_id = %s", (client_id,))
    eventually(ready, {"Authorization": header}, 401)


@pytest.mark.parametrize("role", ["owner", "admin", "analyst"])
def test_reading_roles(world: World, unit: str, ready: Client, role: str) -> None:
    """owner, admin and analyst may read analytics."""
    user = world.user(default_org_unit=unit)
    world.member(user, unit, role)
    assert (
        ready.get("/analytics/campaigns", headers={"Authorization": world.token(user)}).status_code
        == 200
    )


def test_member_role_and_no_membership_are_403(world: World, unit: str, ready: Client) -> None:
    """member may not read; a user without membership may not either."""
    member = world.user(default_org_unit=unit)
    world.member(member, unit, "member")
    stranger = world.user(default_org_unit=unit)
    for user in (member, stranger):
        response = ready.get("/analytics/campaigns", headers={"Authorization": world.token(user)})
        assert response.status_code == 403
        assert response.json()["status"] == 403


def test_active_org_unit_precedence(world: World, unit: str, client: Client) -> None:
    """Header, then cookie, then the user's default org unit."""
    second = world.org_unit("Second")
    world.event(second, campaign="second-only")
    refresh(client)
    user = world.user(default_org_unit=unit)
    world.member(user, unit)
    world.member(user, second)
    auth = {"Authorization": world.token(user)}

    def names(headers: dict[str, str], cookies: dict[str, str] | None = None) -> list[str]:
        client.cookies.clear()
        for key, value in (cookies or {}).items():
            client.cookies.set(key, value)
        response = client.get("/analytics/campaigns", headers=headers)
        assert response.status_code == 200, response.text
        return [row["name"] for row in response.json()["campaigns"]]

    assert names(auth) == ["spring"]
    assert names(auth, {"kenbun_active_ou": second}) == ["second-only"]
    assert names({**auth, "X-Org-Unit-Id": unit}, {"kenbun_active_ou": second}) == ["spring"]
    assert names({**auth, "X-Org-Unit-Id": second.upper()}) == ["second-only"]


def test_service_account_defaults_to_its_own_org_unit(
    world: World, unit: str, ready: Client
) -> None:
    """With no header or cookie a service account reads its own org unit."""
    _, header = world.service_account(unit)
    assert [
        r["name"]
        for r in ready.get("/analytics/campaigns", headers={"Authorization": header}).json()[
            "campaigns"
        ]
    ] == ["spring"]


def test_identical_403_for_existing_missing_and_invalid_org_units(
    world: World, unit: str, ready: Client
) -> None:
    """No access, a missing org unit and a non-UUID all get the same 403 body."""
    user = world.user(default_org_unit=unit)
    world.member(user, unit)
    auth = {"Authorization": world.token(user)}
    existing = world.org_unit("Not mine")
    bodies = set()
    for target in (existing, "00000000-0000-4000-8000-000000000000", "not-a-uuid", "' OR 1=1 --"):
        for headers, cookie in (({**auth, "X-Org-Unit-Id": target}, None), (auth, target)):
            ready.cookies.clear()
            if cookie is not None:
                ready.cookies.set("kenbun_active_ou", cookie)
            response = ready.get("/analytics/campaigns", headers=headers)
            assert response.status_code == 403
            bodies.add(response.text)
    assert len(bodies) == 1


def test_no_active_org_unit_is_a_403_that_says_how(world: World, unit: str, ready: Client) -> None:
    """A user without a default and without a choice is told how to choose."""
    user = world.user()
    world.member(user, unit)
    response = ready.get("/analytics/campaigns", headers={"Authorization": world.token(user)})
    assert response.status_code == 403
    assert "/org-units/active" in response.json()["detail"]


def test_choosing_the_active_org_unit_sets_a_cookie(world: World, unit: str, ready: Client) -> None:
    """POST /org-units/active checks access and sets an HttpOnly, SameSite=Lax cookie."""
    second = world.org_unit("Second")
    user = world.user()
    world.member(user, unit)
    auth = {"Authorization": world.token(user)}
    response = ready.post("/org-units/active", json={"org_unit_id": unit}, headers=auth)
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert f"kenbun_active_ou={unit}" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Path=/" in cookie
    assert ready.get("/analytics/campaigns", headers=auth).status_code == 200
    assert (
        ready.post("/org-units/active", json={"org_unit_id": second}, headers=auth).status_code
        == 403
    )
    for body in ({}, {"org_unit_id": 5}, {"org_unit_id": "nope"}, [], {"other": unit}):
        response = ready.post("/org-units/active", json=body, headers=auth)
        assert response.status_code == 400, body
    json_type = {**auth, "Content-Type": "application/json"}
    response = ready.post("/org-units/active", content=b"{not json", headers=json_type)
    assert response.status_code == 400
    response = ready.post("/org-units/active", content=b'{"org_unit_id": "x"}', headers=auth)
    assert response.status_code == 415


def test_membership_removed_after_cookie_was_set(world: World, unit: str, ready: Client) -> None:
    """Access is checked on every request: removing the membership ends it within 5 s."""
    user = world.user()
    world.member(user, unit)
    auth = {"Authorization": world.token(user)}
    assert (
        ready.post("/org-units/active", json={"org_unit_id": unit}, headers=auth).status_code == 204
    )
    assert ready.get("/analytics/campaigns", headers=auth).status_code == 200
    world.sql("DELETE FROM org_unit_memberships WHERE user_id = %s", (user,))
    eventually(ready, auth, 403)


def test_revocation_takes_effect_within_five_seconds(
    world: World, unit: str, ready: Client
) -> None:
    """A token revoked while cached stops working within 5 seconds."""
    user = world.user(default_org_unit=unit)
    world.member(user, unit)
    auth = {"Authorization": world.token(user)}
    assert ready.get("/analytics/campaigns", headers=auth).status_code == 200
    world.sql("UPDATE personal_access_tokens SET revoked_at = now() WHERE user_id = %s", (user,))
    eventually(ready, auth, 401)


def test_org_units_lists_readable_ones_and_marks_the_active(
    world: World, unit: str, ready: Client
) -> None:
    """GET /org-units lists what the caller may read, with the active one marked."""
    second = world.org_unit("Second")
    hidden = world.org_unit("Hidden")
    user = world.user(default_org_unit=unit)
    world.member(user, unit, "owner")
    world.member(user, second, "analyst")
    world.member(user, hidden, "member")
    body = ready.get("/org-units", headers={"Authorization": world.token(user)}).json()
    assert body == {
        "org_units": [
            {"id": unit, "name": "Acme", "active": True},
            {"id": second, "name": "Second", "active": False},
        ]
    }


def test_secure_cookie_setting(world: World, unit: str, database_url: str) -> None:
    """Behind HTTPS the cookie is marked Secure."""
    with TestClient(make_app(database_url, secure_cookies=True)) as secure_client:
        user = world.user()
        world.member(user, unit)
        response = secure_client.post(
            "/org-units/active",
            json={"org_unit_id": unit},
            headers={"Authorization": world.token(user)},
        )
        assert "Secure" in response.headers["set-cookie"]


def test_issued_secrets_carry_prefix_entropy_and_checksum() -> None:
    """Issued tokens are recognisable by prefix and checksum without a database."""
    token = new_secret("kbn_pat_")
    assert token.startswith("kbn_pat_")
    assert has_valid_checksum(token)
    tampered = token[:-7] + ("A" if token[-7] != "A" else "B") + token[-6:]
    assert not has_valid_checksum(tampered)
    assert len({new_secret("kbn_pat_") for _ in range(1000)}) == 1000


def test_the_org_unit_boundary_holds_for_every_endpoint(
    world: World, unit: str, ready: Client
) -> None:
    """A reader of one org unit never sees another's rows or leads."""
    other = world.org_unit("Other")
    other_lead = world.lead(other)
    world.event(other, campaign="spring", lead=other_lead)
    refresh(ready)
    headers = world.reader(unit)
    rows = ready.get("/analytics/campaigns", headers=headers).json()["campaigns"]
    assert [(r["name"], r["total_events"]) for r in rows] == [("spring", 1)]
    leads = ready.get("/analytics/campaigns/spring/leads", headers=headers).json()["leads"]
    assert other_lead not in {lead["lead_id"] for lead in leads}
