"""The soak's figures as Markdown, and their place in docs/reliability.md.

The section between `<!-- soak:begin -->` and `<!-- soak:end -->` is
generated: `python -m tests.soak ... --figures docs/reliability.md` replaces
it with the figures of the run it just made, one column per configuration
(claims under refs/claims/, and under refs/tags/claim/).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"


Row = tuple[str, Callable[[dict[str, Any]], str]]


def _rows(hostile_cases: int | None) -> list[Row]:
    def f(s: dict[str, Any]) -> dict[str, Any]:
        return s["figures"]

    def setups(s: dict[str, Any]) -> dict[str, Any]:
        return s["figures"].get("setups", {})

    rows: list[Row] = [
        ("checker verdict", lambda s: f"{'pass' if s['ok'] else 'FAIL'}"
                                      f" ({f(s)['operations']} operations replayed)"),
        ("agents: clones, `run` loops; loops sharing a clone under the default name, under"
         " names of their own", _clones),
        ("claim pushes (won)", lambda s: f"{f(s)['claims']['pushes']} ({f(s)['claims']['won']})"),
        ("races run: claim pushes contended by another loop's push on the same ticket",
         lambda s: str(f(s)["claims"]["contended"])),
        ("claim refs created (each claim a new epoch: T, T@2, ...), tickets claimed, the"
         " highest epoch", _epochs),
        ("**double holds** in the workers' logs (two workers on one ticket at once, beyond"
         " the bound)", lambda s: str(f(s).get("double_holds", 0))),
        ("workers that worked on past the bound after their claim was lost (no second worker"
         " yet)", lambda s: str(f(s).get("unheld_work", 0))),
        ("workers outliving their run, or a signal to it by more than the grace period",
         lambda s: str(f(s).get("orphans", 0))),
        ("signals a run never acted on (it started its command after the signal)",
         lambda s: str(f(s).get("lost_signals", 0))),
        ("double claims found (the tools' beliefs and the remote's record)",
         lambda s: str(f(s)["double_claims"])),
        ("workers by how the script started them (started; stopped by a signal; killed, no"
         " stop line; signalled twice)", lambda s: _workers(setups(s).get("workers", {}))),
        ("heartbeats, releases, reaps",
         lambda s: f"{f(s)['heartbeats']}, {f(s)['releases']}, {f(s)['reaps']}"),
        ("`git claim run` processes (by exit code), of which ran their command",
         lambda s: f"{sum(s['exits'].values())} ({_exits(s['exits'])}), {f(s)['runs']}"),
        ("faults injected, by kind", lambda s: _kinds(f(s)["faults"])),
        ("signals: the latest worker line after each kind of signal (grace"
         " {grace}s)", lambda s: _signals(setups(s).get("signals", {}))),
        ("reaper clock steps (back 15 min, forward within half the max skew), claims reaped"
         " by a stepped reaper", _clock),
        ("newest claim refs deleted, replaced by a foreign process (plain git, no server-side"
         " guard)", _foreign),
        ("stale clone: fetches, `git push --tags`, `git push --tags --force`, claim refs they"
         " changed", _stale),
        ("live claims taken by a foreign or stale push; unknown refs cleared with"
         " `git release --force`", _taken),
        ("holders whose claim was lost while their worker worked, and the longest from the"
         " loss to the worker's last line (time frozen not counted)", _stops),
        ("overlaps of two workers within the bound (a holder that could not know yet),"
         " longest", _excused),
        ("ambiguous outcomes (no end line: killed; error: unsure) and how each resolved"
         " on the remote", lambda s: _ambiguous(f(s)["ambiguous"])),
        ("runs that stopped their command for a lost claim", lambda s: _kinds(f(s)["runs_fenced"])),
        ("holders overlapping a later holder in their beliefs (a frozen agent that resumed),"
         " longest overlap not frozen",
         lambda s: f"{f(s)['holders_overlapping']}, {f(s)['longest_overlap_s']:g}s"),
        ("claims lost", lambda s: str(f(s)["claims_lost"])),
        ("stuck tickets after the final reap", lambda s: str(f(s)["stuck"])),
        ("crash to reap (a killed agent's claim freed)",
         lambda s: _latency(f(s)["crash_to_reap_s"])),
    ]
    if hostile_cases is not None:
        rows.append(("hostile inputs tried (by `tests/faults/test_hostile_remote.py`, not the"
                     " soak)", lambda s: f"{hostile_cases} cases"))
    return rows


def render(summaries: dict[str, Any] | list[dict[str, Any]], *,
           hostile_cases: int | None = None, command: str | None = None) -> str:
    if isinstance(summaries, dict):
        summaries = [summaries]
    first = summaries[0]
    c = first["config"]
    parts = "; ".join(
        f"{s.get('claim_prefix', 'refs/claims/')}: {s['seconds']:g} s of agents,"
        f" {s['config']['agents']} agents on"
        f" {s['config']['tickets'] or s['config']['agents'] + s['config']['agents'] // 2}"
        f" tickets, load average {s['load']['before']} before, {s['load']['mean']} mean,"
        f" {s['load']['max']} at most" for s in summaries)
    lines = [
        f"Run on {first['started']}: `{command or first['command']}` ({first['cpus']} CPUs;"
        f" {parts}; TTL {c['ttl']:g}s, heartbeat {c['interval']:g}s, grace {c['grace']:g}s,"
        f" max skew {c['max_skew']:g}s, reaper every {c['reap_every']:g}s).",
        "",
        "| figure | " + " | ".join(f"`{s.get('claim_prefix', 'refs/claims/')}`"
                                   for s in summaries) + " |",
        "|---|" + "---|" * len(summaries),
    ]
    for label, value in _rows(hostile_cases):
        label = label.replace("{grace}", f"{c['grace']:g}")
        lines.append(f"| {label} | " + " | ".join(value(s) for s in summaries) + " |")
    violations = [f"- {s.get('claim_prefix', '')}: {v}" for s in summaries
                  for v in s["violations"][:20]]
    if violations:
        lines += ["", "Violations:", ""] + violations
    return "\n".join(lines) + "\n"


SIGNALS = {"-9": "SIGKILL", "-15": "SIGTERM at the end", "130": "130 (SIGINT)",
           "137": "137 (SIGKILL of run)", "143": "143 (SIGTERM)"}


def _exits(exits: dict[str, int]) -> str:
    return ", ".join(f"{SIGNALS.get(code, code)}: {n}"
                     for code, n in sorted(exits.items(), key=lambda i: int(i[0])))


def _clones(s: dict[str, Any]) -> str:
    c = s["figures"].get("setups", {}).get("clones", {})
    if not c:
        return "-"
    return (f"{c['clones']}, {c['loops']}; {c['loops sharing a clone under the default name']},"
            f" {c['loops sharing a clone under their own names']}")


def _workers(workers: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{mode} {w.get('started', 0)}, {w.get('stopped by a signal', 0)},"
                     f" {w.get('no stop line (killed)', 0)}, {w.get('signalled twice', 0)}"
                     for mode, w in sorted(workers.items())) or "none"


def _signals(signals: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{kind} {v['count']}: {v['worker last line after it, max s']:g}s"
                     for kind, v in sorted(signals.items())) or "none"


def _clock(s: dict[str, Any]) -> str:
    r = s["figures"].get("setups", {}).get("reaper_clock", {})
    return f"{r.get('back', 0)}, {r.get('forward', 0)}, {r.get('claims reaped while stepped', 0)}"


def _epochs(s: dict[str, Any]) -> str:
    e = s["figures"].get("epochs")
    if not e:
        return "-"
    return f"{e['claim refs created']}, {e['tickets claimed']}, {e['highest epoch']}"


def _foreign(s: dict[str, Any]) -> str:
    r = s["figures"].get("setups", {}).get("foreign", {})
    return f"{r.get('deletes', 0)}, {r.get('replaces', 0)}"


def _stale(s: dict[str, Any]) -> str:
    r = s["figures"].get("setups", {}).get("stale", {})
    if not r.get("fetches"):
        return "-"
    return (f"{r['fetches']}, {r['pushes']}, {r['forced pushes']},"
            f" {r['claim ref changes']}")


def _taken(s: dict[str, Any]) -> str:
    r = s["figures"].get("setups", {})
    return f"{r.get('live claims taken by a foreign or stale push', 0)}; {r.get('repairs', 0)}"


def _stops(s: dict[str, Any]) -> str:
    lost = s["figures"].get("setups", {}).get(
        "holders whose claim was lost while their worker worked", {})
    key = "worker stopped after the loss, max s (not frozen)"
    return "; ".join(f"{how} {v['count']}: {v[key]:g}s"
                     for how, v in sorted(lost.items())) or "none"


def _excused(s: dict[str, Any]) -> str:
    e = s["figures"].get("setups", {}).get("overlaps within bounds", {})
    return f"{e.get('count', 0)}, {e.get('longest s', 0):g}s"


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
