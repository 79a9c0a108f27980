"""A lying or hostile remote: refs and objects written straight into the bare repository.

Anyone with push access can write anything under refs/claims/ and
refs/notes/claims/. Whatever is there, the tool never crashes, never hangs,
prints foreign text safely, and never reaps a claim it cannot parse: it
reports it as skipped and leaves the ref alone.

The agents clone before the hostile refs are written, so every hostile
object reaches them through the transport under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents import remote_refs, remote_refs_bytes
from faultkit import assert_clean_output, claim_refs
from servers import ServedRepo

EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
OLD = b"2020-01-01T00:00:00Z"
NONCE = b"0123456789abcdef0123456789abcdef"
MALLORY = b"mallory <mallory@example.invalid> 1700000000 +0000"
ESCAPES = b"\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J\x1b[H bs\x08 del\x7f cr\r csi\xc2\x9b1m rlo\xe2\x80\xae"
TTL = ["--ttl", "10s", "--max-skew", "0"]


# --------------------------------------------------------------------------
# hand-crafting objects and refs with the git CLI


def git_in(repo: ServedRepo, *args: str, data: bytes | None = None) -> str:
    completed = subprocess.run(["git", "--git-dir", str(repo.path), *args], input=data,
                               capture_output=True, check=True)
    return completed.stdout.decode().strip()


def write_object(repo: ServedRepo, kind: str, data: bytes) -> str:
    """Store any bytes as an object of `kind`, valid or not (`--literally`)."""
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
    write_object(repo, "blob", b"")  # what claim tags point to
    oid = obj if isinstance(obj, str) else write_object(repo, kind, obj)
    point(repo, f"refs/claims/{ticket}", oid)
    return oid


def observer(world, name: str = "olga"):
    agent = world.agent(name)
    agent.git("config", "claim.heartbeat", "1s")
    return agent


def battery(agent, tickets: list[str], *, log: list[str] = ()) -> dict:
    """Every reading command, output checked; returns the reaper's JSON report."""
    for command in (["claim", "list"], ["claim", "list", "--json"],
                    ["reap", "--dry-run", *TTL], *(["claim", "log", t] for t in log)):
        outcome = agent.cmd(*command)
        assert_clean_output(outcome, allowed=(0,))
    reaped = agent.cmd("reap", *TTL, "--json")
    assert_clean_output(reaped, allowed=(0,))
    report = reaped.json()
    for ticket in tickets:
        places = [k for k in ("reaped", "live", "skipped", "completed")
                  if ticket in [e["ticket"] for e in report[k]]]
        assert len(places) <= 1, (ticket, report)
    return report


def in_report(report: dict, key: str) -> list[str]:
    return sorted(e["ticket"] for e in report[key])


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
    tickets = ["escapes", "escapes-done", "not-utf8", "nul", "bogus-state", "seed-escapes"]
    kept = {ref: oid for ref, oid in claim_refs(repo).items()
            if ref.rsplit("/", 1)[1] in ("escapes-done", "bogus-state")}
    report = battery(olga, tickets, log=["escapes", "escapes-done", "not-utf8"])
    assert in_report(report, "skipped") == ["bogus-state"], report
    assert in_report(report, "reaped") == ["escapes", "not-utf8", "nul", "seed-escapes"], report
    refs = claim_refs(repo)
    assert all(refs.get(ref) == oid for ref, oid in kept.items()), refs
    refused = olga.cmd("claim", "escapes-done", "bogus-state")
    assert_clean_output(refused)
    assert refused.code == 1 and "escapes-done is done" in refused.stderr, refused


def test_absurd_timestamps(make_world):
    world = make_world("http", "git")
    olga = observer(world)
    repo = world.repo
    install(repo, "year-9999", tag(claim_message("year-9999", time=b"9999-12-31T23:59:59Z")))
    install(repo, "year-1", tag(claim_message("year-1", time=b"0001-01-01T00:00:00Z")))
    install(repo, "negative", tag(claim_message("negative", time=b"-0001-01-01T00:00:00Z"),
                                  tagger=b"m <m@x> -5 +0000"))
    install(repo, "huge-number", tag(claim_message("huge-number", time=b"9" * 400),
                                     tagger=b"m <m@x> " + b"9" * 30 + b" +0000"))
    install(repo, "tagger-far-future", tag(b"agent=mallory nonce=1\n",
                                           tagger=b"m <m@x> 99999999999999 +9999"))
    install(repo, "tagger-negative", tag(b"agent=mallory nonce=1\n",
                                         tagger=b"m <m@x> -99999999999999 -9999"))
    tickets = ["year-9999", "year-1", "negative", "huge-number", "tagger-far-future",
               "tagger-negative"]
    before = claim_refs(repo)
    report = battery(olga, tickets, log=tickets)
    # whatever a timestamp says, a claim the tool cannot date is never reaped
    assert "year-9999" in in_report(report, "live"), report
    assert "year-1" in in_report(report, "reaped"), report
    for ticket in ("negative", "huge-number"):
        assert ticket in in_report(report, "skipped"), report
    refs = claim_refs(repo)
    for ticket in ("year-9999", "negative", "huge-number"):
        assert refs[f"refs/claims/{ticket}"] == before[f"refs/claims/{ticket}"]
    refused = olga.cmd("claim", *tickets)
    assert_clean_output(refused)


