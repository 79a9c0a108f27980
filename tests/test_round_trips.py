"""What each command costs on the wire, counted by the servers themselves.

A round trip costs 20-200 ms on a real link, so each command uses the
fewest the protocol allows (docs/performance.md, "Over a link"): a claim,
a first claim and a heartbeat are one push connection each (a claim's read
comes from the push connection's own advertisement; a claim's first beat
reads first), `--next` is one
listing (its fetch sharing the connection) and one push, a release is one
listing and one push (a write guarded by a second ref negotiates on an
advertisement of its own), and a
listing and the fetch of what it lacks share one connection. Counted on
`git daemon` (one line per connection) and on smart HTTP (one line per
request), with the libgit2 transport; the git CLI transport's costs are in
test_push_reports.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from agents import PausePoint, notes_log, remote_refs
from servers import DaemonServer, HttpServer

_DAEMON_REQUEST = re.compile(r"Request (upload-pack|receive-pack) for '([^']*)'")


def _traffic(world) -> list[str]:
    """Every connection (git://) or request (HTTP) this world's repository has had."""
    name = world.repo.path.name
    server = world.server
    if isinstance(server, HttpServer):
        return [f"{r['method']} {r['path'].rsplit('/', 1)[-1]}"
                f"{'?' + r['query'] if r.get('query') else ''}"
                for r in server.requests() if f"/{name}/" in r["path"]]
    assert isinstance(server, DaemonServer)
    return [m.group(1) for m in map(_DAEMON_REQUEST.search, server.log_text().splitlines())
            if m and m.group(2).rstrip("/").endswith(name)]


def counted(world, run):
    """The result of `run()` and the connections or requests it cost."""
    import time

    before = len(_traffic(world))
    result = run()
    deadline = time.monotonic() + 2.0  # git daemon logs a connection from its child
    seen = _traffic(world)[before:]
    while time.monotonic() < deadline:
        time.sleep(0.1)
        later = _traffic(world)[before:]
        if later == seen:
            break
        seen = later
    return result, seen


PUSH = {"git": ["receive-pack"],
        "http": ["GET refs?service=git-receive-pack", "POST git-receive-pack"]}
LISTING = {"git": ["upload-pack"], "http": ["GET refs?service=git-upload-pack"]}
LISTING_AND_FETCH = {"git": ["upload-pack"],
                     "http": ["GET refs?service=git-upload-pack", "POST git-upload-pack"]}
# A listing for a write that then needs objects this clone lacks: the push
# connection's advertisement, a fetch, then the push on a connection of its own
# (an agent never keeps a push connection idle while it fetches).
PUSH_AFTER_FETCH = {"git": ["receive-pack", "upload-pack", "receive-pack"],
                    "http": ["GET refs?service=git-receive-pack",
                             "GET refs?service=git-upload-pack", "POST git-upload-pack",
                             "GET refs?service=git-receive-pack", "POST git-receive-pack"]}


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_each_command_costs_the_fewest_round_trips(make_world, scheme, tmp_path):
    world = make_world(scheme, "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")

    def cost(agent, *args, code=0):
        out, seen = counted(world, lambda: agent.cmd(*args))
        assert out.code == code, out
        return seen

    # the read before the write is the push connection's own advertisement
    assert cost(alice, "claim", "640") == PUSH[scheme]
    # a claim's first beat reads (it proves no newer epoch exists), later ones do not
    assert cost(alice, "claim", "heartbeat", "640") == LISTING[scheme] + PUSH[scheme]
    assert cost(alice, "claim", "heartbeat", "640") == PUSH[scheme]
    # a loser reads the ticket and fetches the holder's claim to name it, and writes nothing
    assert cost(bob, "claim", "640", code=1) == PUSH[scheme][:1] + LISTING_AND_FETCH[scheme]
    # a release reads, then writes its guarded note on a fresh advertisement
    assert cost(alice, "release", "640", "--done") == LISTING[scheme] + PUSH[scheme]
    # a listing and the fetch of what it lacks share one connection
    assert cost(bob, "claim", "list") == LISTING_AND_FETCH[scheme]
    assert cost(bob, "reap", "--ttl", "15m") == LISTING[scheme]  # nothing stale: no push
    # a run is its claim and its release (no beat is due in a short command)
    assert cost(alice, "claim", "run", "800", "--", "true") == \
        PUSH[scheme] + LISTING[scheme] + PUSH[scheme]
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("640\n800\n700\n701\n")
    # --next: one listing, whose fetch (bob lacks the notes that ended 800)
    # shares its connection, then one push
    assert cost(bob, "claim", "--next", "--from", str(backlog)) == \
        LISTING_AND_FETCH[scheme] + PUSH[scheme]
    assert cost(alice, "claim", "list") == LISTING_AND_FETCH[scheme]
    assert cost(alice, "claim", "--next", "--from", str(backlog)) == LISTING[scheme] + PUSH[scheme]
    # a claim after another's released claim: bob lacks its tag and notes, and
    # the new epoch is guarded: listing, fetch, push on a connection of its own
    assert alice.claim("900").code == 0 and alice.release("900").code == 0
    assert cost(bob, "claim", "900") == PUSH_AFTER_FETCH[scheme]


# A write goes over the connection its listing came from, so the listing it
# judged may be old by the time the write reaches the server. The server
# still checks every expected value under its own ref lock: a write whose
# listing went stale loses cleanly, and nothing is written.

HELD = {"GIT_CLAIM_TEST_HELD_SECONDS": "120"}  # the pause must not outlast the held connection


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_claim_whose_listing_went_stale_loses_at_the_server(make_world, scheme):
    world = make_world(scheme, "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    before = len(_traffic(world))
    first = alice.popen("claim", "640", "--json", env={**pause.env(alice.env), **HELD})
    pause.wait_reached(first)
    won = bob.claim("640", "--json")  # lands between alice's listing and her push
    assert won.code == 0, won
    pause.go()
    code = first.wait(timeout=60)
    out, err = first.communicate()
    assert code == 1 and "held by bob" in out, (out, err)
    assert remote_refs(world.repo)["refs/claims/640"] == won.json()["tag"]
    assert "refs/claims/640@2" not in remote_refs(world.repo)
    # alice's push went over the connection of her listing, and the server
    # refused it: she read the ref back (a listing), where a push on a new
    # connection would have stopped at its advertisement
    seen = _traffic(world)[before:]
    if scheme == "git":  # alice's listing, bob's claim, alice's read-back
        assert seen[:3] == ["receive-pack", "receive-pack", "upload-pack"], seen
    else:  # alice's listing, bob's, bob's push, alice's push without a new listing
        assert seen[:4] == [PUSH["http"][0], PUSH["http"][0], PUSH["http"][1],
                            PUSH["http"][1]], seen


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_release_whose_listing_went_stale_writes_nothing(make_world, scheme):
    """A reap lands between the holder's listing and its release: the release
    is refused at the server, re-read, and reported as a lost claim."""
    world = make_world(scheme, "libgit2")
    alice, reaper = world.agent("alice"), world.agent("reaper")
    assert alice.claim("640").code == 0
    pause = PausePoint(world.root / "pauses", "release:before-decide")
    before = len(_traffic(world))
    release = alice.popen("release", "640", "--done", env={**pause.env(alice.env), **HELD})
    pause.wait_reached(release)
    reaped = reaper.cmd("reap", "--ttl", "0s", "--max-skew", "0s", "--force")
    assert reaped.code == 0 and "640" in reaped.stdout, reaped
    notes = notes_log(world.repo, "640")
    pause.go()
    code = release.wait(timeout=60)
    out, err = release.communicate()
    assert code == 1 and "reaped" in err, (out, err)
    assert notes_log(world.repo, "640") == notes  # nothing written after the reap
    del before


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_release_after_the_claim_ref_was_deleted_is_no_success(make_world, scheme):
    """Plain git deletes the claim ref between a release's listing and its write
    (a host without the guard): the guard, read on the write's own connection,
    refuses the note, and `run` reports the claim lost (exit 4), not done."""
    world = make_world(scheme, "libgit2")
    alice = world.agent("alice")
    pause = PausePoint(world.root / "pauses", "release:before-decide")
    run = alice.popen("claim", "run", "5", "--", "true", env={**pause.env(alice.env), **HELD})
    pause.wait_reached(run)
    subprocess.run(["git", "--git-dir", str(world.repo.path), "update-ref", "-d",
                    "refs/claims/5"], check=True)
    pause.go()
    code = run.wait(timeout=60)
    out, err = run.communicate()
    assert code == 4, (code, out, err)
    assert "Traceback" not in err
    assert notes_log(world.repo, "5") == []  # no note on a claim nothing references


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_claim_after_notes_were_rewound_is_refused(make_world, scheme):
    """A forced push from a stale clone rewinds the notes that showed a reap,
    between a claimer's listing and its push: the claim's guard, read on the
    push's own connection, catches it, and the claimer finds the claim held."""
    world = make_world(scheme, "libgit2")
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    assert alice.claim("9").code == 0
    assert alice.cmd("claim", "heartbeat", "9").code == 0
    git = ["git", "--git-dir", str(world.repo.path)]
    before_reap = subprocess.run([*git, "rev-parse", "refs/notes/claims/9"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    assert reaper.cmd("reap", "--ttl", "0s", "--max-skew", "0s", "--force").code == 0
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    claiming = bob.popen("claim", "9", "--json", env={**pause.env(bob.env), **HELD})
    pause.wait_reached(claiming)
    subprocess.run([*git, "update-ref", "refs/notes/claims/9", before_reap], check=True)
    pause.go()
    code = claiming.wait(timeout=60)
    out, err = claiming.communicate()
    assert code == 1 and "held by alice" in out, (code, out, err)
    assert "refs/claims/9@2" not in remote_refs(world.repo)


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_next_loser_takes_its_ticket_when_it_is_free_again(make_world, scheme, tmp_path):
    """The ticket a --next lost is released by its winner before the loser lists
    again: the loser claims it (the next epoch) instead of reporting nothing left."""
    world = make_world(scheme, "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("5\n")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    picking = alice.popen("claim", "--next", "--from", str(backlog), "--json",
                          env={**pause.env(alice.env), **HELD})
    pause.wait_reached(picking)
    assert bob.claim("5").code == 0
    assert bob.release("5").code == 0
    pause.go()
    code = picking.wait(timeout=60)
    out, err = picking.communicate()
    assert code == 0, (code, out, err)
    assert remote_refs(world.repo)["refs/claims/5@2"] == json.loads(out)["tag"]


def test_a_held_connection_the_server_closed_is_replaced(make_world):
    """The server drops the push connection a claim's listing came over (git daemon
    kills its oldest child beyond --max-connections) while the claim is judged:
    the claim still settles and wins on a connection of its own, instead of
    failing (a push that failed before sending is pushed again; one that may
    have been sent is settled by reading the ref back)."""
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    claiming = alice.popen("claim", "640", "--json", env={**pause.env(alice.env), **HELD})
    pause.wait_reached(claiming)
    assert _kill_receive_packs(world.repo.path) > 0, "no receive-pack of ours to kill"
    pause.go()
    code = claiming.wait(timeout=60)
    out, err = claiming.communicate()
    assert code == 0, (code, out, err)
    assert remote_refs(world.repo)["refs/claims/640"] == json.loads(out)["tag"]


def _kill_receive_packs(repo: Path) -> int:
    """SIGKILL the daemon's receive-pack processes serving `repo` (they run in it,
    as `git receive-pack .`), and their `git-daemon --serve` parents."""
    import os
    import signal

    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if b"receive-pack" in cmdline and cwd.resolve() == repo.resolve():
            for pid in (int(entry.name), parent):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
    return killed


def test_a_first_beat_after_the_notes_were_deleted_finds_the_newer_claim(make_world):
    """A reap and a newer claim land, then a stale clone's push deletes the notes
    ref (plain git, a host without the guard): the holder's first beat would
    find "no notes", as its claim left them, and land; it reads first, sees the
    newer epoch, and is refused."""
    world = make_world("git", "libgit2")
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    assert alice.claim("9").code == 0
    assert reaper.cmd("reap", "--ttl", "0s", "--max-skew", "0s", "--force").code == 0
    assert bob.claim("9").code == 0
    subprocess.run(["git", "--git-dir", str(world.repo.path), "update-ref", "-d",
                    "refs/notes/claims/9"], check=True)
    beat = alice.cmd("claim", "heartbeat", "9")
    assert beat.code == 1 and "bob" in beat.stderr, beat
    assert "refs/notes/claims/9" not in remote_refs(world.repo)
