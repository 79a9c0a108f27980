"""Options shared by every command, and the session they describe."""

from __future__ import annotations

from typing import Any, Callable

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (errors included).")(function)


def remote_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--remote", metavar="NAME",
                            help="Remote that holds the claims [claim.remote, else origin].")(function)
    function = click.option("--agent", metavar="NAME",
                            help="Who we are [GIT_CLAIM_AGENT, claim.agent, else user@host:dir].")(function)
    return function


def session_from(remote: str | None, agent: str | None, **extra: str | None) -> Any:
    from ..session import open_session

    return open_session(remote=remote, agent=agent, **extra)


def parse_tickets(raw: tuple[str, ...]) -> list[str]:
    """Validate every id before anything touches git (a bad one exits 2)."""
    from ..ticket import parse_ticket

    seen: list[str] = []
    for item in raw:
        ticket = parse_ticket(item)
        if ticket not in seen:
            seen.append(ticket)
    return seen
