"""The last backlog listing, cached in the git dir: titles for the board and
tickets for shell completion, without a network call per keystroke."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .atomicfile import write_atomic
from .tracker.base import Ticket

CACHE_NAME = "backlog-cache.json"
MAX_ENTRIES = 5000


def cache_path(common_dir: Path) -> Path:
    return common_dir / "git-claim" / CACHE_NAME


def save(common_dir: Path, eligible: Sequence[Ticket], everything: Sequence[Ticket]) -> None:
    """Eligible tickets first (completion offers them); all titles for the board."""
    entries = [{"id": t.id, "title": t.title, "eligible": True} for t in eligible[:MAX_ENTRIES]]
    seen = {t.id for t in eligible}
    entries += [{"id": t.id, "title": t.title, "eligible": False}
                for t in everything[:MAX_ENTRIES] if t.id not in seen]
    path = cache_path(common_dir)
    try:
        write_atomic(path, json.dumps(entries))
    except OSError:
        pass  # a cache: losing it costs a title or a completion, nothing more


def titles(common_dir: Path) -> dict[str, str]:
    try:
        entries = json.loads(cache_path(common_dir).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, list):
        return {}
    return {str(e["id"]): str(e.get("title") or "") for e in entries
            if isinstance(e, dict) and "id" in e}
