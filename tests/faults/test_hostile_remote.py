"""A lying or hostile remote: refs and objects written straight into the bare repository.

Anyone with push access can write anything under refs/claims/ and
refs/notes/claims/. Whatever is there, the tool never crashes, never hangs,
prints foreign text safely, and never reaps a claim it cannot parse: it
reports it as skipped and leaves it alone (a reap only ever adds a note; no
claim ref is written). Only a ticket's newest claim counts (`T`, `T@2`, ...),
and a ref that merely looks like an epoch counts for nothing.

The agents clone before the hostile refs are written, so every hostile
object reaches them through the transport under test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents import Outcome, remote_refs, remote_refs_bytes, ticket_state, with_env
from faultkit import assert_clean_output, claim_refs
from servers import ServedRepo

EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
OLD = b"2020-01-01T00:00:00Z"
NONCE = b"0123456789abcdef0123456789abcdef"
MALLORY = b"mallory <mallory@example.invalid> 1700000000 +0000"
ESCAPES = (b"\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J\x1b[H bs\x08 del\x7f cr\r"
           b" csi\xc2\x9b1m rlo\xe2\x80\xae")
TTL = ["--ttl", "10s", "--max-skew", "0"]


# --------------------------------------------------------------------------
# hand-crafting objects and refs with the git CLI


def git_in(repo: ServedRepo, *args: str, data: bytes | None = None) -> str:
    completed = subprocess.run(["git", "--git-dir", str(repo.path), *args], input=data,
                               capture_output=True, check=True)
    return completed.stdout.decode().strip()


def write_object(repo: ServedRepo, kind: str, data: bytes) -> str:
    """Store any bytes as an object of `kind`, valid or not (`--literally`)."""
    if kind == "tag":
        git_in(repo, "hash-object", "-w", "--stdin", data=b"")  # what claim tags point to
    return git_in(repo, "hash-object", "-t", kind, "-w", "--stdin", "--literally", data=data)


def point(repo: ServedRepo, ref: str, oid: str) -> None:
    """Set `ref` to `oid`; for an object git will not point a ref at, write the ref file."""
    done = subprocess.run(["git", "--git-dir", str(repo.path), "update-ref", ref, oid],
                          capture_output=True)
    if done.returncode != 0:
        path = repo.path / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(oid + "\n")


def tag(message: bytes, *, target: str = EMPTY_BLOB, kind: bytes = b"blob",
        tagger: bytes = MALLORY) -> bytes:
    return (b"object " + target.encode() + b"\ntype " + kind + b"\ntag claim/x\ntagger " +
            tagger + b"\n\n" + message)


def claim_message(ticket: str, *, agent: bytes = b"mallory", time: bytes = OLD,
                  state: bytes = b"held", extra: bytes = b"") -> bytes:
    t = ticket.encode()
    return (b"claim " + t + b"\n\nClaim-Ticket: " + t + b"\nClaim-State: " + state +
            b"\nClaim-Agent: " + agent + b"\nClaim-Host: " + agent + b"\nClaim-Time: " + time +
            b"\nClaim-Nonce: " + NONCE + b"\nClaim-Version: 1\n" + extra)


def notes_commit(repo: ServedRepo, entries: list[tuple[str, str, str]]) -> str:
    """A notes commit whose tree holds `(mode, oid, name)` entries, as given."""
    listing = "".join(f"{mode} {'tree' if mode == '040000' else 'blob'} {oid}\t{name}\n"
                      for mode, oid, name in entries)
    tree = git_in(repo, "mktree", data=listing.encode())
    return git_in(repo, "commit-tree", tree, "-m", "notes")


def install(repo: ServedRepo, ticket: str, obj: bytes | str, kind: str = "tag") -> str:
    """refs/claims/<ticket> -> `obj` (bytes to store, or an existing object id)."""
    oid = obj if isinstance(obj, str) else write_object(repo, kind, obj)
    point(repo, f"refs/claims/{ticket}", oid)
    return oid


def observer(world, name: str = "olga"):
    agent = world.agent(name)
    agent.git("config", "claim.heartbeat", "1s")
    return agent


def newest_claim(refs: dict[str, str], ticket: str) -> str | None:
    """The ticket's claim that counts: its highest epoch (`T`, then `T@2`, `T@3`, ...).

    Only a suffix that is an epoch makes a claim of the ticket: ASCII digits,
    no leading zero, from 2 (`T@x`, `T@0`, `T@1`, `T@02` are no claims of T).
    """
    found: dict[int, str] = {}
    for ref, oid in refs.items():
        name = ref[len("refs/claims/"):] if ref.startswith("refs/claims/") else None
        if name == ticket:
            found[1] = oid
        elif name is not None and name.startswith(ticket + "@"):
            number = name[len(ticket) + 1:]
            if number.isascii() and number.isdigit() and not number.startswith("0") \
                    and int(number) >= 2:
                found[int(number)] = oid
    return found[max(found)] if found else None


def note_on(repo: ServedRepo, ticket: str, claim: str) -> bytes:
    """The note on `claim` in the ticket's notes ref, as bytes (b"" when there is none)."""
    shown = subprocess.run(["git", "--git-dir", str(repo.path), "notes",
                            f"--ref=refs/notes/claims/{ticket}", "show", claim],
                           capture_output=True)
    return shown.stdout if shown.returncode == 0 else b""


