"""Authentication, the active org unit and access, per semantics.md."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.errors import SourceError, Unauthenticated
from kenbun_analytics.settings import Settings, load_settings
from kenbun_analytics.source.credentials import digest, has_valid_checksum, new_secret
from kenbun_analytics.web.auth import Authenticator
from kenbun_analytics.web.observability import JsonFormatter
from support.hostile_corpus import exchange, get
from support.world import World, basic
from tests.conftest import LiveServer, make_app, refresh

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
        ready.get("/analytics/campaigns", headers={b"Authorization": header.encode()}).status_code
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
    body: object
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


# ------------------------------------------------- credentials that cannot be --


def _tampered(secret: str) -> str:
    """The secret with one body character changed: its checksum no longer matches."""
    return secret[:-7] + ("A" if secret[-7] != "A" else "B") + secret[-6:]


def _raw(header: str) -> bytes:
    return header.encode("utf-8")


JUNK: dict[str, bytes] = {
    "NUL in a Basic client_id": _raw(basic("sa-\x00", "secret")),
    "NUL in a token": b"Bearer abc\x00def",
    "control character in a token": b"Bearer abc\x01def",
    "tab in a token": b"Bearer abc\tdef",
    "DEL in a secret": _raw(basic("sa-1", "sec\x7fret")),
    "newline in a client_id": _raw(basic("sa-\n1", "secret")),
    "invalid UTF-8 token": b"Bearer \xff\xfe-token",
    "invalid UTF-8 secret": b"Basic " + base64.b64encode(b"sa-1:\xff\xfe"),
    "empty token": b"Bearer  ",
    "empty client_id": _raw(basic("", "secret")),
    "empty secret": _raw(basic("sa-1", "")),
    "token over 512 bytes": _raw("Bearer " + "t" * 513),
    "token over 512 bytes of UTF-8": _raw("Bearer " + "é" * 257),
    "client_id over 512 bytes": _raw(basic("c" * 513, "secret")),
    "secret over 512 bytes": _raw(basic("sa-1", "s" * 513)),
    "our token prefix, wrong checksum": _raw("Bearer " + _tampered(new_secret("kbn_pat_"))),
    "our token prefix, wrong length": b"Bearer kbn_pat_not-a-real-token",
    "our secret prefix, wrong checksum": _raw(basic("sa-1", _tampered(new_secret("kbn_sas_")))),
    "our token prefix as a secret, wrong checksum": _raw(
        basic("sa-1", _tampered(new_secret("kbn_pat_")))
    ),
}
"""Authorization headers, as the bytes a client sends, that cannot be a credential."""
SENDABLE = [label for label in JUNK if "invalid UTF-8 token" not in label]
"""The test client re-encodes a header that is not UTF-8; that one goes over a socket."""


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each credential lookup that reaches the source, by kind."""
    from kenbun_analytics.source import identities as source

    seen: list[str] = []
    for name in ("token_principal", "service_account_principal"):
        original = getattr(source, name)

        def counted(*args: object, _original: Any = original, _name: str = name) -> Any:
            seen.append(_name)
            return _original(*args)

        monkeypatch.setattr(source, name, counted)
    return seen


@pytest.mark.parametrize("path", ["/analytics/campaigns", "/org-units"])
@pytest.mark.parametrize("label", SENDABLE)
def test_a_credential_that_cannot_be_valid_is_401_without_a_lookup(
    ready: Client,
    lookups: list[str],
    caplog: pytest.LogCaptureFixture,
    path: str,
    label: str,
) -> None:
    """Control characters, invalid UTF-8, an empty part, over 512 bytes or our prefix
    with a wrong checksum: a 401 with the challenge, no database query, no error logged
    (a NUL once reached PostgreSQL: a 503, an ERROR line, the auth connections reset)."""
    with caplog.at_level(logging.INFO):
        response = ready.get(path, headers={b"Authorization": JUNK[label]})
    assert_401(response)
    assert lookups == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_token_that_is_not_utf8_is_401_without_a_lookup(
    live: LiveServer, lookups: list[str]
) -> None:
    """Over a real socket, where the header's bytes arrive as sent."""
    status, response = exchange(
        live.port, get(b"/analytics/campaigns", [(b"Authorization", JUNK["invalid UTF-8 token"])])
    )
    assert status == 401
    assert b"www-authenticate: Bearer" in response
    assert lookups == []


def test_unknown_formats_are_still_looked_up(
    world: World, unit: str, ready: Client, lookups: list[str]
) -> None:
    """Credentials issued elsewhere need no prefix: a plain unknown token and client id
    are asked about (and refused), a 512-byte token is a token, and a checksummed
    kbn_pat_ token is asked about like any other."""
    for header in (
        "Bearer some-other-issuer-token",
        basic("sa-unknown", "secret"),
        "Bearer " + "t" * 512,
        "Bearer " + new_secret("kbn_pat_"),
        basic("sa-unknown", new_secret("kbn_sas_")),
        basic("kbn_sas_is-a-client-id-here", "secret"),  # checksums are for secrets only
    ):
        assert_401(ready.get("/analytics/campaigns", headers={"Authorization": header}))
    assert lookups == [
        "token_principal",
        "service_account_principal",
        "token_principal",
        "token_principal",
        "service_account_principal",
        "service_account_principal",
    ]
    user = world.user(default_org_unit=unit)
    world.member(user, unit)
    longest = world.token(user, text="é" * 256)  # 512 bytes of UTF-8
    response = ready.get("/analytics/campaigns", headers={b"Authorization": longest.encode()})
    assert response.status_code == 200


