"""The server-side guard: refuse every change to claims that the protocol never makes.

Installed as a repository's pre-receive (or update) hook, it judges each
pushed ref under the claim and notes namespaces against the protocol:

- a claim ref may only be created, as the ticket's next epoch (refs/claims/640,
  then 640@2, ...), pointing at an annotated tag, and only once the claim
  before it has ended (its latest note is a release, a reap or a reopening);
- a claim ref is never rewritten; it may be deleted only when a newer claim
  of the same ticket exists (compaction of history), never the newest;
- a notes ref may be created, then only fast-forwarded; never rewound or
  deleted.

So `git push --mirror` from a stale clone, a `--force` push of old tags, or a
buggy client cannot erase or replace anyone's claim, and agents need no
rights beyond create (claims) and fast-forward (notes). Refs elsewhere pass.
It reads the repository with the git CLI, so it runs wherever git does,
inside the quarantine of a push in progress. This module never prints; the
CLI reports its verdicts.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Iterable

from .record import frees_ticket, parse_claim, parse_liveness
from .settings import DEFAULTS, EPOCH_MARK

ZERO = "0" * 40
TAGS_PREFIX = "refs/tags/claim/"


@dataclass(frozen=True)
class PushedUpdate:
    ref: str
    old: str
    new: str


@dataclass
class Namespaces:
    """The prefixes guarded: (claim prefix, its notes prefix), longest claim prefix first.

    The configured pair, the default one, and tags mode's; a ref belongs to
    the longest claim prefix it starts with (refs/claims/team/ before
    refs/claims/), and a claim's end is read from its own pair's notes.
    """

    pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(notes for _, notes in self.pairs))


def _git(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, input=input_text,
                          check=False)


def namespaces() -> Namespaces:
    """claim.refPrefix and claim.notesPrefix of this repository (else defaults), and tags mode."""
    def setting(key: str) -> str:
        value = _git("config", "--get", key).stdout.strip()
        return value if value.startswith("refs/") and value.endswith("/") else DEFAULTS[key]

    notes = setting("claim.notesPrefix")
    pairs = [(setting("claim.refPrefix"), notes),
             (DEFAULTS["claim.refPrefix"], DEFAULTS["claim.notesPrefix"]),
             (TAGS_PREFIX, notes)]
    unique = list(dict.fromkeys(pairs))
    seen: set[str] = set()
    kept = [pair for pair in unique if not (pair[0] in seen or seen.add(pair[0]))]
    kept.sort(key=lambda pair: len(pair[0]), reverse=True)
    return Namespaces(kept)


def judge(updates: Iterable[PushedUpdate], spaces: Namespaces | None = None) -> list[str]:
    """One refusal per ref the protocol would never push; empty when all may go in."""
    spaces = spaces or namespaces()
    refusals = []
    created: dict[str, str] = {}  # refs this push creates, for a ticket's next epoch
    for update in updates:
        pair = next((p for p in spaces.pairs if update.ref.startswith(p[0])), None)
        claim_prefix = pair[0] if pair else None
        notes_prefix = next((p for p in spaces.notes if update.ref.startswith(p)), None)
        if pair is not None:
            why = _judge_claim(update, pair[0], pair[1], created)
        elif notes_prefix is not None:
            why = _judge_notes(update)
        else:
            why = None
        if why:
            refusals.append(f"{update.ref}: {why}")
        elif claim_prefix is not None and update.new != ZERO:
            created[update.ref] = update.new
    return refusals


def _epoch_of(name: str) -> tuple[str, int] | None:
    if EPOCH_MARK not in name:
        return (name, 1) if name and "/" not in name else None
    ticket, _, number = name.rpartition(EPOCH_MARK)
    if not ticket or "/" in ticket or not number.isdigit() or number.startswith("0") \
            or int(number) < 2:
        return None
    return ticket, int(number)


def _epochs(prefix: str, ticket: str, created: dict[str, str]) -> dict[int, str]:
    """The ticket's claims on the server (and those this push creates before this ref)."""
    listing = _git("for-each-ref", "--format=%(refname) %(objectname)",
                   f"{prefix}{ticket}", f"{prefix}{ticket}{EPOCH_MARK}*").stdout
    found: dict[int, str] = {}
    pairs = [line.split(" ", 1) for line in listing.splitlines() if " " in line]
    pairs += [[ref, oid] for ref, oid in created.items()]
    for ref, oid in pairs:
        parsed = _epoch_of(ref[len(prefix):])
        if parsed is not None and parsed[0] == ticket:
            found[parsed[1]] = oid
    return found


