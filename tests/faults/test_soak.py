"""The short soak: six agents for 40 seconds, every kind of fault, a checked history.

The long one is `python -m tests.soak` (docs/reliability.md, "The soak").
"""

from __future__ import annotations

from pathlib import Path

from soak.driver import FAULT_KINDS, Config, Soak

# run gives up on a lease max(skew, interval) = 2 s before it ends: room for a loaded machine
SHORT = Config(agents=6, seconds=40, seed=7, ttl=6, interval=1, max_skew=2, reap_every=2,
               work=(1.0, 4.0), fault_every=(2.0, 4.0), partition_for=(1.0, 7.0),
               slow_for=(2.0, 5.0), skewed=0.5)


def test_a_short_soak_with_every_fault_passes_the_checker(tmp_path: Path):
    soak = Soak(SHORT, tmp_path / "soak", say=lambda line: None)
    soak.setup()
    summary = soak.run()
    figures = summary["figures"]
    context = f"{summary}\nhistory in {tmp_path / 'soak'}"
    assert summary["ok"], context
    assert not summary["harness_errors"], context
    for kind in (*FAULT_KINDS, "skew"):
        assert figures["faults"].get(kind, 0) >= 1, (kind, context)
    assert figures["claims"]["won"] >= 6, context
    assert figures["stuck"] == 0 and figures["claims_lost"] == 0, context
