"""Hand-off: `git release T --to AGENT` and `git claim run --hand-off-to AGENT`.

A hand-off is one note on the holder's claim (event `handed`, `Claim-To`),
leased and guarded as a release is. From then on the ticket waits for the
named agent alone: it takes it up by creating the next epoch, guarded by the
notes tip that showed the hand-off, so of two of its processes one wins;
every other agent is refused; the reaper frees a hand-off nobody took up,
TTL after its note and never before. Real servers, real processes; judged
from the remote's refs and the commands' own output.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from agents import (
    PausePoint,
    remote_refs,
    remote_refs_bytes,
    tag_message,
    ticket_state,
    with_env,
)


def note_on(world, ticket: str, tag: str) -> str:
    shown = subprocess.run(["git", "--git-dir", str(world.repo.path), "notes",
                            f"--ref=refs/notes/claims/{ticket}", "show", tag],
                           capture_output=True, text=True)
    return shown.stdout


def reap(agent, *tickets: str, ahead: str = "100"):
    """A reaper whose clock runs `ahead` seconds: a TTL of 1s has passed for every claim."""
    agent.git("config", "claim.heartbeat", "1s")
    args = [item for ticket in tickets for item in ("--ticket", ticket)]
    return agent.cmd("reap", "--ttl", "1s", "--max-skew", "0", *args, "--json",
                     env=with_env(agent, GIT_CLAIM_CLOCK_OFFSET=ahead))


def test_a_hand_off_is_taken_up_by_the_named_agent_alone(sampled_world):
    world = sampled_world
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    assert alice.claim("640").code == 0
    first = ticket_state(world.repo, "640").tag
    handed = alice.release("640", "--to", "bob")
    assert handed.code == 0, handed
    assert handed.stdout.strip() == "handed 640 to bob"
    note = note_on(world, "640", first)
    for line in ("Claim-Event: handed", "Claim-Agent: alice", "Claim-Holder: alice",
                 "Claim-To: bob"):
        assert line in note, note

    # in force for bob alone: carol is refused, alice holds nothing any more
    before = remote_refs_bytes(world.repo)
    refused = carol.claim("640")
    assert refused.code == 1, refused
    assert "640 is held by bob (handed off by alice at" in refused.stderr
    assert "not yet taken up" in refused.stderr
    assert alice.claim("heartbeat", "640").code == 1
    assert alice.release("640").code == 1
    assert carol.release("640").code == 1
    assert remote_refs_bytes(world.repo) == before
    row = {r["ticket"]: r for r in carol.claim("list", "--json").json()}["640"]
    assert (row["agent"], row["handed_from"], row["state"]) == ("bob", "alice", "live")

    taken = bob.claim("640", "--json")
    assert taken.code == 0, taken
    document = taken.json()
    assert (document["ref"], document["epoch"], document["handed_from"]) == \
        ("refs/claims/640@2", 2, "alice")
    state = ticket_state(world.repo, "640")
    assert (state.state, state.agent, state.epoch, state.claims[1]) == ("held", "bob", 2, first)
    assert "Claim-Handed-From: alice" in tag_message(world.repo, state.tag)
    assert bob.claim("heartbeat", "640").code == 0
    assert carol.claim("640").code == 1
    assert bob.release("640", "--done").code == 0

    log = carol.claim("log", "640")
    assert log.code == 0, log
    lines = log.stdout.splitlines()
    assert [line.split()[3] for line in lines] == ["claimed", "handed", "claimed", "heartbeat",
                                                   "released"]
    assert "handed    alice (to bob)" in lines[1]
    assert "@2   claimed   bob (handed from alice)" in lines[2]
    events = carol.claim("log", "640", "--json").json()
    assert events[1]["event"] == "handed" and events[1]["to"] == "bob"
    # the history is in the notes ref: a fresh clone reads it (all but the handed
    # claim's own line: its tag is fetched only by a clone that read it as the newest)
    fresh = world.agent("dave").claim("log", "640").stdout.splitlines()
    assert set(lines[1:]) <= set(fresh) <= set(lines), fresh


def test_only_the_holder_hands_off_and_the_flags_are_checked(make_world):
    world = make_world("git", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    assert bob.release("641", "--to", "carol").code == 1  # not claimed
    assert alice.claim("640").code == 0
    before = remote_refs_bytes(world.repo)
    not_holder = bob.release("640", "--to", "carol")
    assert not_holder.code == 1, not_holder
    assert "not by you" in not_holder.stderr
    for args, words in ((("--to", "alice"), "that is you"),
                        (("--to", "bob", "--done"), "--to hands the claim on"),
                        (("--to", "bob", "--blocked"), "--to hands the claim on"),
                        (("--to", "bob", "--force"), "--to hands the claim on"),
                        (("--to", "b<o>b"), "invalid agent name"),
                        (("--to", "b\nClaim-To: c"), "invalid agent name"),
                        (("--to", "bob\r"), "invalid agent name"),
                        (("--to", "alice "), "has a space at an end"),
                        (("--to", "bo  b"), "spaces in a row")):
        usage = alice.release("640", *args)
        assert usage.code == 2, (args, usage)
        assert words in usage.stderr, usage
    run = alice.cmd("claim", "run", "640", "--hand-off-to", "b\nClaim-To: c", "--", "true")
    assert run.code == 2 and "invalid agent name" in run.stderr, run
    assert remote_refs_bytes(world.repo) == before
    assert alice.claim("heartbeat", "640").code == 0  # still alice's


def test_a_supervised_claim_is_not_handed_off_by_another_process(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    started = tmp_path / "started"
    running = alice.popen("claim", "run", "640", "--",
                          "sh", "-c", f"touch {started}; sleep 30")
    try:
        for _ in range(3000):
            if started.exists():
                break
            assert running.poll() is None, running.communicate()
            import time
            time.sleep(0.01)
        before = remote_refs_bytes(world.repo)
        refused = alice.release("640", "--to", "bob")
        assert refused.code == 1, refused
        assert "another process of yours" in refused.stderr
        assert remote_refs_bytes(world.repo) == before
    finally:
        running.terminate()
        running.communicate(timeout=60)


def test_two_processes_of_the_receiver_race_and_one_wins(make_world, tmp_path):
    world = make_world("git", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    assert alice.release("640", "--to", "bob").code == 0
    pauses = [PausePoint(tmp_path / f"p{i}", "claim:before-push") for i in range(2)]
    racers = [bob.popen("claim", "640", "--json", env=pause.env(bob.env)) for pause in pauses]
    for pause, racer in zip(pauses, racers, strict=True):
        pause.wait_reached(racer)  # both read the hand-off and made a tag of their own
    for pause in pauses:
        pause.go()
    outcomes = [racer.communicate(timeout=120) + (racer.returncode,) for racer in racers]
    codes = sorted(code for _, _, code in outcomes)
    assert codes == [0, 1], outcomes
    loser = json.loads(next(out for out, _, code in outcomes if code == 1))["error"]["message"]
    assert "640 is held by bob" in loser and "not by this process" in loser, loser
    refs = remote_refs(world.repo)
    assert "refs/claims/640@2" in refs and "refs/claims/640@3" not in refs
    state = ticket_state(world.repo, "640")
    winner = next(out for out, _, code in outcomes if code == 0)
    assert state.tag == json.loads(winner)["tag"]


@pytest.mark.parametrize("scheme", ["path", "http"])
def test_the_reaper_frees_an_untaken_hand_off_after_the_ttl_never_before(make_world, scheme):
    world = make_world(scheme, "git" if scheme == "http" else "libgit2")
    alice, bob, carol, reaper = (world.agent(n) for n in ("alice", "bob", "carol", "reaper"))
    # an old claim: the hand-off, not the claim, is the last sign of life
    old = with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-3600")
    assert alice.cmd("claim", "640", env=old).code == 0
    assert alice.release("640", "--to", "bob").code == 0
    fresh = reaper.cmd("reap", "--ttl", "15m", "--json")
    assert fresh.code == 0, fresh
    assert fresh.json()["reaped"] == [] and [e["ticket"] for e in fresh.json()["live"]] == ["640"]
    assert bob.claim("list", "--json").json()[0]["reap_in_seconds"] > 14 * 60

    stale = reap(reaper, "640")
    assert stale.code == 0, stale
    assert [(e["ticket"], e["holder"]) for e in stale.json()["reaped"]] == [("640", "bob")]
    assert ticket_state(world.repo, "640").state == "free"
    taken = carol.claim("640", "--json")  # freed for everyone
    assert taken.code == 0, taken
    assert "handed_from" not in taken.json()
    assert bob.claim("640").code == 1


def test_a_reap_before_the_take_up_lands_makes_it_a_plain_claim(make_world, tmp_path):
    """The take-up is guarded by the notes tip that showed the hand-off: a reap in
    between fails it, and the receiver judges the ticket again (now free) and
    claims it with the same tag (a tag that may have landed is never replaced by a
    second one), so it still says whom it was handed from."""
    world = make_world("git", "libgit2")
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    assert alice.claim("640").code == 0
    assert alice.release("640", "--to", "bob").code == 0
    pause = PausePoint(tmp_path / "p", "claim:before-push")
    taking = bob.popen("claim", "640", "--json", env=pause.env(bob.env))
    pause.wait_reached(taking)
    reaped = reap(reaper, "640")
    assert reaped.code == 0 and reaped.json()["reaped"], reaped
    pause.go()
    out, err = taking.communicate(timeout=120)
    assert taking.returncode == 0, (out, err)
    state = ticket_state(world.repo, "640")
    assert (state.state, state.agent, state.epoch) == ("held", "bob", 2)
    assert state.tag == json.loads(out)["tag"]
    assert "refs/claims/640@3" not in remote_refs(world.repo)


def test_a_reaper_that_judged_the_hand_off_never_takes_the_ticket_from_its_taker(
        make_world, tmp_path):
    """A reaper that read the untaken hand-off and writes after the take-up writes on the
    handed claim, which is no longer the newest: the taker keeps the ticket."""
    world = make_world("path", "libgit2")
    alice, bob, carol, reaper = (world.agent(n) for n in ("alice", "bob", "carol", "reaper"))
    assert alice.claim("640").code == 0
    assert alice.release("640", "--to", "bob").code == 0
    pause = PausePoint(tmp_path / "p", "reap:before-decide")
    reaper.git("config", "claim.heartbeat", "1s")
    reaping = reaper.popen("reap", "--ttl", "1s", "--max-skew", "0", "--json",
                           env=pause.env(with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100")))
    pause.wait_reached(reaping)
    assert bob.claim("640").code == 0
    pause.go()
    out, err = reaping.communicate(timeout=120)
    assert reaping.returncode == 0, (out, err)
    report = json.loads(out)
    assert not report["reaped"], report  # it freed nothing: never said "reaped"
    state = ticket_state(world.repo, "640")
    assert (state.state, state.agent, state.epoch) == ("held", "bob", 2)
    assert bob.claim("heartbeat", "640").code == 0
    assert bob.claim("verify", "640").code == 0
    assert carol.claim("640").code == 1


def test_a_hand_off_of_a_claim_reaped_meanwhile_is_a_clean_loss(make_world, tmp_path):
    world = make_world("http", "libgit2")
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    assert alice.claim("640").code == 0
    pause = PausePoint(tmp_path / "p", "hand-off:before-decide")
    handing = alice.popen("release", "640", "--to", "bob", env=pause.env(alice.env))
    pause.wait_reached(handing)
    assert reap(reaper, "640").json()["reaped"]
    after_reap = remote_refs_bytes(world.repo)
    pause.go()
    out, err = handing.communicate(timeout=120)
    assert handing.returncode == 1, (out, err)
    assert "640 is no longer yours (reaped by reaper" in err
    assert remote_refs_bytes(world.repo) == after_reap  # nothing written
    assert ticket_state(world.repo, "640").state == "free"
    again = alice.release("640", "--to", "bob")  # and said again, the same answer
    assert again.code == 1, again
    taken = bob.claim("640", "--json")
    assert taken.code == 0 and "handed_from" not in taken.json(), taken


AGENT_WORK = """set -e
echo design > design.txt
git add design.txt
git commit -qm "design of $GIT_CLAIM_TICKET"
git push -q origin "HEAD:refs/heads/$GIT_CLAIM_BRANCH"
"""


def test_run_hands_off_on_success_and_the_taker_runs_on(make_world):
    world = make_world("git", "git")
    designer, coder = world.agent("designer"), world.agent("coder")
    usage = designer.claim("run", "640", "--hand-off-to", "designer", "--", "true")
    assert usage.code == 2 and "that is you" in usage.stderr, usage
    assert "refs/claims/640" not in remote_refs(world.repo)

    ran = designer.claim("run", "640", "--worktree", "--hand-off-to", "coder", "--json",
                         "--", "sh", "-c", AGENT_WORK)
    assert ran.code == 0, ran
    document = ran.json()
    assert (document["released"], document["handed_to"], document["status"]) == \
        ("handed", "coder", 0)
    assert document["kept_worktree"]
    assert "handed 640 to coder" in ran.stderr
    state = ticket_state(world.repo, "640")
    assert "Claim-To: coder" in note_on(world, "640", state.tag)

    # a failing command is not handed off: blocked, as before
    blocked = designer.claim("run", "641", "--hand-off-to", "coder", "--json", "--", "false")
    assert blocked.code == 1 and blocked.json()["released"] == "blocked", blocked

    coder.git("fetch", "-q", "origin")
    taken = coder.claim("run", "640", "--json", "--",
                        "sh", "-c", 'git show -s origin/claim/640 --format=%s | grep -q design')
    assert taken.code == 0, taken
    assert taken.json()["released"] == "done"
    events = [e["event"] + (f":{e['outcome']}" if e["outcome"] else "")
              for e in coder.claim("log", "640", "--json").json()]
    assert events == ["claimed", "handed", "claimed", "released:done"]


def test_the_taker_in_the_same_clone_gets_the_worktree_and_its_work(make_world):
    world = make_world("path", "libgit2")
    designer = world.agent("designer")
    ran = designer.claim("run", "640", "--worktree", "--hand-off-to", "coder", "--json",
                         "--", "sh", "-c", "echo draft > draft.txt && git add draft.txt &&"
                                           " git commit -qm draft")
    assert ran.code == 0, ran
    tree = ran.json()["kept_worktree"]
    gc = designer.claim("gc", "--json")  # the worktree waits for the taker
    assert gc.code == 0, gc
    assert subprocess.run(["test", "-d", tree]).returncode == 0
    coder_env = with_env(designer, GIT_CLAIM_AGENT="coder")
    taken = designer.cmd("claim", "640", "--worktree", env=coder_env)
    assert taken.code == 0, taken
    assert f"reusing worktree {tree} on claim/640" in taken.stdout
    assert "(handed off by designer)" in taken.stdout
    head = subprocess.run(["git", "-C", tree, "log", "-1", "--format=%s"],
                          capture_output=True, text=True).stdout.strip()
    assert head == "draft"
    assert designer.cmd("claim", "heartbeat", "640", env=coder_env).code == 0
    assert designer.claim("heartbeat", "640").code == 1  # the designer holds nothing


def test_the_server_guard_lets_only_the_named_agent_take_up(make_world, tmp_path):
    """With `git claim guard` on the server, a claim pushed by hand over a hand-off to
    someone else is refused, and the hand-off's note gives way only to a reap."""
    world = make_world("path", "git")  # the git CLI runs the server's hooks
    admin = world.agent("admin")
    assert admin.claim("guard", "install", str(world.repo.path)).code == 0
    alice, bob, carol, reaper = (world.agent(n) for n in ("alice", "bob", "carol", "reaper"))
    for ticket in ("640", "641"):
        assert alice.claim(ticket).code == 0
        assert alice.release(ticket, "--to", "bob").code == 0
    message = ("claim 640\n\nClaim-Ticket: 640\nClaim-State: held\nClaim-Agent: carol\n"
               "Claim-Host: h\nClaim-Time: 2026-01-01T00:00:00Z\n"
               f"Claim-Nonce: {'ab' * 16}\nClaim-Epoch: 2\nClaim-Version: 1\n")
    blob = carol.git("hash-object", "-w", "--stdin", input="").stdout.strip()
    tag = carol.git("mktag", input=f"object {blob}\ntype blob\ntag claim/640\n"
                                   "tagger carol <c@example.com> 1767225600 +0000\n\n"
                                   + message).stdout.strip()
    pushed = carol.git("push", "origin", f"{tag}:refs/claims/640@2", check=False)
    assert pushed.code != 0, pushed
    assert "640 is handed to bob: only that agent takes it up" in pushed.stderr, pushed
    assert "refs/claims/640@2" not in remote_refs(world.repo)
    assert bob.claim("640").code == 0  # the named agent passes the guard
    assert ticket_state(world.repo, "640").agent == "bob"
    reaped = reap(reaper, "641")  # an untaken hand-off may be reaped
    assert reaped.code == 0 and reaped.json()["reaped"], reaped
    assert ticket_state(world.repo, "641").state == "free"
