"""A server that refuses a step: what a host's protected-ref rules do to claims.

Here a `pre-receive` hook refuses every deletion under refs/claims/, as a
rule protecting that namespace would. The tool may fail, but it must never
report a release or a reap that did not happen.
"""

from __future__ import annotations

import pytest

from agents import with_env
from faultkit import assert_clean_output, claim_refs

TTL = ["--ttl", "10s", "--max-skew", "0"]

PROTECT = """#!/bin/sh
status=0
while read old new ref; do
  case "$ref" in refs/claims/*)
    if [ "$new" = 0000000000000000000000000000000000000000 ]; then
      echo "protected: $ref may not be deleted" >&2; status=1
    fi;;
  esac
done
exit $status
"""


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_a_refused_release_or_reap_is_never_reported_as_done(make_world, transport):
    world = make_world("git", transport)
    alice, carol = world.agent("alice"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    hook = world.repo.path / "hooks" / "pre-receive"
    hook.write_text(PROTECT)
    hook.chmod(0o755)
    assert alice.claim("640").code == 0
    assert alice.cmd("claim", "641", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-100")).code == 0

    wrong = []
    release = alice.release("640")
    assert_clean_output(release)
    if "refs/claims/640" in claim_refs(world.repo) and (
            release.code == 0 or "released" in release.stdout):
        wrong.append(f"git release 640 reported success; the claim ref is still there: {release}")
    reap = carol.cmd("reap", *TTL, "--json")
    assert_clean_output(reap)
    if "refs/claims/641" in claim_refs(world.repo) and reap.code == 0 and \
            "641" in [e["ticket"] for e in reap.json()["reaped"]]:
        wrong.append(f"git reap reported 641 reaped; the claim ref is still there: {reap}")
    assert not wrong, "\n".join(wrong)
