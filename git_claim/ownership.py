"""What proves a claim is ours: its tag id (and nonce), kept in our git dir.

A name can be typed by anyone; the id of the tag we created, which covers
a 128-bit nonce, cannot be guessed. Records live in the per-worktree git dir,
so two agents in two worktrees of one clone hold their claims apart. A record
is written *before* the claim is pushed ("pending"), so a retry after a crash
or a lost connection reuses the same tag instead of minting a second nonce.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

STORE_DIR = "git-claim/owned"


@dataclass
class Ownership:
    ticket: str
    ref: str
    remote_url: str
    tag: str
    nonce: str
    agent: str
    claimed_at: float
    pending: bool = True
    notes_tip: str | None = None  # the notes tip our last write left
    seq: int = 0


class OwnershipStore:
    def __init__(self, git_dir: Path) -> None:
        self.root = git_dir / STORE_DIR

    def _path(self, ticket: str) -> Path:
        return self.root / f"{ticket}.json"

    def get(self, ticket: str, *, ref: str, remote_url: str) -> Ownership | None:
        try:
            data = json.loads(self._path(ticket).read_text())
            record = Ownership(**data)
        except (OSError, ValueError, TypeError):
            return None
        if record.ref != ref or record.remote_url != remote_url:
            return None
        return record

    def put(self, record: Ownership) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle)
        os.replace(temp, self._path(record.ticket))

    def drop(self, ticket: str) -> None:
        try:
            self._path(ticket).unlink()
        except FileNotFoundError:
            pass

    def all(self) -> list[Ownership]:
        records = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                records.append(Ownership(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return records
