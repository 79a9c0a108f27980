"""The soak's figures as Markdown, and their place in docs/reliability.md.

The section between `<!-- soak:begin -->` and `<!-- soak:end -->` is
generated: `python -m tests.soak ... --figures docs/reliability.md` replaces
it with the figures of the run it just made.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"


def render(summary: dict[str, Any], *, hostile_cases: int | None = None) -> str:
    f = summary["figures"]
    c = summary["config"]
    load = summary["load"]
    claims = f["claims"]
    lines = [
        f"Run on {summary['started']}: `{summary['command']}`"
        f" ({summary['seconds']:g} s of agents, {summary['cpus']} CPUs, load average"
        f" {load['before']} before, {load['mean']} mean, {load['max']} at most during the run;"
        f" TTL {c['ttl']:g}s, heartbeat {c['interval']:g}s, max skew {c['max_skew']:g}s,"
        f" reaper every {c['reap_every']:g}s, {c['agents']} agents on"
        f" {c['tickets'] or c['agents'] + c['agents'] // 2} tickets).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| checker verdict | {'pass' if summary['ok'] else 'FAIL'}"
        f" ({f['operations']} operations replayed) |",
        f"| claim pushes (won) | {claims['pushes']} ({claims['won']}) |",
        f"| races run: claim pushes contended by another agent's push on the same ticket"
        f" | {claims['contended']} |",
        f"| double claims found | {f['double_claims']} |",
        f"| heartbeats, releases, reaps | {f['heartbeats']}, {f['releases']}, {f['reaps']} |",
        f"| `git claim run` processes (by exit code), of which ran their command"
        f" | {sum(summary['exits'].values())} ({_exits(summary['exits'])}), {f['runs']} |",
        f"| faults injected, by kind | {_kinds(f['faults'])} |",
        f"| ambiguous outcomes (no end line: killed; error: unsure) and how each resolved"
        f" on the remote | {_ambiguous(f['ambiguous'])} |",
        f"| runs that stopped their command for a lost claim | {_kinds(f['runs_fenced'])} |",
        f"| holders overlapping a later holder (a frozen agent that resumed), longest overlap"
        f" not frozen | {f['holders_overlapping']}, {f['longest_overlap_s']:g}s |",
        f"| claims lost | {f['claims_lost']} |",
        f"| stuck tickets after the final reap | {f['stuck']} |",
        f"| crash to reap (a killed agent's claim freed) | {_latency(f['crash_to_reap_s'])} |",
    ]
    if hostile_cases is not None:
        lines.append(f"| hostile inputs tried (by `tests/faults/test_hostile_remote.py`, not"
                     f" the soak) | {hostile_cases} cases |")
    if summary["violations"]:
        lines += ["", "Violations:", ""] + [f"- {v}" for v in summary["violations"][:20]]
    return "\n".join(lines) + "\n"


SIGNALS = {"-9": "SIGKILL", "-15": "SIGTERM at the end"}


def _exits(exits: dict[str, int]) -> str:
    return ", ".join(f"{SIGNALS.get(code, code)}: {n}"
                     for code, n in sorted(exits.items(), key=lambda i: int(i[0])))


def _ambiguous(ambiguous: dict[str, dict[str, int]]) -> str:
    if not ambiguous:
        return "none"
    return "; ".join(f"{op}: {_kinds(how)}" for op, how in sorted(ambiguous.items()))


def _latency(latency: dict[str, Any]) -> str:
    if not latency.get("count"):
        return "no samples"
    return (f"{latency['count']} claims: min {latency['min']:g}s, median {latency['median']:g}s,"
            f" max {latency['max']:g}s")


def update(doc: Path, text: str) -> None:
    """Replace the generated section of `doc` with `text`."""
    content = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(content):
        raise ValueError(f"{doc} has no {BEGIN} ... {END} section")
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}{END}", content))
