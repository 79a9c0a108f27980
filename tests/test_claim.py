"""The claim lock end to end: `git claim`, `git release`, `git claim list`.

The lock itself runs against each real server (path, file://, git://, smart
HTTP, ssh) with both transports (libgit2 and the git CLI), through `world`:
creating a claim, a creation the server refuses, releasing with and without
force, and a stale release. Scenarios whose transport-specific steps are those
same writes and reads run on `sampled_world`: each server and each
transport at least once.
"""

from __future__ import annotations

import re
import subprocess

from agents import (
    claim_tags_in,
    remote_refs,
    remote_refs_bytes,
    tag_message,
    ticket_state,
    wait_until,
)


def test_claim_then_another_agent_is_refused(world):
    alice, bob = world.agent("alice"), world.agent("bob")
    won = alice.claim("640")
    assert won.code == 0, won
    assert won.stdout.strip() == "claimed 640 (refs/claims/640)"
    lost = bob.claim("640")
    assert lost.code == 1, lost
    assert re.search(r"640 is held by alice since \d\d:\d\d \(\d+s ago\)", lost.stderr), lost
    assert lost.stderr.count("\n") == 1

    refs = remote_refs(world.repo)
    body = tag_message(world.repo, refs["refs/claims/640"])
    assert body.startswith("object e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\ntype blob\n")
    nonce = re.search(r"^Claim-Nonce: ([0-9a-f]+)$", body, re.M)
    assert nonce and len(nonce.group(1)) >= 32
    for key in ("Claim-Ticket: 640", "Claim-Agent: alice", "Claim-Host:", "Claim-Time:",
                "Claim-Base:", "Claim-Version: 1"):
        assert key in body


def test_claiming_again_is_idempotent_for_the_holder(sampled_world):
    world = sampled_world
    alice = world.agent("alice")
    assert alice.claim("640").code == 0
    again = alice.claim("#640")
    assert again.code == 0, again
    assert "already yours" in again.stdout


def test_first_winnable_of_several(sampled_world):
    world = sampled_world
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    assert alice.claim("640").code == 0
    second = bob.claim("640", "641", "642", "--json")
    assert second.code == 0, second
    assert second.json()["ticket"] == "641"
    assert carol.claim("640", "641", "642").stdout.strip() == "claimed 642 (refs/claims/642)"
    none = world.agent("dave").claim("640", "641", "642")
    assert none.code == 1, none
    assert "none of 640, 641, 642 could be claimed" in none.stderr


def test_only_the_holder_releases_unless_forced(world):
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    before = remote_refs_bytes(world.repo)
    refused = bob.release("640")
    assert refused.code == 1, refused
    assert "not by you" in refused.stderr
    assert remote_refs_bytes(world.repo) == before
    forced = bob.release("640", "--force", "--json")
    assert forced.code == 0, forced
    document = forced.json()
    assert {k: document[k] for k in ("ok", "ticket", "outcome", "forced", "holder")} == {
        "ok": True, "ticket": "640", "outcome": "free", "forced": True, "holder": "alice"}
    assert ticket_state(world.repo, "640").state == "free"
    note = subprocess.run(["git", "--git-dir", str(world.repo.path), "log", "-1", "-p",
                           "refs/notes/claims/640"], capture_output=True, text=True).stdout
    assert "Claim-Forced-By: bob" in note
    # alice learns she lost it; nothing changes
    after_force = remote_refs_bytes(world.repo)
    stale = alice.release("640")
    assert stale.code == 1
    assert "no longer yours (released by bob" in stale.stderr
    assert remote_refs_bytes(world.repo) == after_force


def test_outcomes_are_visible_and_refuse_new_claims(sampled_world):
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    assert alice.claim("641").code == 0
    done = alice.release("640", "--done")
    assert done.code == 0, done
    blocked = alice.release("641", "--blocked", "--reason", "needs API key")
    assert blocked.code == 0, blocked
    rows = {row["ticket"]: row for row in bob.claim("list", "--json").json()}
    assert rows["640"]["state"] == "done"
    assert rows["641"]["state"] == "blocked" and rows["641"]["reason"] == "needs API key"
    refused = bob.claim("641")
    assert refused.code == 1
    assert "641 is blocked" in refused.stderr and "needs API key" in refused.stderr
    assert "git claim reopen 641" in refused.stderr
    assert bob.claim("reopen", "641").code == 0
    assert bob.claim("641").code == 0


