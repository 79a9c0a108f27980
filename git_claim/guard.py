"""The server-side guard: refuse every change to claims that the protocol never makes.

Installed as a repository's pre-receive (or update) hook, it judges each
pushed ref under the claim and notes namespaces against the protocol:

- a claim ref may only be created, as the ticket's next epoch (refs/claims/640,
  then 640@2, ...), pointing at an annotated tag, and only once the claim
  before it has ended (its latest note is a release, a reap or a reopening,
  or a hand-off, after which only the agent it names may create it);
- a claim ref is never rewritten; it may be deleted only when a newer claim
  of the same ticket exists (compaction of history), never the newest, and
  never the first (epoch 1: a claimer whose view predates every claim of the
  ticket creates the bare ref with no other check);
- a notes ref (`<notes prefix><ticket>`) may be created, then only
  fast-forwarded, never rewound or deleted; each step may add notes and
  replace a heartbeat, but never remove a note or replace one that ended its
  claim (a release as done or blocked gives way to a reopening only, a
  hand-off not yet taken up to a reap or a release);
- no ref may be created that would keep git from creating the protocol's
  own (`refs/notes/claims`, `refs/claims`, `refs/notes/claims/640/x`: a ref
  cannot also be a folder); such refs, and other names under a claim or
  notes prefix, may be deleted, so an admin can clear them away.

So `git push --mirror` from a stale clone, a `--force` push of old tags, or a
buggy client cannot erase or replace anyone's claim, and agents need no
rights beyond create (claims) and fast-forward (notes). Refs elsewhere pass.
It reads the repository with the git CLI, so it runs wherever git does,
inside the quarantine of a push in progress. This module never prints; the
CLI reports its verdicts.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import BadTicketError
from .record import (
    EVENT_HANDED,
    EVENT_REAPED,
    EVENT_RELEASED,
    EVENT_REOPENED,
    OUTCOME_STATES,
    ClaimRecord,
    LivenessRecord,
    frees_ticket,
    parse_claim,
    parse_liveness,
)
from .settings import DEFAULTS, EPOCH_MARK, parse_claim_name
from .ticket import parse_ticket

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
        """The notes prefixes, longest first (a ref belongs to the longest it starts with)."""
        return sorted(dict.fromkeys(notes for _, notes in self.pairs), key=len, reverse=True)

    def blockers(self) -> dict[str, str]:
        """{ref name: the namespace it would block}: each guarded prefix without its
        trailing '/', and its parents under refs/. git cannot create refs/notes/claims/640
        while a ref refs/notes/claims (or refs/notes) exists."""
        found: dict[str, str] = {}
        for prefix in [claims for claims, _ in self.pairs] + self.notes:
            name = prefix.rstrip("/")
            while name.count("/") >= 1:
                found.setdefault(name, prefix)
                name = name.rsplit("/", 1)[0]
        return found


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
    kept: list[tuple[str, str]] = []
    for pair in dict.fromkeys(pairs):  # the first pair for each ref prefix, in order
        if all(pair[0] != other[0] for other in kept):
            kept.append(pair)
    kept.sort(key=lambda pair: len(pair[0]), reverse=True)
    return Namespaces(kept)


def judge(updates: Iterable[PushedUpdate], spaces: Namespaces | None = None) -> list[str]:
    """One refusal per ref the protocol would never push; empty when all may go in."""
    spaces = spaces or namespaces()
    blockers = spaces.blockers()
    refusals = []
    created: dict[str, str] = {}  # refs this push creates, for a ticket's next epoch
    for update in updates:
        pair = next((p for p in spaces.pairs if update.ref.startswith(p[0])), None)
        claim_prefix = pair[0] if pair else None
        notes_prefix = next((p for p in spaces.notes if update.ref.startswith(p)), None)
        if update.ref in blockers:
            claim_prefix = None
            why = None if update.new == ZERO else (
                f"it would keep git from creating refs under {blockers[update.ref]}"
                " (a ref cannot also be a folder); only its deletion is accepted")
        elif pair is not None:
            why = _judge_claim(update, pair[0], pair[1], created)
        elif notes_prefix is not None:
            why = _judge_notes(update, notes_prefix)
        else:
            why = None
        if why:
            refusals.append(f"{update.ref}: {why}")
        elif claim_prefix is not None and update.new != ZERO:
            created[update.ref] = update.new
    return refusals


def _is_ticket(name: str) -> bool:
    """Whether `name` is a ticket id as the commands write it (git_claim.ticket)."""
    try:
        return parse_ticket(name) == name
    except BadTicketError:
        return False


def _epoch_of(name: str) -> tuple[str, int] | None:
    """The client's reading of a claim name, with a valid ticket id on top."""
    found = parse_claim_name(name)
    return found if found is not None and _is_ticket(found[0]) else None


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
        if update.new == ZERO:
            return None  # not a claim: an admin may clear it away
        return "not a claim ref (<ticket> or <ticket>@<epoch>)"
    ticket, epoch = parsed
    epochs = _epochs(prefix, ticket, created)
    newest = max(epochs) if epochs else 0
    if update.new == ZERO:
        if update.ref in created or epoch >= newest:
            return "the newest claim of a ticket is never deleted"
        if epoch == 1:
            # a claimer whose view predates every claim of the ticket creates the bare
            # ref with no other check: were it gone, that claimer would win beside the newest
            return "the first claim of a ticket is kept (later superseded epochs may go)"
        return None  # compaction: a newer claim supersedes this one
    if update.old != ZERO:
        return "claim refs are never rewritten (each claim is a new ref)"
    if _git("cat-file", "-t", update.new).stdout.strip() != "tag":
        return "a claim is an annotated tag"
    if epoch != newest + 1:
        return (f"the next claim of {ticket} is epoch {newest + 1}"
                f" ({prefix}{ticket}{'' if newest == 0 else f'{EPOCH_MARK}{newest + 1}'})")
    if newest:
        ended = _ended(epochs[newest], notes_prefix + ticket)
        if ended is None:
            return f"the claim before it ({ticket} epoch {newest}) has not ended"
        if ended.event == EVENT_HANDED and _claim_record(update.new).agent != ended.to:
            return (f"{ticket} is handed to {ended.to}: only that agent takes it up"
                    f" (epoch {newest + 1})")
    return None


