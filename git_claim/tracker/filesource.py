"""A backlog from a file or stdin: one ticket per line, plain ids or JSON lines.

Plain lines are `640` or `#640`, optionally followed by a `# comment`; a line
whose `#` is followed by something that cannot start an id (`# todo`, `##`,
`#!`) is a comment, so `#640` stays a ticket. JSON lines are objects such as
`{"id": 640, "title": "...", "labels": ["design"], "state": "open"}`; the
`labels` may also be gh's objects (`{"name": ...}`), so the output of
`gh issue list --json ... | jq -c '.[]'` can be saved and reused.

JSON lines may also say what a ticket waits on and how urgent it is:
`"blocked_by": [638, 639]` (ids of this backlog), `"parent": 600` (a
sub-issue of 600) and `"priority"` (0-4, `P0`-`P4`, or critical, high,
medium, low, backlog). The file is the whole backlog: a blocker or
sub-issue it does not list is taken as finished, as deleting a line is how
a file's user closes a ticket; one listed with `"state": "closed"` is
finished too. A `blocked_by` that is not a list of ids fails closed.

The file is somebody's notes, not a protocol: a line the tool cannot use is
skipped and counted under a reason (`skipped`), never fatal. What is read is
bounded; the backlog is in priority order, so cutting the tail keeps what
matters and the cut is reported in `skipped` too. A file cannot mirror claims,
so the mirror methods do nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from ..errors import BadTicketError
from ..safetext import quoted
from ..ticket import parse_ticket
from .base import (
    MAX_LABELS,
    MAX_TITLE,
    MAX_URL,
    Link,
    PullRequest,
    Ticket,
    Tracker,
    TrackerError,
    bound_labels,
    bound_text,
    missing_source,
    parse_priority,
)

MAX_BYTES = 10 * 1024 * 1024
MAX_TICKETS = 100_000
MAX_LINE = 64 * 1024

# What may follow `#` in a ticket line: the first character of a ticket id.
_ID_START = re.compile(r"[A-Za-z0-9_]")

SKIP_INVALID_ID = "invalid ticket id"
SKIP_NOT_A_TICKET = "not a ticket line"
SKIP_BAD_JSON = "invalid JSON"
SKIP_NO_ID = "JSON without a usable id"
SKIP_BAD_STATE = "unknown state"
SKIP_DUPLICATE = "duplicate ticket"
SKIP_LONG_LINE = f"line longer than {MAX_LINE // 1024} KB"
SKIP_TOO_MANY = f"past the {MAX_TICKETS:,}-ticket limit"
SKIP_TOO_BIG = f"past the {MAX_BYTES // (1024 * 1024)} MB size limit"
SKIP_BAD_PRIORITY = "priority not understood (taken as medium)"
MAX_LINKS = 1000
BAD_BLOCKERS = "its blocked_by is not a list of ticket ids"
BAD_PARENT = "its parent is not a ticket id"


class FileTracker(Tracker):
    can_mirror = False

    def __init__(self, text: str, *, name: str = "file", truncated: bool = False) -> None:
        super().__init__()
        self.name = name
        self._tickets: list[Ticket] = []
        self._by_id: dict[str, Ticket] = {}
        if truncated:
            self._skip(SKIP_TOO_BIG)
        # what JSON lines name, resolved once every line is read
        self._blockers: dict[str, list[str]] = {}
        self._parents: dict[str, str] = {}
        self._parse(text)
        self._link()

    @classmethod
    def from_path(cls, path: Path, *, shown: str | None = None) -> FileTracker:
        shown = shown if shown is not None else str(path)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_BYTES + 1)
        except FileNotFoundError:
            raise missing_source(shown, "no such file") from None
        except IsADirectoryError:
            raise missing_source(shown, "it is a directory") from None
        except PermissionError:
            raise missing_source(shown, "permission denied") from None
        except OSError as error:
            raise missing_source(shown, error.strerror or type(error).__name__) from None
        text, truncated = _cut(data.decode("utf-8", errors="replace"), len(data) > MAX_BYTES)
        return cls(text, name="file", truncated=truncated)

    @classmethod
    def from_stream(cls, stream: TextIO, *, name: str = "stdin") -> FileTracker:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            # Bytes, so a stray invalid byte costs one line rather than the read.
            data = buffer.read(MAX_BYTES + 1)
            text = data.decode("utf-8", errors="replace")
            over = len(data) > MAX_BYTES
        else:
            text = stream.read(MAX_BYTES + 1)
            over = len(text) > MAX_BYTES
        text, truncated = _cut(text, over)
        return cls(text, name=name, truncated=truncated)

    def _parse(self, text: str) -> None:
        lines = text.split("\n")
        for index, raw in enumerate(lines):
            line = raw.strip()
            if not line:
                continue
            if len(self._tickets) >= MAX_TICKETS:
                self._skip(SKIP_TOO_MANY, sum(1 for rest in lines[index:] if rest.strip()))
                return
            if len(line) > MAX_LINE:
                self._skip(SKIP_LONG_LINE)
                continue
            if line.startswith("{"):
                ticket = self._json_line(line)
            elif line.startswith("#") and (len(line) == 1 or not _ID_START.match(line[1])):
                continue  # a comment
            else:
                ticket = self._plain_line(line)
            if ticket is None:
                continue
            if ticket.id in self._by_id:
                self._skip(SKIP_DUPLICATE)
                continue
            self._by_id[ticket.id] = ticket
            self._tickets.append(ticket)

    def _plain_line(self, line: str) -> Ticket | None:
        token, *others = line.split(None, 1)
        rest = others[0] if others else ""
        if rest and not rest.startswith("#"):
            self._skip(SKIP_NOT_A_TICKET)
            return None
        ticket_id = _ticket_id(token)
        if ticket_id is None:
            self._skip(SKIP_INVALID_ID)
            return None
        return Ticket(id=ticket_id, labels_known=False)

    def _json_line(self, line: str) -> Ticket | None:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            self._skip(SKIP_BAD_JSON)
            return None
        if not isinstance(entry, dict):
            self._skip(SKIP_BAD_JSON)
            return None
        raw_id = entry.get("id", entry.get("number"))
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if not isinstance(raw_id, str):
            self._skip(SKIP_NO_ID)
            return None
        ticket_id = _ticket_id(raw_id)
        if ticket_id is None:
            self._skip(SKIP_INVALID_ID)
            return None
        state = entry.get("state", "open")
        if not isinstance(state, str) or state.lower() not in ("open", "closed"):
            self._skip(SKIP_BAD_STATE)
            return None
        raw_labels = entry.get("labels")
        labels_known = isinstance(raw_labels, list)
        labels = _label_names(raw_labels) if isinstance(raw_labels, list) else ()
        labels_problem = ""
        if raw_labels is not None and not labels_known:
            labels_problem = "its labels are not a list"
        elif isinstance(raw_labels, list) and (len(raw_labels) > MAX_LABELS
                                               or len(labels) != len(raw_labels)):
            # an entry that names no label, or one past the bound, might be the
            # gate or a needs: label
            labels_known, labels = False, ()
            labels_problem = ("its labels are not all label names"
                              if len(raw_labels) <= MAX_LABELS
                              else f"it has more than {MAX_LABELS} labels")
        problem = self._read_links(ticket_id, entry)
        priority = None
        if entry.get("priority") is not None:
            priority = parse_priority(entry["priority"])
            if priority is None:
                self._skip(SKIP_BAD_PRIORITY)
        return Ticket(id=ticket_id, title=bound_text(entry.get("title"), MAX_TITLE),
                      labels=labels, labels_known=labels_known, labels_problem=labels_problem,
                      open=state.lower() == "open", url=bound_text(entry.get("url"), MAX_URL),
                      links_known=not problem, links_problem=problem, priority=priority)

    def _read_links(self, ticket_id: str, entry: dict[str, Any]) -> str:
        """Note the line's blockers and parent; the reason they fail closed, or ""."""
        raw = entry.get("blocked_by", [])
        if raw is None:
            raw = []
        ids = [_link_id(item) for item in raw] if isinstance(raw, list) else [None]
        if None in ids or len(ids) > MAX_LINKS:
            return BAD_BLOCKERS
        self._blockers[ticket_id] = [name for name in ids if name is not None]
        parent = entry.get("parent")
        if parent is not None:
            parent_id = _link_id(parent)
            if parent_id is None:
                return BAD_PARENT
            self._parents[ticket_id] = parent_id
        return ""

    def _link(self) -> None:
        """Give every ticket its blockers and sub-issues, with the states the file says."""
        children: dict[str, list[str]] = {}
        for child, parent in self._parents.items():
            children.setdefault(parent, []).append(child)
        for index, ticket in enumerate(self._tickets):
            blockers = tuple(self._state_of(name) for name in self._blockers.get(ticket.id, ()))
            subs = tuple(self._state_of(name) for name in children.get(ticket.id, ()))
            if blockers or subs:
                linked = replace(ticket, blocked_by=blockers, children=subs)
                self._tickets[index] = linked
                self._by_id[ticket.id] = linked

    def _state_of(self, ticket_id: str) -> Link:
        listed = self._by_id.get(ticket_id)
        return Link(ticket_id, open=listed is not None and listed.open)

    def backlog(self) -> list[Ticket]:
        return [ticket for ticket in self._tickets if ticket.open]

    def ticket(self, ticket_id: str) -> Ticket:
        """The listed ticket, or one with unknown labels: a file only knows what it lists."""
        canonical = _ticket_id(ticket_id)
        if canonical is None:
            raise TrackerError(f"invalid ticket id {quoted(ticket_id)}")
        return self._by_id.get(canonical) or Ticket(id=canonical, labels_known=False)

    def labelled(self, label: str) -> list[str]:
        wanted = label.casefold()
        return [ticket.id for ticket in self._tickets
                if ticket.open and any(name.casefold() == wanted for name in ticket.labels)]

    def add_labels(self, ticket_id: str, labels: list[str]) -> None:
        return None

    def remove_labels(self, ticket_id: str, labels: list[str]) -> None:
        return None

    def comment(self, ticket_id: str, body: str) -> None:
        return None

    def open_pull_requests(self) -> list[PullRequest]:
        return []

    def set_board_status(self, ticket_id: str, project: str, owner: str, status: str) -> None:
        return None


def _cut(text: str, over: bool) -> tuple[str, bool]:
    """Drop the partial last line of a read that hit the size bound."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not over:
        return text, False
    text = text[:MAX_BYTES]
    newline = text.rfind("\n")
    return (text[:newline] if newline >= 0 else ""), True


def _ticket_id(raw: str) -> str | None:
    try:
        return parse_ticket(raw)
    except BadTicketError:
        return None


def _link_id(raw: Any) -> str | None:
    """A ticket id named in `blocked_by` or `parent`: a number, `640` or `#640`."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        return None
    return _ticket_id(raw.strip())


def _label_names(raw: list[Any]) -> tuple[str, ...]:
    names = (item.get("name") if isinstance(item, dict) else item for item in raw)
    return bound_labels(names)
