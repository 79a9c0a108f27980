"""The short soak: every set-up and every kind of fault at a small scale, a checked history.

Two configurations one after the other: claims under refs/claims/ (6 agents
in 4 clones, one of them with two loops under the default agent name), then
tags mode (refs/tags/claim/, 4 agents in 3 clones, and a stale clone that
pushes its old tags back). The long one is `python -m tests.soak`
(docs/reliability.md, "The soak").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from soak.driver import FAULT_KINDS, MODES, SIGNAL_KINDS, Config, run_plan

# run gives up on a lease max(skew, interval) = 2 s before it ends: room for a loaded machine
SHORT = Config(agents=6, seconds=22, seed=7, ttl=6, interval=1, max_skew=2, reap_every=2,
               work=(1.0, 4.0), fault_every=(1.5, 3.0), partition_for=(1.0, 7.0),
               slow_for=(2.0, 5.0), skewed=0.5, foreign_every=(6.0, 9.0),
               stale_every=(1.0, 2.0), stale_delay=(2.0, 3.0), repair_after=(1.0, 3.0))
SHORT_TAGS = replace(SHORT, agents=4, seconds=12, seed=8, tags_mode=True)


def test_a_short_soak_with_every_fault_passes_the_checker(tmp_path: Path):
    claims, tags = run_plan([SHORT, SHORT_TAGS], tmp_path / "soak", say=lambda line: None)
    context = f"{claims}\n{tags}\nhistory in {tmp_path / 'soak'}"
    for summary in (claims, tags):
        assert summary["ok"], context
        assert not summary["harness_errors"], context
        assert summary["figures"]["stuck"] == 0 and summary["figures"]["claims_lost"] == 0, context
    faults = {kind: sum(s["figures"]["faults"].get(kind, 0) for s in (claims, tags))
              for kind in (*FAULT_KINDS, *SIGNAL_KINDS, "skew", "foreign-delete")}
    for kind, count in faults.items():
        assert count >= 1, (kind, context)
    assert tags["figures"]["faults"].get("stale-push", 0) >= 1, context
    assert claims["figures"]["claims"]["won"] >= 6, context
    assert claims["figures"]["epochs"]["highest epoch"] >= 2, context  # tickets claimed again
    setups = [s["figures"]["setups"] for s in (claims, tags)]
    assert setups[0]["clones"]["loops sharing a clone under the default name"] >= 2, context
    for mode in MODES:
        started = sum(s["workers"].get(mode, {}).get("started", 0) for s in setups)
        assert started >= 1, (mode, context)
    for step in ("back", "forward"):
        assert sum(s["reaper_clock"][step] for s in setups) >= 1, (step, context)