def test_plain_release_frees_the_ticket(sampled_world):
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    first = ticket_state(world.repo, "640").tag
    assert alice.release("640").code == 0
    assert ticket_state(world.repo, "640").state == "free"
    taken = bob.claim("640", "--json")
    assert taken.code == 0, taken
    state = ticket_state(world.repo, "640")
    assert (state.state, state.agent, state.in_force) == ("held", "bob", taken.json()["tag"])
    assert state.ref == "refs/claims/640@2" and state.claims[1] == first  # a new epoch


def test_stale_release_changes_nothing(world):
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    assert alice.claim("640").code == 0
    assert carol.release("640", "--force").code == 0
    assert bob.claim("640").code == 0
    before = remote_refs_bytes(world.repo)
    for args in (("640",), ("640", "--done"), ("640", "--blocked")):
        stale = alice.release(*args)
        assert stale.code == 1, stale
        assert "no longer yours" in stale.stderr
    assert remote_refs_bytes(world.repo) == before


def test_list_shows_every_claim(sampled_world):
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    assert bob.claim("PROJ-7").code == 0
    rows = alice.claim("list", "--json").json()
    assert [(r["ticket"], r["state"], r["agent"], r["ours"]) for r in rows] == [
        ("640", "live", "alice", True), ("PROJ-7", "live", "bob", False)] or \
        sorted((r["ticket"], r["agent"], r["ours"]) for r in rows) == [
        ("640", "alice", True), ("PROJ-7", "bob", False)]
    table = alice.claim("list")
    assert table.code == 0
    assert "TICKET" in table.stdout and "PROJ-7" in table.stdout and "*640" in table.stdout


def test_a_plain_push_cannot_replace_a_claim(sampled_world):
    """The push is the git CLI's: the tool's transport only made the claims before it."""
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    assert bob.claim("641").code == 0
    refs = remote_refs(world.repo)
    bob.git("fetch", "-q", "origin", "refs/claims/641:refs/tags/bobs-claim")
    before = remote_refs_bytes(world.repo)
    pushed = bob.git("push", "origin", "refs/tags/bobs-claim:refs/claims/640", check=False)
    assert pushed.code != 0, pushed
    assert remote_refs_bytes(world.repo) == before
    assert remote_refs(world.repo)["refs/claims/640"] == refs["refs/claims/640"]


def test_a_stale_lock_file_is_an_error_not_a_holder(world):
    alice = world.agent("alice")
    # how long the remote's writers wait for a lock (git's own setting), kept short here
    subprocess.run(["git", "-C", str(world.repo.path), "config", "core.filesRefLockTimeout",
                    "300"], check=True)
    lock = world.repo.path / "refs" / "claims" / "640.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    try:
        failed = alice.claim("640")
    finally:
        lock.unlink()
    assert failed.code == 3, failed
    assert "held by" not in failed.stderr
    assert "Traceback" not in failed.stderr and failed.stderr.count("\n") == 1
    assert "refs/claims/640" not in remote_refs(world.repo)
    assert alice.claim("640").code == 0  # the retry uses the same, still unpublished claim


def test_a_lock_held_for_a_moment_is_waited_for(world):
    """A contender's `.lock` (held while it writes) is not a refusal: the CI race
    once lost a racer to exit 3 when the winner was descheduled holding its lock."""
    alice = world.agent("alice")
    lock = world.repo.path / "refs" / "claims" / "640.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    claiming = alice.popen("claim", "640")
    # the claim's objects reach the remote right before its ref update meets the lock
    wait_until(lambda: claiming.poll() is not None
               or claim_tags_in(world.repo.path, "640", "alice"), 60,
               "alice's claim push to reach the locked ref")
    assert claiming.poll() is None, claiming.communicate()
    lock.unlink()
    stdout, stderr = claiming.communicate(timeout=60)
    assert claiming.returncode == 0, (stdout, stderr)
    assert "refs/claims/640" in remote_refs(world.repo)


def test_json_errors(sampled_world):
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    refused = bob.claim("640", "--json")
    assert refused.code == 1
    document = refused.json()
    assert document["ok"] is False and document["exit_code"] == 1
    assert "held by alice" in document["error"]["message"]
