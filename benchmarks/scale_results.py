"""The scale-out figures of ``benchmarks.scale`` and ``benchmarks.churn``: kept per
size in ``benchmarks/scale.json`` and shown against the targets in the last
section of ``benchmarks/RESULTS.md``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCALE_JSON = HERE / "scale.json"


def record(kind: str, events: int, figures: dict[str, Any], output_dir: Path = HERE) -> None:
    """Keep ``figures`` as the ``kind`` ("scale" or "churn") of ``events``, and
    write RESULTS.md again with them."""
    from benchmarks.harness import write_markdown

    store = output_dir / SCALE_JSON.name
    entries = json.loads(store.read_text()) if store.exists() else {}
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    entries.setdefault(str(events), {})[kind] = {"at": at, **figures}
    store.write_text(json.dumps(entries, indent=2) + "\n")
    write_markdown(output_dir)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def section(entries: dict[str, Any]) -> list[str]:
    """The Markdown section: per size, each measurement against its target."""
    lines = [
        "## Scale-out",
        "",
        "Written by `python -m benchmarks.scale` and `python -m benchmarks.churn`"
        " (see their docstrings); each on an embedded PostgreSQL of its own.",
        "",
    ]
    for size in sorted(entries, key=int):
        entry = entries[size]
        lines += [f"### {int(size):,} events", ""]
        rows: list[tuple[str, str, str]] = []
        if scale := entry.get("scale"):
            rows += _scale_rows(scale)
        if churn := entry.get("churn"):
            rows.append(
                (
                    f"full loads counted in PostgreSQL in {churn['minutes']:g} minutes "
                    f"({churn['at']}): one replica / three replicas and a fourth killed "
                    f"and restarted every {churn['every']:g} s",
                    f"{churn['one replica']} / {churn['churned']}",
                    "equal: " + _met(churn["one replica"] == churn["churned"]),
                )
            )
        lines += ["| measurement | value | target |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
        lines.append("")
    return lines


def _scale_rows(scale: dict[str, Any]) -> list[tuple[str, str, str]]:
    inside, processes = scale["in process"], scale.get("processes", {})
    latency = inside["latency"]
    rows = [
        (
            f"publishing a whole version of the largest org unit ({scale['at']})",
            f"{inside['publish seconds']:.2f} s, {inside['version bytes'] / 1e6:,.0f} MB",
            "",
        ),
        ("opening it mapped, checksums verified", f"{inside['open mapped seconds']:.3f} s", ""),
    ]
    for key in ("source", "campaign"):
        heap, mapped = latency[f"{key} heap"], latency[f"{key} mapped"]
        within = all(mapped[p] <= 1.1 * heap[p] for p in ("p50_ms", "p99_ms"))
        rows.append(
            (
                f"query by {key}, p50 (p99): heap / mapped",
                f"{heap['p50_ms']:.2f} ({heap['p99_ms']:.2f}) / "
                f"{mapped['p50_ms']:.2f} ({mapped['p99_ms']:.2f}) ms",
                "mapped within 10%: " + _met(within),
            )
        )
    if not processes:
        return rows
    ready = processes["ready, new replica from a populated store (s)"]
    rows.append(
        (
            "a new replica ready, the directory populated / `serve` alone (a full load)",
            f"{ready:.2f} s / {processes['ready, full load (s)']:.1f} s",
            "2 s: " + _met(ready <= 2),
        )
    )
    one, two = processes["rps, --workers 1"], processes["rps, --workers 2"]
    rows.append(
        (
            "cached answers by source, `--workers 1` → `2` (wrk on the same cores)",
            f"{one:,.0f} → {two:,.0f} req/s ({two / one:.2f}x)",
            "1.3x: " + _met(two >= 1.3 * one),
        )
    )
    memory = {
        name: processes[f"memory, {name}"]
        for name in ("no snapshot directory", "--workers 1", "--workers 2")
    }
    rows.append(
        (
            "PSS of every process: no directory / 1 worker / 2 workers (of which the idle "
            "fork server of full loads; the snapshot pages resident)",
            " / ".join(
                f"{m['pss_mb']:,.0f} MB ({m['fork_server_pss_mb']:,.0f}; {m['snapshot_pss_mb']:,.0f})"
                for m in memory.values()
            ),
            "",
        )
    )
    target = processes["PSS target"]
    rows.append(
        (
            "PSS(2) against 2 x PSS(1) - snapshot, PSS(1) the mapped single process and "
            "the snapshot its resident pages",
            f"{target['PSS(2) MB']:,.0f} ≤ {target['limit, PSS(1) mapped (MB)']:,.0f} MB",
            _met(target["met, PSS(1) mapped"]),
        )
    )
    rows.append(
        (
            "PSS(2) against 2 x PSS(1) - snapshot, PSS(1) the process without a directory "
            "and the snapshot the bytes of its org units' newest versions",
            f"{target['PSS(2) MB']:,.0f} ≤ {target['limit, PSS(1) without a directory (MB)']:,.0f} MB",
            _met(target["met, PSS(1) without a directory"]),
        )
    )
    for how, what in (("SIGKILL", "SIGKILLed"), ("SIGSTOP", "frozen (SIGSTOP)")):
        takeover = processes.get(f"takeover after {how} of the refresher (s)")
        if takeover is None:
            continue  # recorded before this measurement existed
        rows.append(
            (
                f"the refresher {what}: the survivor's next version, median (max)",
                f"{takeover['median']:.2f} ({takeover['max']:.2f}) s",
                f"{2 * takeover['refresh interval']:g} s (two intervals): "
                + _met(takeover["max"] <= 2 * takeover["refresh interval"]),
            )
        )
    return rows