def _claim_record(tag: str) -> ClaimRecord:
    message = _git("cat-file", "tag", tag).stdout.split("\n\n", 1)
    return parse_claim("", message[1].encode() if len(message) > 1 else b"")


def _ended(tag: str, notes_ref: str) -> LivenessRecord | None:
    """The note that ended the claim `tag` (it frees the ticket); None while it is in force."""
    shown = _git("notes", f"--ref={notes_ref}", "show", tag)
    if shown.returncode != 0:
        return None
    note = parse_liveness(shown.stdout.encode())
    return note if frees_ticket(_claim_record(tag), note) else None


def _judge_notes(update: PushedUpdate, prefix: str) -> str | None:
    if not _is_ticket(update.ref[len(prefix):]):
        if update.new == ZERO:
            return None  # not a ticket's notes: an admin may clear it away
        return f"not a ticket's notes ref ({prefix}<ticket>)"
    if update.new == ZERO:
        return "claim notes are never deleted"
    if update.old != ZERO and \
            _git("merge-base", "--is-ancestor", update.old, update.new).returncode != 0:
        return "claim notes only move forward (a fast-forward)"
    return _judge_note_changes(update.old, update.new)


# Where git and git-claim both look for the note on an object: a regular blob named by
# the object's id in lower-case hex, flat or under up to three two-digit fan-out
# directories (git rewrites a large notes tree from abcdef… to ab/cdef…).
_NOTE_PATH = re.compile(r"(?:[0-9a-f]{2}/){0,3}[0-9a-f]+\Z")
_NOTE_MODES = ("100644", "100755")


@dataclass
class _NotesTree:
    notes: dict[str, list[str]]  # annotated object id -> note blob ids (more than one: ambiguous)
    other: set[bytes]  # entries that are not notes, as listed