def battery(world, agent, tickets: list[str], *, log: tuple[str, ...] = ()) -> dict[str, str]:
    """List, reap for real, `git claim log` some tickets, try to claim the rest.

    Every output is checked (exit code, no crash, no raw control character).
    A reap never writes a claim ref, and touches only the notes of the
    tickets it reports reaped. Returns each ticket's fate: "reaped" (the
    reaper said so, and its reap note is now on the ticket's newest claim),
    "skipped" (reported as skipped, nothing changed), "kept" (in force: live,
    done; nothing changed) or "free" (no claim in force: an ended one, or
    none; nothing changed). A kept or skipped ticket cannot be claimed; a
    free one can.
    """
    before = remote_refs(world.repo)
    assert_clean_output(agent.cmd("claim", "list"), allowed=(0,))
    listed = agent.cmd("claim", "list", "--json")
    assert_clean_output(listed, allowed=(0,))
    rows = {row["ticket"]: row for row in listed.json()}
    in_force = set(rows)
    for ticket in in_force & set(tickets):  # the claim in force is the newest, by its own ref
        claim = newest_claim(before, ticket)
        assert claim is not None and rows[ticket]["tag"] == claim, (ticket, rows[ticket])
        assert before.get(rows[ticket]["ref"]) == claim, (ticket, rows[ticket])
    reaped = agent.cmd("reap", *TTL)
    assert_clean_output(reaped, allowed=(0, 5))
    lines = reaped.stdout.splitlines()
    if reaped.code == 5:  # claims left in place: only those the remote refused to reap
        assert any(": the remote refused the reap: " in line for line in lines), reaped
    for ticket in log:
        assert_clean_output(agent.cmd("claim", "log", ticket), allowed=(0,))
    after = remote_refs(world.repo)
    assert claim_refs(world.repo) == {r: o for r, o in before.items()
                                      if r.startswith("refs/claims/")}, reaped
    fates = {}
    for ticket in tickets:
        notes = f"refs/notes/claims/{ticket}"
        said_reaped = any(line.startswith(f"reaped {ticket} (") for line in lines)
        if after.get(notes) != before.get(notes):
            claim = newest_claim(after, ticket)
            assert said_reaped and claim is not None, (ticket, reaped)
            assert re.search(rb"^Claim-Event: reaped$", note_on(world.repo, ticket, claim),
                             re.M), (ticket, reaped)
            fates[ticket] = "reaped"
            continue
        assert not said_reaped, (ticket, reaped)
        if any(line.startswith(f"skipped {ticket}: ") for line in lines):
            assert ticket in in_force, (ticket, listed)
            fates[ticket] = "skipped"
        else:
            fates[ticket] = "kept" if ticket in in_force else "free"
    held = [t for t in tickets if fates[t] in ("kept", "skipped")]
    if held:  # `take`: a ticket may be named like a command (`commit`)
        refused = agent.cmd("claim", "take", *held)
        assert_clean_output(refused, allowed=(1,))
    for ticket in (t for t in tickets if fates[t] == "free"):
        assert_clean_output(agent.cmd("claim", "take", ticket), allowed=(0,))
    return fates


# --------------------------------------------------------------------------
# claim tags that lie


