"""What the picking rules read from settings and the command line (`Rules`).

Kept apart from `picking` (the rules themselves): a direct claim builds its
Rules every time but judges with them only when a backlog or a tracker says
something about the ticket, so `git claim T` loads this and not `picking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rules:
    """What the rules need from settings and the command line."""

    agent: str
    gate: bool = True
    gate_label: str = "design:required"
    approved_label: str = "design:approved"
    labels: tuple[str, ...] = ()  # every one wanted (--label)
    exclude: tuple[str, ...] = ()  # none of these (--exclude)
    dependencies: bool = True
    parents_wait: bool = False
    capabilities: frozenset[str] = frozenset()  # lower case
    max_per_agent: int = 0  # 0: no limit (direct claims)
    wip: Mapping[str, int] = field(default_factory=dict)  # lower-case label -> limit
    priority_labels: Mapping[str, int] = field(default_factory=dict)  # lower case -> tier
    spread: int = 0  # claim.spread; 0 (unset): adapt to the agents seen (adaptive_spread)