def _judge_claim(update: PushedUpdate, prefix: str, notes_prefix: str,
                 created: dict[str, str]) -> str | None:
    parsed = _epoch_of(update.ref[len(prefix):])
    if parsed is None:
        return "not a claim ref (<ticket> or <ticket>@<epoch>)"
    ticket, epoch = parsed
    epochs = _epochs(prefix, ticket, created)
    newest = max(epochs) if epochs else 0
    if update.new == ZERO:
        if update.ref in created or epoch >= newest:
            return "the newest claim of a ticket is never deleted"
        return None  # compaction: a newer claim supersedes this one
    if update.old != ZERO:
        return "claim refs are never rewritten (each claim is a new ref)"
    if _git("cat-file", "-t", update.new).stdout.strip() != "tag":
        return "a claim is an annotated tag"
    if epoch != newest + 1:
        return (f"the next claim of {ticket} is epoch {newest + 1}"
                f" ({prefix}{ticket}{'' if newest == 0 else f'{EPOCH_MARK}{newest + 1}'})")
    if newest and not _ended(epochs[newest], notes_prefix + ticket):
        return f"the claim before it ({ticket} epoch {newest}) has not ended"
    return None


def _ended(tag: str, notes_ref: str) -> bool:
    """Whether the claim `tag` has ended: its latest note frees the ticket."""
    shown = _git("notes", f"--ref={notes_ref}", "show", tag)
    if shown.returncode != 0:
        return False
    message = _git("cat-file", "tag", tag).stdout.split("\n\n", 1)
    record = parse_claim("", message[1].encode() if len(message) > 1 else b"")
    return frees_ticket(record, parse_liveness(shown.stdout.encode()))


def _judge_notes(update: PushedUpdate) -> str | None:
    if update.new == ZERO:
        return "claim notes are never deleted"
    if update.old == ZERO:
        return None
    if _git("merge-base", "--is-ancestor", update.old, update.new).returncode != 0:
        return "claim notes only move forward (a fast-forward)"
    return None


def parse_pre_receive(lines: Iterable[str]) -> list[PushedUpdate]:
    """`<old> <new> <ref>` lines, as a pre-receive hook reads them."""
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            updates.append(PushedUpdate(parts[2], parts[0], parts[1]))
    return updates


HOOK_MARK = "# git-claim guard"


def hook_text(executable: str) -> str:
    """The pre-receive hook: our verdict on every pushed ref, failing closed."""
    return (f"#!/bin/sh\n{HOOK_MARK}: refuses deletes and rewrites of claims"
            " (see git-claim(1), SERVER GUARD)\n"
            f"exec '{executable}' guard pre-receive\n")


def install(git_dir: str, executable: str) -> str:
    """Write the guard as `git_dir`'s pre-receive hook; refuse to replace another hook.

    Returns the hook's path. Hosts that run their own pre-receive (gitolite,
    GitLab and Gitea server hooks) call `git claim guard pre-receive` from
    theirs instead: docs/hosting.md.
    """
    import os

    hooks = os.path.join(git_dir, "hooks")
    path = os.path.join(hooks, "pre-receive")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as existing:
            if HOOK_MARK not in existing.read():
                raise FileExistsError(path)
    os.makedirs(hooks, exist_ok=True)
    temporary = path + ".git-claim-new"
    with open(temporary, "w", encoding="utf-8") as hook:
        hook.write(hook_text(executable))
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)
    return path