@pytest.mark.parametrize("where", [("git", "git"), ("path", "libgit2")],
                         ids=["git-git", "path-libgit2"])
def test_claim_refs_to_things_that_are_not_claims(make_world, where):
    world = make_world(*where)
    olga = observer(world)
    repo = world.repo
    main = remote_refs(repo)["refs/heads/main"]
    claim = write_object(repo, "tag", tag(claim_message("tag-of-tag")))
    install(repo, "commit", main)
    install(repo, "blob", write_object(repo, "blob", b"\x1b[2J" + claim_message("blob")))
    install(repo, "tree", write_object(repo, "tree", b""))
    install(repo, "tag-of-tag", tag(claim_message("tag-of-tag"), target=claim, kind=b"tag"))
    install(repo, "tag-of-nothing", tag(claim_message("tag-of-nothing"), target="1" * 40))
    install(repo, "not-a-claim", tag(b"v1.0\n\nRelease 1.0 \x1b[31m(red)\n"))
    install(repo, "malformed", b"this is \x1b[31mnot\x00 a tag\n")
    tickets = ["commit", "blob", "tree", "tag-of-tag", "tag-of-nothing", "not-a-claim",
               "malformed"]
    before = claim_refs(repo)
    report = battery(olga, tickets)
    assert in_report(report, "skipped") == sorted(tickets), report  # unparseable: never reaped
    assert claim_refs(repo) == before
    refused = olga.cmd("claim", *tickets)
    assert_clean_output(refused)
    assert refused.code == 1, refused
    assert claim_refs(repo) == before


@pytest.mark.parametrize("where", [("git", "libgit2"), ("path", "libgit2")],
                         ids=["git-libgit2", "path-libgit2"])
def test_what_is_read_of_a_claim_is_bounded(make_world, where):
    """Trailers past 64 KiB of a message are not read; objects over 1 MB are not parsed."""
    world = make_world(*where)
    olga = observer(world)
    repo = world.repo
    install(repo, "trailers-past-64k",
            tag(b"claim x\n\n" + b"padding\n" * 9000 + claim_message("trailers-past-64k")))
    install(repo, "trailers-then-900k",
            tag(claim_message("trailers-then-900k") + b"\x1b[31m" * 180_000))
    install(repo, "over-1m", tag(claim_message("over-1m") + b"x" * 1_100_000))
    tickets = ["trailers-past-64k", "trailers-then-900k", "over-1m"]
    before = claim_refs(repo)
    report = battery(olga, tickets, log=tickets)
    assert in_report(report, "reaped") == ["trailers-then-900k"], report
    assert in_report(report, "skipped") == ["over-1m", "trailers-past-64k"], report
    refs = claim_refs(repo)
    for ticket in ("trailers-past-64k", "over-1m"):
        assert refs[f"refs/claims/{ticket}"] == before[f"refs/claims/{ticket}"]


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
    battery(olga, ["t\u00efcket", "-rf"])
    assert_clean_output(olga.cmd("claim", "--", "-rf"), allowed=(1, 2))


# --------------------------------------------------------------------------
# notes that lie


def test_hostile_notes_on_claims(make_world):
    world = make_world("git", "libgit2")
    olga = observer(world)
    repo = world.repo

    def claim_with_notes(ticket: str, notes) -> str:
        oid = install(repo, ticket, tag(claim_message(ticket)))
        point(repo, f"refs/notes/claims/{ticket}", notes(oid))
        return oid

    def note(text: bytes):
        return lambda oid: notes_commit(repo, [("100644", write_object(repo, "blob", text), oid)])

    claim_with_notes("huge-numbers", note(
        b"Claim-Event: heartbeat\nClaim-Time: 2020-01-01T00:00:00Z\nClaim-Seq: " + b"9" * 400 +
        b"\nClaim-TTL: " + b"9" * 400 + b"\n"))
    claim_with_notes("garbage-note", note(bytes(range(256)) * 4))
    claim_with_notes("note-over-1m", note(b"Claim-Event: heartbeat\n" + b"\x1b" * 2_000_000))
    claim_with_notes("note-escapes", note(
        b"Claim-Event: released\nClaim-Time: 2020-01-01T00:00:00Z\nClaim-Agent: " + ESCAPES +
        b"\nClaim-Reason: " + ESCAPES + b"\nClaim-Outcome: \x1b[31mdone\n"))
    claim_with_notes("note-is-a-tree", lambda oid: notes_commit(
        repo, [("040000", write_object(repo, "tree", b""), oid)]))
    claim_with_notes("notes-ref-to-blob", lambda oid: write_object(
        repo, "blob", b"Claim-Event: released\n"))
    claim_with_notes("notes-ref-to-tag", lambda oid: oid)
    tickets = ["huge-numbers", "garbage-note", "note-over-1m", "note-escapes",
               "note-is-a-tree", "notes-ref-to-blob", "notes-ref-to-tag"]
    battery(olga, tickets, log=tickets)
    refused = olga.cmd("claim", *tickets)
    assert_clean_output(refused)
    for ticket in tickets:
        forced = olga.cmd("release", ticket, "--force")
        assert_clean_output(forced)