def _notes_tree(commit: str, width: int) -> _NotesTree | None:
    """The notes of a notes commit as {annotated id: [note blob]}, whatever the fan-out."""
    listed = subprocess.run(["git", "ls-tree", "-r", "-z", "--full-tree", commit],
                            capture_output=True, check=False)
    if listed.returncode != 0:
        return None
    tree = _NotesTree({}, set())
    for entry in listed.stdout.split(b"\0"):
        if not entry:
            continue
        info, _, raw_path = entry.partition(b"\t")
        fields = info.decode("ascii", "replace").split(" ")
        path = raw_path.decode("utf-8", "replace")
        annotated = path.replace("/", "")
        if len(fields) == 3 and fields[0] in _NOTE_MODES and fields[1] == "blob" \
                and len(annotated) == width and _NOTE_PATH.match(path):
            tree.notes.setdefault(annotated, []).append(fields[2])
        else:
            tree.other.add(entry)
    return tree


def _blobs(oids: list[str]) -> dict[str, bytes]:
    """The contents of `oids`, read with one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(oids))
    if not wanted:
        return {}
    output = subprocess.run(["git", "cat-file", "--batch"], capture_output=True, check=False,
                            input="".join(f"{oid}\n" for oid in wanted).encode()).stdout
    found: dict[str, bytes] = {}
    at = 0
    for oid in wanted:
        end = output.find(b"\n", at)
        if end < 0:
            break
        header = output[at:end].split(b" ")
        at = end + 1
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            found[oid] = output[at:at + size]
            at += size + 1
    return found


def _judge_note_changes(old: str, new: str) -> str | None:
    """Refuse a notes step that removes a note or replaces one that ended its claim.

    Old (none for a new notes ref) and new trees are compared as {annotated
    object id: note blob}, so a note moved between flat and fan-out layouts is
    no change. The new tree holds notes only, each stored once, where git and
    git-claim both find it, so both read the same note. A heartbeat may be
    replaced (by the next beat or the claim's end); a release as free, a reap
    and a reopening never; a release as done or blocked only by a reopening;
    a hand-off only by a reap (not taken up within the TTL) or a release.
    """
    before = _NotesTree({}, set()) if old == ZERO else _notes_tree(old, len(old))
    after = _notes_tree(new, len(new))
    if before is None or after is None:
        return "the notes trees could not be read"
    for entry in after.other - before.other:
        shown = entry.partition(b"\t")[2].decode("utf-8", "replace")
        return f"{shown!r} is not a note (a blob named by an object id, as git notes writes it)"
    for annotated, blobs in after.notes.items():
        if len(blobs) > 1 and sorted(blobs) != sorted(before.notes.get(annotated, [])):
            return f"the note on {annotated} would be stored twice"
    for annotated in before.notes:
        if annotated not in after.notes:
            return f"claim notes are never removed (the note on {annotated})"
    changed = {annotated: blobs for annotated, blobs in before.notes.items()
               if sorted(blobs) != sorted(after.notes[annotated])}
    if not changed:
        return None
    needed = [blob for blobs in changed.values() for blob in blobs] \
        + [after.notes[annotated][0] for annotated in changed]
    contents = _blobs(needed)
    if not set(needed) <= set(contents):
        return "the changed notes could not be read"
    for annotated, blobs in changed.items():
        now = parse_liveness(contents[after.notes[annotated][0]])
        for blob in blobs:
            was = parse_liveness(contents[blob])
            if was.event == EVENT_RELEASED and was.outcome in OUTCOME_STATES:
                if now.event != EVENT_REOPENED:
                    return (f"the note on {annotated} releases its claim as {was.outcome}:"
                            " only a reopening replaces it")
            elif was.event == EVENT_HANDED:
                if now.event not in (EVENT_REAPED, EVENT_RELEASED):
                    return (f"the note on {annotated} hands its claim to {was.to}: only a"
                            " reap or a release replaces it")
            elif was.event in (EVENT_RELEASED, EVENT_REAPED, EVENT_REOPENED):
                return f"the note on {annotated} ended its claim ({was.event}): it stays"
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
    from pathlib import Path

    from .atomicfile import write_atomic

    hooks = os.path.join(git_dir, "hooks")
    path = os.path.join(hooks, "pre-receive")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as existing:
            if HOOK_MARK not in existing.read():
                raise FileExistsError(path)
    write_atomic(Path(path), hook_text(executable), mode=0o755)
    return path