class FakeSource:
    """Answers token lookups from a dict of digest -> user id; raises while down."""

    def __init__(self) -> None:
        self.tokens: dict[bytes, str] = {}
        self.lookups = 0
        self.down = False


def _fake_lookups(monkeypatch: pytest.MonkeyPatch, fake: FakeSource) -> None:
    from kenbun_analytics.errors import SourceError
    from kenbun_analytics.source import identities as source

    def token_principal(_: object, key: bytes) -> dict[str, Any] | None:
        fake.lookups += 1
        if fake.down:
            raise SourceError("look up token", ConnectionRefusedError("refused"))
        user = fake.tokens.get(key)
        if user is None:
            return None
        return {
            "token_sha256": key,
            "active": True,
            "user_id": user,
            "credential_id": "cred-" + user,
            "default_org_unit_id": "ou",
            "expires_at": None,
        }

    monkeypatch.setattr(source, "token_principal", token_principal)
    monkeypatch.setattr(source, "user_access", lambda _, user: [("ou", "Org unit")])


def test_a_flood_of_unknown_credentials_does_not_evict_a_valid_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failed lookups are cached apart from valid ones (and in fewer entries): twenty
    thousand made-up tokens leave a reader's cached credential where it was."""
    fake = FakeSource()
    _fake_lookups(monkeypatch, fake)
    fake.tokens[digest("reader-token")] = "reader"
    authenticator = Authenticator(fake, cache_seconds=2, clock=lambda: 0.0)  # type: ignore[arg-type]
    assert authenticator.authenticate("Bearer reader-token").credential_id == "cred-reader"
    for n in range(20_000):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(f"Bearer made-up-{n}")
    assert fake.lookups == 20_001
    principal = authenticator.cached("Bearer reader-token")
    assert principal is not None
    assert principal.credential_id == "cred-reader"
    # A refused credential asked again within the cache time costs no lookup.
    with pytest.raises(Unauthenticated):
        authenticator.authenticate("Bearer made-up-19999")
    assert fake.lookups == 20_001


@pytest.mark.parametrize("label", list(JUNK))
def test_the_authenticator_refuses_junk_before_asking(
    monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    """The same refusals at the authenticator, with raw header text (invalid UTF-8
    arrives as Latin-1, which no HTTP test client sends unchanged)."""
    fake = FakeSource()
    _fake_lookups(monkeypatch, fake)
    monkeypatch.setattr(
        "kenbun_analytics.source.identities.service_account_principal",
        lambda *_: pytest.fail("looked up"),
    )
    authenticator = Authenticator(fake, cache_seconds=2)  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(JUNK[label].decode("latin-1"))  # as servers decode it
    assert fake.lookups == 0


def test_a_stale_credential_answers_for_a_minute_and_each_answer_is_logged_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the source is down, a credential valid at its last lookup is let in for
    KENBUN_AUTH_STALE_SECONDS (60 s by default), each time with one JSON log line
    (its id, never the token) and one count; after that, the source's error."""
    assert Settings().auth_stale_seconds == 60
    assert load_settings({}).auth_stale_seconds == 60
    fake = FakeSource()
    _fake_lookups(monkeypatch, fake)
    fake.tokens[digest("reader-token")] = "reader"
    now = [0.0]
    stale_answers: list[None] = []
    authenticator = Authenticator(
        fake,  # type: ignore[arg-type]
        cache_seconds=2,
        stale_seconds=Settings().auth_stale_seconds,
        clock=lambda: now[0],
        on_stale=lambda: stale_answers.append(None),
    )
    authenticator.authenticate("Bearer reader-token")
    with pytest.raises(Unauthenticated):
        authenticator.authenticate("Bearer refused-token")
    fake.down = True
    formatter = JsonFormatter()
    with caplog.at_level(logging.INFO, logger="kenbun_analytics.web.auth"):
        for second in (1.0, 30.0, 59.0):  # inside the cache time, then stale twice
            now[0] = second
            assert authenticator.authenticate("Bearer reader-token").credential_id
        now[0] = 30.0
        with pytest.raises(Unauthenticated):  # refused at its last lookup: still refused
            authenticator.authenticate("Bearer refused-token")
        with pytest.raises(SourceError):  # never seen: the database must say
            authenticator.authenticate("Bearer never-seen")
        now[0] = 60.5
        with pytest.raises(SourceError):
            authenticator.authenticate("Bearer reader-token")
    assert len(stale_answers) == 2
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    assert len(lines) == 2
    assert [line["lookup_age_seconds"] for line in lines] == [30.0, 59.0]
    for line in lines:
        assert line["level"] == "warning"
        assert line["credential_id"] == "cred-reader"
        assert line["credential_kind"] == "user"
        assert "reader-token" not in json.dumps(line)
