"""What each command costs on the wire, counted by the servers themselves.

A round trip costs 20-200 ms on a real link, so each command uses the
fewest the protocol allows (docs/performance.md, "Over a link"): a claim,
a heartbeat and a release are one push connection each (the read before a
write comes from the push connection's own advertisement), `--next` is one
listing and one push, and a listing and the fetch of what it lacks share
one connection. Counted on `git daemon` (one line per connection) and on
smart HTTP (one line per request), with the libgit2 transport; the git CLI
transport's costs are in test_push_reports.py.
"""

from __future__ import annotations

import re

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
# connection's advertisement, a fetch, and the push over the first connection.
PUSH_AFTER_FETCH = {"git": ["receive-pack", "upload-pack"],
                    "http": ["GET refs?service=git-receive-pack",
                             "GET refs?service=git-upload-pack", "POST git-upload-pack",
                             "POST git-receive-pack"]}


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
    # the claim kept the notes tip it landed on: no beat reads first, the first neither
    assert cost(alice, "claim", "heartbeat", "640") == PUSH[scheme]
    assert cost(alice, "claim", "heartbeat", "640") == PUSH[scheme]
    # a loser reads the ticket and fetches the holder's claim to name it, and writes nothing
    assert cost(bob, "claim", "640", code=1) == PUSH[scheme][:1] + LISTING_AND_FETCH[scheme]
    assert cost(alice, "release", "640", "--done") == PUSH[scheme]
    # a listing and the fetch of what it lacks share one connection
    assert cost(bob, "claim", "list") == LISTING_AND_FETCH[scheme]
    assert cost(bob, "reap", "--ttl", "15m") == LISTING[scheme]  # nothing stale: no push
    # a run is its claim and its release (no beat is due in a short command)
    assert cost(alice, "claim", "run", "800", "--", "true") == PUSH[scheme] * 2
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("640\n800\n700\n701\n")
    # one listing and one push; bob lacks the notes that ended 800, so they are fetched
    assert cost(bob, "claim", "--next", "--from", str(backlog)) == PUSH_AFTER_FETCH[scheme]
    # an agent that has every object (its listing fetched them) lists and pushes at once
    assert cost(alice, "claim", "list") == LISTING_AND_FETCH[scheme]
    assert cost(alice, "claim", "--next", "--from", str(backlog)) == PUSH[scheme]


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
    if scheme == "git":  # the server refused the push on alice's listing's connection
        seen = _traffic(world)[before:]
        assert seen[:4] == ["receive-pack", "upload-pack", "receive-pack", "upload-pack"], seen