def test_foreign_text_in_claims_is_printed_safely(make_world):
    world = make_world("git", "libgit2")
    olga = observer(world)
    repo = world.repo
    install(repo, "escapes", tag(claim_message("escapes", agent=ESCAPES)))
    install(repo, "escapes-done", tag(claim_message(
        "escapes-done", agent=ESCAPES, state=b"done",
        extra=b"Claim-Reason: " + ESCAPES + b"\nClaim-Of: " + EMPTY_BLOB.encode() + b"\n")))
    install(repo, "not-utf8", tag(claim_message("not-utf8", agent=b"\xe9t\xe9\xff\xfe\xc0"),
                                  tagger=b"\xff\xfe\xe9 <m@x> 1700000000 +0000"))
    install(repo, "nul", tag(claim_message("nul") + b"\x00\x1b[31mafter the nul\n"))
    install(repo, "bogus-state", tag(claim_message("bogus-state", state=b"\x1b[5mmine")))
    install(repo, "seed-escapes", tag(b"agent=\x1b[31mmallory nonce=1\x1b[0m\n"))
    fates = battery(world, olga, ["escapes", "escapes-done", "not-utf8", "nul", "bogus-state",
                                  "seed-escapes"], log=("escapes", "escapes-done"))
    assert fates == {"escapes": "reaped", "escapes-done": "kept", "not-utf8": "reaped",
                     "nul": "reaped", "bogus-state": "skipped", "seed-escapes": "reaped"}
    refused = olga.cmd("claim", "escapes-done")
    assert refused.code == 1 and "escapes-done is done" in refused.stderr, refused


def test_absurd_timestamps_and_numbers(make_world):
    """In claim records, in tagger lines (which date hand-made claims), and in notes."""
    world = make_world("http", "git")
    olga = observer(world)
    repo = world.repo
    install(repo, "year-9999", tag(claim_message("year-9999", time=b"9999-12-31T23:59:59Z")))
    install(repo, "year-1", tag(claim_message("year-1", time=b"0001-01-01T00:00:00Z")))
    install(repo, "negative", tag(claim_message("negative", time=b"-0001-01-01T00:00:00Z")))
    install(repo, "huge-number", tag(claim_message("huge-number", time=b"9" * 400)))
    for ticket, tagger in (("tagger-far-future", b"99999999999999 +9999"),
                           ("tagger-negative", b"-99999999999999 -9999"),
                           ("tagger-huge", b"9" * 30 + b" +0000")):
        install(repo, ticket, tag(b"agent=mallory nonce=" + ticket.encode() + b"\n",
                                  tagger=b"m <m@x> " + tagger))
    for ticket, note in (
            ("note-huge-numbers", b"Claim-Event: heartbeat\nClaim-Time: 2020-01-01T00:00:00Z\n"
                                  b"Claim-Seq: " + b"9" * 400 + b"\nClaim-TTL: " + b"9" * 400 +
                                  b"\n"),
            ("note-negative-numbers", b"Claim-Event: reaped\nClaim-Time: 9999-12-31T23:59:59Z\n"
                                      b"Claim-Seq: -5\nClaim-TTL: -1\n")):
        claim = install(repo, ticket, tag(claim_message(ticket)))
        point(repo, f"refs/notes/claims/{ticket}",
              notes_commit(repo, [("100644", write_object(repo, "blob", note), claim)]))
    fates = battery(world, olga, [
        "year-9999", "year-1", "negative", "huge-number", "tagger-far-future", "tagger-negative",
        "tagger-huge", "note-huge-numbers", "note-negative-numbers"],
        log=("year-1", "tagger-negative", "tagger-huge", "note-huge-numbers"))
    # a claim the tool cannot date is never reaped, nor one dated in the future; a tagger
    # time git would not read (negative: git's times are unsigned, or past 64 bits) dates
    # nothing. A note that proves no life leaves a stale claim to be reaped; a reap note,
    # whatever its numbers, frees the ticket.
    assert fates == {
        "year-9999": "kept", "year-1": "reaped", "negative": "skipped",
        "huge-number": "skipped", "tagger-far-future": "kept", "tagger-negative": "skipped",
        "tagger-huge": "skipped", "note-huge-numbers": "reaped",
        "note-negative-numbers": "free"}, fates


