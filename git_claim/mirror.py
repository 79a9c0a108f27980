"""Mirroring claims to the tracker: labels, comments, a board. Display only.

The claim ref is the lock and the label is its picture, so a failed mirror
is a warning, never a failed claim; `git reap` repairs labels that drifted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import TrackerError
from .safetext import clean

if TYPE_CHECKING:
    from .claims import ClaimView
    from .liveness import Skip, SkipCheck
    from .session import Session
    from .tracker.base import Tracker


def open_label_tracker(session: Session) -> Tracker | None:
    """The tracker named by claim.tracker (or claim.source = gh), if any."""
    name = session.settings.tracker
    if not name:
        return None
    from .tracker.sources import open_tracker

    return open_tracker(name, cwd=session.location.worktree,
                        timeout=session.settings.tracker_timeout,
                        links=session.settings.dependencies)


def _warn(what: str, ticket: str, error: TrackerError, *,
          truth: str = "the claim stands") -> str:
    """One warning that says what did happen: the claim refs, not the labels, are the truth."""
    return f"could not {what} on {clean(ticket)} ({truth}): {error.message}"


REPAIRED_BY_REAP = "`git reap` repairs the labels"


def on_claimed(session: Session, tracker: Tracker | None, ticket: str) -> list[str]:
    if tracker is None or not tracker.can_mirror:
        return []
    settings = session.settings
    warnings = []
    try:
        tracker.add_labels(ticket, [settings.claim_label])
    except TrackerError as error:
        warnings.append(_warn(f"add the label {settings.claim_label}", ticket, error))
    if settings.assign:
        try:
            tracker.assign(ticket, settings.assign)
        except TrackerError as error:
            warnings.append(_warn(f"assign {settings.assign}", ticket, error))
    if settings.project:
        try:
            tracker.set_board_status(ticket, settings.project, settings.project_owner,
                                     settings.project_status)
        except TrackerError as error:
            warnings.append(_warn("set the board status", ticket, error))
    return warnings


def on_released(session: Session, tracker: Tracker | None, ticket: str, outcome: str,
                reason: str) -> list[str]:
    if tracker is None or not tracker.can_mirror:
        return []
    settings = session.settings
    warnings = []
    try:
        tracker.remove_labels(ticket, [settings.claim_label])
        if outcome == "blocked":
            tracker.add_labels(ticket, [settings.blocked_label])
            tracker.comment(ticket, f"Blocked by {settings.agent}: {reason or 'no reason given'}")
    except TrackerError as error:
        done = "released" if outcome not in ("done", "blocked") else f"recorded as {outcome}"
        warnings.append(_warn("update the labels", ticket, error,
                              truth=f"{clean(ticket)} is {done} all the same;"
                                    f" {REPAIRED_BY_REAP}"))
    return warnings


def on_handed(session: Session, tracker: Tracker | None, ticket: str, to: str) -> list[str]:
    """A hand-off: the ticket stays in progress (label kept); a comment names the new holder.

    The new holder's own claim (its take-up) assigns it, when its claim.assign says so.
    """
    if tracker is None or not tracker.can_mirror:
        return []
    try:
        tracker.comment(ticket, f"Handed off by {session.settings.agent} to {to}.")
    except TrackerError as error:
        return [_warn("comment on the hand-off", ticket, error,
                      truth=f"{clean(ticket)} is handed to {clean(to, 80)} all the same")]
    return []


def on_reaped(session: Session, tracker: Tracker | None, tickets: Sequence[str],
              ttl: float) -> list[str]:
    if tracker is None or not tracker.can_mirror:
        return []
    warnings = []
    for ticket in tickets:
        try:
            tracker.remove_labels(ticket, [session.settings.claim_label])
            tracker.comment(ticket, f"Claim reaped by {session.settings.agent}:"
                                    f" no heartbeat within the TTL of {int(ttl)}s.")
        except TrackerError as error:
            warnings.append(_warn("mark the reap", ticket, error,
                                  truth=f"reaped all the same; {REPAIRED_BY_REAP}"))
    return warnings


def repair_labels(session: Session, tracker: Tracker | None,
                  views: dict[str, ClaimView]) -> tuple[list[str], list[str]]:
    """Make the claim label match the refs: (what was fixed, warnings)."""
    if tracker is None or not tracker.can_mirror:
        return [], []
    label = session.settings.claim_label
    held = {t for t, v in views.items() if v.held or v.handed_to is not None}
    try:
        labelled = set(tracker.labelled(label))
    except TrackerError as error:
        return [], [f"could not check the {label} labels: {error.message}"]
    fixed, warnings = [], []
    for ticket in sorted(labelled - held):
        try:
            tracker.remove_labels(ticket, [label])
            fixed.append(f"removed {label} from {ticket}")
        except TrackerError as error:
            warnings.append(_warn(f"remove {label}", ticket, error,
                                  truth="it is not claimed; the next reap tries again"))
    for ticket in sorted(held - labelled):
        if not ticket.isdigit():
            continue
        try:
            tracker.add_labels(ticket, [label])
            fixed.append(f"added {label} to {ticket}")
        except TrackerError as error:
            warnings.append(_warn(f"add {label}", ticket, error,
                                  truth="the claim stands; the next reap tries again"))
    return fixed, warnings


def open_pr_check(session: Session, tracker: Tracker | None) -> SkipCheck | None:
    """A reaper skip check: keep claims with an open pull request (fail safe: keep all)."""
    if tracker is None:
        return None
    from .liveness import Skip  # only the reaper asks; a claim or release never loads liveness
    try:
        pulls = tracker.open_pull_requests()
        failure = None
    except TrackerError as error:
        pulls, failure = [], error.message
    prefix = session.settings.branch_prefix

    def check(view: ClaimView) -> Skip | None:
        if failure is not None:
            return Skip(f"open pull requests unknown ({failure})", sure=False)
        for pull in pulls:
            if pull.head == f"{prefix}{view.ticket}":
                return Skip(f"open pull request #{pull.number} from {pull.head}")
            text = f"{pull.title}\n{pull.body}"
            if re.search(rf"(?<![\w&])#{re.escape(view.ticket)}\b", text):
                return Skip(f"open pull request #{pull.number} references #{view.ticket}")
        return None

    return check