def test_the_holder_facing_hostile_notes(make_world):
    """A real holder beats and releases while someone rewrites its notes ref."""
    world = make_world("git", "git")
    alice, olga = world.agent("alice"), observer(world)
    repo = world.repo
    hostile = {
        "650": lambda tag_oid: write_object(repo, "blob", b"\x1b[31mnot a notes commit\n"),
        "651": lambda tag_oid: notes_commit(repo, [("100644", write_object(
            repo, "blob", b"Claim-Event: heartbeat\nClaim-Seq: " + b"9" * 400 +
            b"\nClaim-TTL: " + b"9" * 400 + b"\n"), tag_oid)]),
        "652": lambda tag_oid: notes_commit(repo, [("100644", write_object(
            repo, "blob", b"Claim-Event: heartbeat\n" + b"\x1b" * 2_000_000), tag_oid)]),
    }
    for ticket in hostile:
        assert alice.claim(ticket).code == 0
        assert alice.claim("heartbeat", ticket).code == 0
    for ticket, notes in hostile.items():
        point(repo, f"refs/notes/claims/{ticket}", notes(claim_refs(repo)[f"refs/claims/{ticket}"]))
    for ticket in hostile:
        for command in (["claim", "heartbeat", ticket], ["claim", "verify", ticket],
                        ["claim", "log", ticket], ["release", ticket]):
            assert_clean_output(alice.cmd(*command))
    battery(olga, list(hostile))


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
    from agents import Outcome

    peak = tmp_path / "peak"
    peak.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-c", HWM_WRAPPER, program, *args], cwd=agent.workdir,
                          env={**agent.env, "FAULTS_PEAK_FILE": str(peak)}, capture_output=True,
                          text=True, timeout=120)
    return Outcome(done.returncode, done.stdout, done.stderr), int(peak.read_text()) / 1024


@pytest.mark.parametrize("where", [("git", "git"), ("path", "libgit2")],
                         ids=["git-git", "path-libgit2"])
def test_a_100_mb_claim_is_neither_read_nor_reaped(make_world, tmp_path, where):
    world = make_world(*where)
    olga = observer(world)
    repo = world.repo
    message = claim_message("huge") + b"Claim-Reason: " + b"\x1b[31m" * (100 * 2**20 // 5) + b"\n"
    install(repo, "huge", tag(message))
    before = remote_refs_bytes(repo)
    for program, args in (("git-claim", ["list"]), ("git-reap", ["--dry-run", *TTL]),
                          ("git-claim", ["log", "huge"]), ("git-claim", ["huge"])):
        outcome, peak_mb = run_measured(olga, tmp_path, program, *args)
        assert_clean_output(outcome)
        assert peak_mb < 100, f"{program} {args} peaked at {peak_mb:.0f} MB: {outcome}"
    report = olga.cmd("reap", *TTL, "--json")
    assert_clean_output(report, allowed=(0,))
    assert in_report(report.json(), "skipped") == ["huge"], report
    assert remote_refs_bytes(repo) == before


# --------------------------------------------------------------------------
# count


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
    listed = git_in(repo, "for-each-ref", "--count=100001", "--format=x", "refs/claims/")
    assert listed.count("x") == 100_000
    return counts


@pytest.mark.parametrize("command", ["list", "reap"])
def test_a_hundred_thousand_claims(make_world, command):
    world = make_world("path", "libgit2")
    olga = observer(world)
    counts = hundred_thousand_claims(world)
    before = remote_refs_bytes(world.repo)
    if command == "list":
        listed = olga.cmd("claim", "list", "--json", timeout=120)
        assert_clean_output(listed, allowed=(0,))
        states = {}
        for row in listed.json():
            states[row["state"]] = states.get(row["state"], 0) + 1
        assert states == {"stale": counts["stale"], "live": counts["live"],
                          "unknown": counts["unknown"]}, states
    else:
        dry = olga.cmd("reap", "--dry-run", "--json", *TTL, timeout=120)
        assert_clean_output(dry, allowed=(0,))
        report = dry.json()
        assert (len(report["reaped"]), len(report["live"]), len(report["skipped"])) == (
            counts["stale"], counts["live"], counts["unknown"]), report["summary"]
    assert remote_refs_bytes(world.repo) == before