def test_claim_refs_to_things_that_are_not_claims(make_world):
    world = make_world("git", "git")
    olga = observer(world)
    repo = world.repo
    main = remote_refs(repo)["refs/heads/main"]
    claim = write_object(repo, "tag", tag(claim_message("tag-of-tag")))
    install(repo, "commit", main)
    install(repo, "blob", write_object(repo, "blob", b"\x1b[2J" + claim_message("blob")))
    install(repo, "tree", write_object(repo, "tree", b""))
    install(repo, "tag-of-tag", tag(claim_message("tag-of-tag"), target=claim, kind=b"tag"))
    install(repo, "not-a-claim", tag(b"v1.0\n\nRelease 1.0 \x1b[31m(red)\n"))
    tickets = ["commit", "blob", "tree", "tag-of-tag", "not-a-claim"]
    fates = battery(world, olga, tickets)
    assert fates == dict.fromkeys(tickets, "skipped")  # unparseable: never reaped


@pytest.mark.parametrize("where", [("git", "libgit2"), ("http", "git"), ("path", "libgit2")],
                         ids=["git-libgit2", "http-git", "path-libgit2"])
def test_claim_objects_that_cannot_be_fetched_spoil_nothing_else(make_world, where):
    """A malformed tag, or a tag of a missing object: no server sends it whole.

    That claim is reported as unreadable and skipped; every other ticket is
    listed as usual. A path remote lets the stale one be reaped. git's
    receive-pack refuses every push to a repository with a ref to a missing
    object (its connectivity check fails: "missing necessary objects"), so over
    git:// and HTTP the stale claim is reported as refused by the remote
    (`git reap` exits 5: a claim left in place), neither reaped nor mistaken
    for a claim that came back to life.
    """
    world = make_world(*where)
    alice, olga = world.agent("alice"), observer(world)
    repo = world.repo
    assert alice.claim("700").code == 0
    assert alice.cmd("claim", "701", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-100")).code == 0
    install(repo, "malformed", b"this is \x1b[31mnot\x00 a tag\n")
    install(repo, "tag-of-nothing", tag(claim_message("tag-of-nothing"), target="1" * 40))
    fates = battery(world, olga, ["malformed", "tag-of-nothing", "700", "701"])
    stale_fate = "reaped" if where[0] == "path" else "skipped"
    assert fates == {"malformed": "skipped", "tag-of-nothing": "skipped", "700": "kept",
                     "701": stale_fate}
    if stale_fate == "skipped":  # exit 5: a stale claim left in place, and which one
        again = olga.cmd("reap", *TTL, "--json")
        assert_clean_output(again, allowed=(5,))
        skipped = {entry["ticket"]: entry["reason"] for entry in again.json()["skipped"]}
        assert skipped["701"].startswith("the remote refused the reap: "), again
        undone = {e["ticket"]: e["undone"] for e in again.json()["undone"]}
        assert undone["701"] == "refused" and set(undone.values()) == {"refused"}, again
        assert not again.json()["revived"] and not again.json()["reaped"], again


def test_what_is_read_of_a_claim_is_bounded(make_world):
    """Trailers past 64 KiB of a message are not read; objects over 1 MB are not parsed."""
    world = make_world("git", "libgit2")
    olga = observer(world)
    repo = world.repo
    install(repo, "trailers-past-64k",
            tag(b"claim x\n\n" + b"padding\n" * 9000 + claim_message("trailers-past-64k")))
    install(repo, "trailers-then-900k",
            tag(claim_message("trailers-then-900k") + b"\x1b[31m" * 180_000))
    install(repo, "over-1m", tag(claim_message("over-1m") + b"x" * 1_100_000))
    fates = battery(world, olga, ["trailers-past-64k", "trailers-then-900k", "over-1m"],
                    log=("trailers-then-900k",))
    assert fates == {"trailers-past-64k": "skipped", "trailers-then-900k": "reaped",
                     "over-1m": "skipped"}


def test_odd_claim_ref_names(make_world):
    world = make_world("path", "libgit2")
    olga = observer(world)
    repo = world.repo
    claim = write_object(repo, "tag", tag(claim_message("x", time=b"9999-12-31T23:59:59Z")))
    point(repo, "refs/claims/t\u00efcket", claim)
    point(repo, "refs/claims/nested/deeper", claim)
    point(repo, "refs/claims/-rf", claim)
    loose = repo.path / "refs" / "claims" / "esc\x1b[31mape"  # not a valid ref name at all
    loose.write_text(claim + "\n")
    before = remote_refs_bytes(repo)
    assert_clean_output(olga.cmd("claim", "list"), allowed=(0,))
    assert_clean_output(olga.cmd("reap", *TTL), allowed=(0,))
    invalid = olga.cmd("claim", "--", "-rf")  # an invalid id never reaches git
    assert_clean_output(invalid, allowed=(2,))
    assert invalid.stdout == "" and invalid.stderr.count("\n") == 1, invalid
    assert "invalid ticket id '-rf'" in invalid.stderr, invalid
    assert claim_refs(repo)["refs/claims/-rf"] == claim
    assert remote_refs_bytes(repo) == before  # the claims dated 9999 are live: nothing reaped


def test_refs_that_look_like_epochs(make_world):
    """Only the newest epoch counts; `T@x`, `T@0`, `T@1`, `T@02`, ... are no claims of T,
    and an epoch may have any number of digits."""
    world = make_world("git", "git")
    olga = observer(world)
    repo = world.repo
    stale = write_object(repo, "tag", tag(claim_message("x")))  # 2020: long stale
    live = write_object(repo, "tag", tag(claim_message("x", time=b"9999-12-31T23:59:59Z")))
    point(repo, "refs/claims/660", stale)  # an old stale claim under a live newer one
    point(repo, "refs/claims/660@3", live)
    point(repo, "refs/claims/661", live)  # a live claim among look-alikes that are stale
    for suffix in ("x", "0", "1", "02", "-3", "2x", "1.5", "2e3"):
        point(repo, f"refs/claims/661@{suffix}", stale)
    point(repo, "refs/claims/662@2", stale)  # a stale claim at epoch 2 alone
    point(repo, "refs/claims/664@2", live)  # a stale claim at a 13-digit epoch over a live one
    point(repo, "refs/claims/664@" + "1" * 13, stale)
    point(repo, "refs/claims/663@x", live)  # no claim of 663 at all
    point(repo, "refs/claims/663@1", live)
    fates = battery(world, olga, ["660", "661", "662", "663", "664"],
                    log=("660", "661", "662", "664"))
    assert fates == {"660": "kept", "661": "kept", "662": "reaped", "663": "free", "664": "reaped"}
    refs = claim_refs(repo)
    assert claim_refs(repo)["refs/claims/663"] != live  # the free 663 got its first epoch
    assert refs["refs/claims/660"] == stale and refs["refs/claims/661@1"] == stale
    taken = olga.cmd("claim", "662", "--json")
    assert taken.code == 0, taken
    assert claim_refs(repo)["refs/claims/662@3"] == taken.json()["tag"]
    assert olga.cmd("claim", "verify", "662").code == 0


def test_non_ascii_digits_make_no_epoch(make_world):
    """`T@<Arabic-Indic three>` is no epoch 3, and `T@<superscript two>` breaks no listing."""
    world = make_world("path", "libgit2")
    alice, olga = world.agent("alice"), observer(world)
    repo = world.repo
    stale = write_object(repo, "tag", tag(claim_message("x")))  # 2020: long stale
    assert alice.claim("672").code == 0
    point(repo, "refs/claims/672@\u00b2", stale)  # superscript two
    live = write_object(repo, "tag", tag(claim_message("x", time=b"9999-12-31T23:59:59Z")))
    point(repo, "refs/claims/673", live)
    point(repo, "refs/claims/673@\u0663", stale)  # Arabic-Indic three
    fates = battery(world, olga, ["672", "673"], log=("672", "673"))
    assert fates == {"672": "kept", "673": "kept"}
    assert alice.claim("verify", "672").code == 0


def ended_claim_at(repo: ServedRepo, ticket: str, suffix: str) -> str:
    """A hand-made claim of `ticket` at refs/claims/<ticket>@<suffix>, reaped long ago."""
    ended = write_object(repo, "tag", tag(claim_message(ticket)))
    ref = f"refs/claims/{ticket}@{suffix}"
    if len(ref) < 200:
        point(repo, ref, ended)
    else:  # too long a name for a file: the ref is packed
        with open(repo.path / "packed-refs", "a") as packed:
            packed.write(f"{ended} {ref}\n")
    point(repo, f"refs/notes/claims/{ticket}", note_commit_of(
        repo, b"Claim-Event: reaped\nClaim-Time: 2020-01-01T00:00:00Z\nClaim-Agent: mallory\n"
              b"Claim-Seq: 1\n")(ended))
    return ended


def test_a_claim_after_a_huge_epoch_is_one_the_tool_can_read(make_world):
    """A claim is never made where the tool would not read it back.

    After a hand-made ended claim at epoch 999999999999 the next claim is
    T@1000000000000, which verify, list and everyone else see. After one
    whose next epoch has more digits than the tool reads, a claim fails
    cleanly (exit 3) and creates nothing.
    """
    world = make_world("path", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    repo = world.repo
    ended_claim_at(repo, "664", "9" * 12)
    taken = alice.claim("664", "--json")
    assert_clean_output(taken, allowed=(0,))
    assert claim_refs(repo)["refs/claims/664@1" + "0" * 12] == taken.json()["tag"]
    assert alice.claim("verify", "664").code == 0, (taken, claim_refs(repo))
    rows = alice.cmd("claim", "list", "--json").json()
    assert [(r["ticket"], r["tag"]) for r in rows] == [("664", taken.json()["tag"])], rows
    refused = bob.claim("664")
    assert refused.code == 1 and "664 is held by alice" in refused.stderr, refused

    world = make_world("git", "git")  # (a path remote cannot list such names: see below)
    carol = world.agent("carol")
    ended_claim_at(world.repo, "665", "9" * 4000)  # the most digits read: the next has 4001
    before = claim_refs(world.repo)
    unreadable = carol.claim("665")
    assert_clean_output(unreadable, allowed=(3,))
    assert "next epoch would not be readable" in unreadable.stderr, unreadable
    assert claim_refs(world.repo) == before
    assert_clean_output(carol.cmd("claim", "list"), allowed=(0,))


def test_a_very_long_claim_ref_name_spoils_nothing(make_world):
    world = make_world("path", "libgit2")
    alice, olga = world.agent("alice"), observer(world)
    assert alice.claim("666").code == 0
    ended_claim_at(world.repo, "667", "9" * 1100)
    fates = battery(world, olga, ["666"])
    assert fates == {"666": "kept"}


# --------------------------------------------------------------------------
# notes that lie


def note_commit_of(repo: ServedRepo, text: bytes):
    return lambda claim: notes_commit(repo, [("100644", write_object(repo, "blob", text), claim)])


def test_hostile_note_contents(make_world):
    world = make_world("git", "libgit2")
    olga = observer(world)
    repo = world.repo
    cases = {
        "garbage-note": note_commit_of(repo, bytes(range(256)) * 4),
        "note-over-1m": note_commit_of(repo, b"Claim-Event: heartbeat\n" + b"\x1b" * 2_000_000),
        "note-escapes": note_commit_of(
            repo, b"Claim-Event: released\nClaim-Time: 2020-01-01T00:00:00Z\nClaim-Agent: " +
            ESCAPES + b"\nClaim-Reason: " + ESCAPES + b"\nClaim-Outcome: \x1b[31mdone\n"),
        "note-is-a-tree": lambda claim: notes_commit(
            repo, [("040000", write_object(repo, "tree", b""), claim)]),
    }
    for ticket, notes in cases.items():
        claim = install(repo, ticket, tag(claim_message(ticket)))
        point(repo, f"refs/notes/claims/{ticket}", notes(claim))
    fates = battery(world, olga, list(cases), log=tuple(cases))
    # A note that cannot be read proves no life: the claim (itself readable, from 2020) is
    # stale and reaped as usual. A release note frees the ticket whatever its outcome says
    # (an outcome other than done or blocked is a release as free).
    assert fates == {"garbage-note": "reaped", "note-over-1m": "reaped", "note-escapes": "free",
                     "note-is-a-tree": "reaped"}, fates


NOT_NOTES = ("notes-ref-to-blob", "notes-ref-to-tag")


def notes_refs_that_are_not_notes_commits(repo: ServedRepo) -> None:
    """Stale claims (2020) whose notes refs point at a blob and at a tag."""
    for ticket in NOT_NOTES:
        claim = install(repo, ticket, tag(claim_message(ticket)))
        point(repo, f"refs/notes/claims/{ticket}", claim if ticket.endswith("tag") else
              write_object(repo, "blob", b"Claim-Event: released\n"))


def assert_not_a_notes_commit(outcome: Outcome) -> None:
    """Exit 3 (the remote's state), one line that says what is wrong and what to do."""
    assert_clean_output(outcome, allowed=(3,))
    assert outcome.stdout == "" and outcome.stderr.count("\n") == 1, outcome
    assert "which is not a notes commit: fix or delete that ref on the remote" in outcome.stderr, \
        outcome


def test_notes_refs_that_are_not_notes_commits(make_world):
    """Nothing can be written on such a ref: the claims stay in force, listed and logged."""
    world = make_world("http", "libgit2")
    olga = observer(world)
    repo = world.repo
    notes_refs_that_are_not_notes_commits(repo)
    before = remote_refs_bytes(repo)
    listed = olga.cmd("claim", "list", "--json")
    assert_clean_output(listed, allowed=(0,))
    rows = {row["ticket"]: row for row in listed.json()}
    assert {t: rows[t]["agent"] for t in NOT_NOTES} == dict.fromkeys(NOT_NOTES, "mallory"), rows
    for ticket in NOT_NOTES:
        assert_clean_output(olga.cmd("claim", "log", ticket), allowed=(0,))
        assert_not_a_notes_commit(olga.cmd("release", ticket, "--force"))
    refused = olga.cmd("claim", *NOT_NOTES)
    assert_clean_output(refused, allowed=(1,))
    assert remote_refs_bytes(repo) == before


def test_a_reap_reports_a_notes_ref_that_is_not_a_notes_commit(make_world):
    """Nothing came back to life: the reap could not be written, so it is undone (exit 5)."""
    world = make_world("http", "libgit2")
    olga = observer(world)
    repo = world.repo
    notes_refs_that_are_not_notes_commits(repo)
    before = remote_refs_bytes(repo)
    reaped = olga.cmd("reap", *TTL, "--json")
    assert_clean_output(reaped, allowed=(0, 5))
    report = reaped.json()
    assert remote_refs_bytes(repo) == before
    assert not report["revived"] and not report["reaped"], report
    skipped = {entry["ticket"]: entry["reason"] for entry in report["skipped"]}
    assert set(skipped) == set(NOT_NOTES), report
    assert all("not a notes commit" in reason for reason in skipped.values()), report
    assert reaped.code == 5, reaped


def test_the_holder_facing_a_hostile_notes_ref(make_world):
    """A real holder beats and releases after someone rewrote its notes ref."""
    world = make_world("git", "git")
    alice, olga = world.agent("alice"), observer(world)
    repo = world.repo
    hostile = {
        "650": lambda claim: write_object(repo, "blob", b"\x1b[31mnot a notes commit\n"),
        "651": note_commit_of(repo, b"Claim-Event: heartbeat\nClaim-Seq: " + b"9" * 400 +
                              b"\nClaim-TTL: " + b"9" * 400 + b"\n"),
        "652": note_commit_of(repo, b"Claim-Event: heartbeat\n" + b"\x1b" * 2_000_000),
    }
    for ticket in hostile:
        assert alice.claim(ticket).code == 0
    assert alice.claim("heartbeat", "650").code == 0  # its next beat expects its own notes tip
    for ticket, notes in hostile.items():
        point(repo, f"refs/notes/claims/{ticket}", notes(claim_refs(repo)[f"refs/claims/{ticket}"]))
    # 650: nothing can be written on a notes ref that is no notes commit, and it says so
    assert_not_a_notes_commit(alice.cmd("claim", "heartbeat", "650"))
    assert_not_a_notes_commit(alice.cmd("release", "650"))
    state = ticket_state(repo, "650")
    assert (state.state, state.agent) == ("held", "alice"), state
    # 651, 652: a notes commit whose note is unreadable is written on top of, as usual
    for ticket in ("651", "652"):
        beat = alice.cmd("claim", "heartbeat", ticket)
        assert_clean_output(beat, allowed=(0,))
        assert beat.stdout.startswith(f"heartbeat {ticket} #"), beat
        assert ticket_state(repo, ticket).event == "heartbeat"
        released = alice.cmd("release", ticket)
        assert_clean_output(released, allowed=(0,))
        assert released.stdout == f"released {ticket}\n", released
        state = ticket_state(repo, ticket)
        assert (state.state, state.event) == ("free", "released"), state
    listed = olga.cmd("claim", "list", "--json")
    assert_clean_output(listed, allowed=(0,))
    assert [row["ticket"] for row in listed.json()] == ["650"], listed


# --------------------------------------------------------------------------
# size


HWM_WRAPPER = r"""
import atexit, os, sys
from importlib.metadata import entry_points

def report():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(os.environ["FAULTS_PEAK_FILE"], "w") as out:
                    out.write(line.split()[1])

atexit.register(report)
(entry,) = entry_points(group="console_scripts", name=sys.argv[1])
sys.argv = sys.argv[1:]
entry.load()()
"""


def run_measured(agent, tmp_path: Path, program: str, *args: str):
    """Run an installed command in-process of a small wrapper; (outcome, peak RSS in MB)."""
    peak = tmp_path / "peak"
    peak.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-c", HWM_WRAPPER, program, *args], cwd=agent.workdir,
                          env={**agent.env, "FAULTS_PEAK_FILE": str(peak)}, capture_output=True,
                          text=True, timeout=120)
    return Outcome(done.returncode, done.stdout, done.stderr), int(peak.read_text()) / 1024


@pytest.mark.parametrize("where", [
    ("git", "libgit2"),  # libgit2 fetches in the tool's own process
    ("path", "libgit2"),  # the tool copies objects itself
], ids=["git-libgit2", "path-libgit2"])
def test_a_100_mb_claim_is_neither_read_nor_reaped(make_world, tmp_path, where):
    world = make_world(*where)
    olga = observer(world)
    repo = world.repo
    message = claim_message("huge") + b"Claim-Reason: " + b"\x1b[31m" * (100 * 2**20 // 5) + b"\n"
    git_in(repo, "config", "pack.compression", "1")  # the server packs it for the client quickly
    install(repo, "huge", tag(message))
    before = remote_refs_bytes(repo)
    outcome, peak_mb = run_measured(olga, tmp_path, "git-reap", *TTL)  # lists, fetches, judges
    assert_clean_output(outcome, allowed=(0,))
    assert "skipped huge: " in outcome.stdout, outcome
    assert peak_mb < 100, f"git reap peaked at {peak_mb:.0f} MB: {outcome}"
    assert_clean_output(olga.cmd("claim", "list"), allowed=(0,))
    assert remote_refs_bytes(repo) == before


# --------------------------------------------------------------------------
# count


HANG = 300  # seconds: a guard against a hang, not a speed target


def hundred_thousand_claims(world) -> dict[str, int]:
    """100,000 claim refs (a third stale, a third live, a third unparseable), packed."""
    repo = world.repo
    kinds = {
        "stale": write_object(repo, "tag", tag(claim_message("many"))),
        "live": write_object(repo, "tag", tag(claim_message("many", time=b"9999-12-31T23:59:59Z"))),
        "unknown": write_object(repo, "tag", tag(b"not a claim\n")),
    }
    names = sorted(f"refs/claims/T{i:06d}" for i in range(100_000))
    order = list(kinds)
    lines = ["# pack-refs with: peeled fully-peeled sorted \n"]
    counts = dict.fromkeys(kinds, 0)
    for name in names:
        kind = order[int(name[-6:]) % 3]
        counts[kind] += 1
        lines.append(f"{kinds[kind]} {name}\n^{EMPTY_BLOB}\n")
    (repo.path / "packed-refs").write_text("".join(lines))
    return counts


def claim_state_files(repo: ServedRepo) -> tuple[bytes, list[str]]:
    """The packed refs and every loose ref: what a change to any ref would touch."""
    loose = sorted(str(p.relative_to(repo.path)) for p in (repo.path / "refs").rglob("*")
                   if p.is_file())
    return (repo.path / "packed-refs").read_bytes(), loose


@pytest.mark.slow  # ~15 s of CPU per command: outside the default run, see docs/reliability.md
def test_a_hundred_thousand_claims(make_world):
    """`git claim list --json` and `git reap --dry-run` (run side by side) finish, and agree."""
    world = make_world("path", "libgit2")
    olga = observer(world)
    counts = hundred_thousand_claims(world)
    before = claim_state_files(world.repo)
    listing = olga.popen("claim", "list", "--json")
    dry = olga.cmd("reap", "--dry-run", "--json", *TTL, timeout=HANG)
    out, err = listing.communicate(timeout=HANG)
    listed = Outcome(listing.returncode, out, err)
    assert_clean_output(listed, allowed=(0,))
    states: dict[str, int] = {}
    for row in listed.json():
        states[row["state"]] = states.get(row["state"], 0) + 1
    assert states == {"stale": counts["stale"], "live": counts["live"],
                      "unknown": counts["unknown"]}, states
    assert_clean_output(dry, allowed=(0,))
    report = dry.json()
    assert (len(report["reaped"]), len(report["live"]), len(report["skipped"])) == (
        counts["stale"], counts["live"], counts["unknown"]), report["summary"]
    assert claim_state_files(world.repo) == before
