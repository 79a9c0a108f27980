"""A server that refuses a step: what a host's protected-ref rules do to claims.

Agents only ever create claim refs and fast-forward notes refs, so a host
that refuses every delete and rewrite under refs/claims/ and every rewind
or delete under refs/notes/claims/ (a protected namespace, gitolite's `RWC`)
changes nothing: claim, heartbeat, release, reap and reopen all succeed.
A host that refuses the notes namespace itself (an identity allowed to
claim but not to record anything) makes those steps fail: the tool may
fail, in the host's own words, but it must never report a heartbeat, a
release or a reap that did not happen.
"""

from __future__ import annotations

import pytest

from agents import remote_refs, ticket_state, with_env
from faultkit import assert_clean_output, claim_refs

TTL = ["--ttl", "10s", "--max-skew", "0"]
ZERO = "0" * 40

PROTECT = f"""#!/bin/sh
status=0
while read old new ref; do
  case "$ref" in
  refs/claims/*)
    if [ "$old" != {ZERO} ]; then
      echo "protected: $ref may not be changed or deleted" >&2; status=1
    fi;;
  refs/notes/claims/*)
    if [ "$new" = {ZERO} ]; then
      echo "protected: $ref may not be deleted" >&2; status=1
    elif [ "$old" != {ZERO} ] && ! git merge-base --is-ancestor "$old" "$new"; then
      echo "protected: $ref may only be fast-forwarded" >&2; status=1
    fi;;
  esac
done
exit $status
"""

NO_NOTES = """#!/bin/sh
status=0
while read old new ref; do
  case "$ref" in refs/notes/claims/*)
    echo "read-only: $ref may not be written by this identity" >&2; status=1;;
  esac
done
exit $status
"""


def install_hook(world, text: str) -> None:
    hook = world.repo.path / "hooks" / "pre-receive"
    hook.write_text(text)
    hook.chmod(0o755)


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_a_host_refusing_deletes_and_rewrites_of_claims_refuses_nothing_agents_do(
        make_world, transport):
    world = make_world("git", transport)
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    install_hook(world, PROTECT)
    assert alice.claim("640").code == 0
    assert alice.cmd("claim", "641", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-100")).code == 0
    assert alice.claim("642").code == 0
    claims = claim_refs(world.repo)

    beat = alice.cmd("claim", "heartbeat", "640")
    assert beat.code == 0, beat
    release = alice.release("640")
    assert release.code == 0 and "released 640" in release.stdout, release
    assert ticket_state(world.repo, "640").state == "free"
    reap = carol.cmd("reap", *TTL, "--json")
    assert reap.code == 0, reap
    assert [e["ticket"] for e in reap.json()["reaped"]] == ["641"], reap
    assert ticket_state(world.repo, "641").state == "free"
    done = alice.release("642", "--done")
    assert done.code == 0, done
    assert ticket_state(world.repo, "642").state == "done"
    reopened = carol.cmd("claim", "reopen", "642")
    assert reopened.code == 0, reopened
    assert ticket_state(world.repo, "642").state == "free"
    assert claim_refs(world.repo) == claims  # nothing deleted or rewritten

    for ticket in ("640", "641", "642"):  # each freed ticket's next claim is its next epoch
        taken = bob.claim(ticket, "--json")
        assert taken.code == 0, taken
        state = ticket_state(world.repo, ticket)
        assert (state.state, state.epoch, state.in_force) == ("held", 2, taken.json()["tag"])


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_a_refused_note_is_never_reported_as_done(make_world, transport):
    world = make_world("git", transport)
    alice, carol = world.agent("alice"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    assert alice.claim("640").code == 0
    assert alice.cmd("claim", "641", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-100")).code == 0
    install_hook(world, NO_NOTES)
    held = {t: ticket_state(world.repo, t) for t in ("640", "641")}
    notes = {ref: oid for ref, oid in remote_refs(world.repo).items()
             if ref.startswith("refs/notes/")}

    beat = alice.cmd("claim", "heartbeat", "640")
    assert_clean_output(beat)
    assert beat.code == 3 and "may not be written by this identity" in beat.stderr, beat
    release = alice.release("640")
    assert_clean_output(release)
    assert release.code == 3, release
    assert "released" not in release.stdout
    assert "may not be written by this identity" in release.stderr, release
    done = alice.release("640", "--done")
    assert_clean_output(done)
    assert done.code == 3 and "released" not in done.stdout, done
    reap = carol.cmd("reap", *TTL, "--json")
    assert_clean_output(reap)
    assert reap.code == 5, reap
    report = reap.json()
    assert "641" not in [e["ticket"] for e in report["reaped"]], reap
    (undone,) = report["undone"]
    assert undone["ticket"] == "641" and "may not be written by this identity" in \
        undone["reason"], reap

    for ticket in ("640", "641"):  # nothing changed: both still held by alice
        assert ticket_state(world.repo, ticket) == held[ticket]
    assert {ref: oid for ref, oid in remote_refs(world.repo).items()
            if ref.startswith("refs/notes/")} == notes
    assert alice.claim("verify", "640").code == 0
