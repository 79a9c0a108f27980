"""Ticket ids, validated before anything touches git.

A ticket id becomes the last component of a ref name, so the rules are those
of a safe, unambiguous ref component. `TicketId` can only be made here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NewType

from .errors import BadTicketError
from .safetext import quoted

TicketId = NewType("TicketId", str)

MAX_TICKET_LENGTH = 64
_TICKET_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")


def parse_ticket(raw: str) -> TicketId:
    """Return the canonical id for `raw` or raise BadTicketError (exit 2).

    A leading `#` is dropped, so `#640` and `640` are one ticket. Nothing else
    is normalised: two different accepted ids always give two different refs.
    """
    text = raw[1:] if raw.startswith("#") else raw
    shown = quoted(raw)
    if not text:
        raise BadTicketError(f"invalid ticket id {shown}: it is empty")
    if len(text) > MAX_TICKET_LENGTH:
        raise BadTicketError(
            f"invalid ticket id {shown}: longer than {MAX_TICKET_LENGTH} characters"
        )
    if not _TICKET_PATTERN.match(text):
        raise BadTicketError(
            f"invalid ticket id {shown}: use ASCII letters, digits, '.', '_' and '-',"
            " not starting with '-' or '.'"
        )
    if ".." in text:
        raise BadTicketError(f"invalid ticket id {shown}: it contains '..'")
    if text.endswith("."):
        raise BadTicketError(f"invalid ticket id {shown}: it ends in '.'")
    if text.endswith(".lock"):
        raise BadTicketError(f"invalid ticket id {shown}: it ends in '.lock'")
    return TicketId(text)


def check_id_pattern(tickets: Iterable[str], pattern: re.Pattern[str] | None) -> None:
    """Refuse (exit 2) an id that claim.idPattern does not match in full.

    For teams whose ids all look alike (`640`, `KEY-123`): a word of another
    shape is then a mistake, not a ticket, even after `take` or `--`. Checked
    for every id before the first is claimed; ids read from the remote or the
    backlog are not checked (they were not typed).
    """
    if pattern is None:
        return
    for ticket in tickets:
        if not pattern.fullmatch(ticket):
            raise BadTicketError(f"ticket id {quoted(ticket)} does not match claim.idPattern"
                                 f" {quoted(pattern.pattern)}")
