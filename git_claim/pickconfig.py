"""The picking settings as git config spells them: capabilities and priority labels.

Kept apart from `picking` (the rules) and light, because every command
reads its settings at start-up and most never pick anything.
"""

from __future__ import annotations

TIER_COUNT = 5  # priority tiers 0 (critical) to 4 (backlog)
DEFAULT_PRIORITY_LABELS = ("priority:critical=0,priority:high=1,priority:medium=2,"
                           "priority:low=3,P0=0,P1=1,P2=2,P3=3,P4=4")


def parse_priority_labels(value: str) -> dict[str, int]:
    """`claim.priorityLabels`: `LABEL=TIER,...` (tiers 0 to 4, 0 the highest)."""
    mapping: dict[str, int] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        label, sep, tier = item.rpartition("=")
        if not sep or not label.strip() or not (tier.strip().isdigit()
                                                and int(tier) < TIER_COUNT):
            raise ValueError(item)
        mapping[label.strip().lower()] = int(tier)
    return mapping


def parse_capabilities(value: str) -> frozenset[str]:
    """`--can python,frontend` or claim.capabilities: commas or spaces between names."""
    return frozenset(part.strip().lower() for part in value.replace(",", " ").split()
                     if part.strip())
