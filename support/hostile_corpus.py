"""The malformed-request corpus, shared by tests/test_hostile.py and the reliability report."""

from __future__ import annotations

import base64
import json
import socket

FORBIDDEN_TEXT = (
    "Traceback",
    'File "',
    "SELECT ",
    "FROM events",
    "site-packages",
    ".py",
    "/tmp/",  # noqa: S108 - looked for, not written to
    "/work/",
    "kbn_pat_",
    "kbn_sas_",
    "postgresql://",
)


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes, read the whole answer; the status and the raw response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12]), response


def get(target: bytes, headers: dict[str, str] | list[tuple[bytes, bytes]]) -> bytes:
    pairs = (
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if isinstance(headers, dict)
        else headers
    )
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in pairs]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


def post(body: bytes, headers: dict[str, str], content_type: str | None) -> bytes:
    lines = [b"POST /org-units/active HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type.encode())
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close", b"", body]
    return b"\r\n".join(lines)


def corpus(reader: dict[str, str], unit: str, client_id: str) -> list[tuple[str, bytes]]:
    """Malformed requests, each of which must be answered with a 4xx.

    ``reader`` holds the Authorization header of a reader of ``unit``; ``client_id``
    is a service account's (used without its secret).
    """
    token = reader["Authorization"].split()[1]
    cases: list[tuple[str, bytes]] = []
    hostile_values = {
        "NUL": b"%00",
        "raw NUL": b"2026-01-01\x00",
        "invalid UTF-8": b"%FF%FE",
        "raw invalid UTF-8": b"\xff\xfe",
        "truncated UTF-8": b"%C3",
        "lone percent": b"%",
        "bad escape": b"%G1",
        "10 kB": b"9" * 10_000,
    }
    for parameter in (b"start_date", b"end_date"):
        for label, value in hostile_values.items():
            cases.append(
                (
                    f"{parameter.decode()} {label}",
                    get(b"/analytics/campaigns?" + parameter + b"=" + value, reader),
                )
            )
    for label, value in hostile_values.items():
        cases.append((f"path {label}", get(b"/analytics/campaigns/" + value + b"/leads", reader)))
        cases.append(
            (
                f"drilldown date {label}",
                get(b"/analytics/campaigns/spring/leads?start_date=" + value, reader),
            )
        )
    cases += [
        (
            "20 kB query of unknown parameters",
            get(b"/analytics/campaigns?x=" + b"a" * 20_000, reader),
        ),
        ("10 kB path", get(b"/analytics/campaigns/" + b"a" * 10_000 + b"/leads", reader)),
        (
            "duplicate start_date",
            get(b"/analytics/campaigns?start_date=2026-01-01&start_date=2026-02-01", reader),
        ),
        (
            "duplicate group_by",
            get(b"/analytics/campaigns?group_by=source&group_by=medium", reader),
        ),
        (
            "duplicate end_date on drilldown",
            get(
                b"/analytics/campaigns/spring/leads?end_date=2026-01-01&end_date=2027-01-01", reader
            ),
        ),
        ("oversized header", get(b"/analytics/campaigns", {**reader, "X-Padding": "a" * 70_000})),
        ("huge cookie", get(b"/analytics/campaigns", {**reader, "Cookie": "x=" + "a" * 70_000})),
        (
            "many headers",
            get(
                b"/analytics/campaigns",
                [(b"Authorization", reader["Authorization"].encode())]
                + [(f"X-H{i}".encode(), b"v") for i in range(2000)],
            ),
        ),
        (
            "forged active org unit cookie",
            get(
                b"/analytics/campaigns",
                {**reader, "Cookie": "kenbun_active_ou=00000000-0000-0000-0000-000000000000"},
            ),
        ),
        (
            "garbage active org unit cookie",
            get(b"/analytics/campaigns", {**reader, "Cookie": "kenbun_active_ou=" + "%00" * 2000}),
        ),
        (
            "duplicate Authorization",
            get(
                b"/analytics/campaigns",
                [
                    (b"Authorization", reader["Authorization"].encode()),
                    (b"Authorization", b"Bearer other"),
                ],
            ),
        ),
        (
            "duplicate X-Org-Unit-Id",
            get(
                b"/analytics/campaigns",
                [
                    (b"Authorization", reader["Authorization"].encode()),
                    (b"X-Org-Unit-Id", unit.encode()),
                    (b"X-Org-Unit-Id", unit.encode()),
                ],
            ),
        ),
        (
            "NUL in X-Org-Unit-Id",
            get(b"/analytics/campaigns", {**reader, "X-Org-Unit-Id": unit[:8] + "\x00"}),
        ),
        (
            "invalid UTF-8 bearer",
            get(b"/analytics/campaigns", [(b"Authorization", b"Bearer \xff\xfe" + token.encode())]),
        ),
        (
            "Basic without a colon",
            get(
                b"/analytics/campaigns",
                {"Authorization": "Basic " + base64.b64encode(client_id.encode()).decode()},
            ),
        ),
        (
            "Basic not base64",
            get(b"/analytics/campaigns", {"Authorization": "Basic !!!not-base64"}),
        ),
        (
            "Basic of invalid UTF-8",
            get(
                b"/analytics/campaigns",
                {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
            ),
        ),
        (
            "token in the query string only",
            get(b"/analytics/campaigns?access_token=" + token.encode(), {}),
        ),
        (
            "oversized JSON body",
            post(b'{"org_unit_id": "' + b"a" * 100_000 + b'"}', reader, "application/json"),
        ),
        ("text/plain body", post(json.dumps({"org_unit_id": unit}).encode(), reader, "text/plain")),
        (
            "form body",
            post(b"org_unit_id=" + unit.encode(), reader, "application/x-www-form-urlencoded"),
        ),
        ("no content type", post(json.dumps({"org_unit_id": unit}).encode(), reader, None)),
        ("JSON that is not an object", post(b"[1, 2]", reader, "application/json")),
        ("invalid JSON", post(b'{"org_unit_id": ', reader, "application/json")),
        ("NUL in the JSON", post(b'{"org_unit_id": "\\u0000"}', reader, "application/json")),
        (
            "unknown method",
            b"BREW /analytics/campaigns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        ("garbage request line", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"),
    ]
    return cases
