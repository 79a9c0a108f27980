"""A listing that lacks many claims fetches them by pattern, and writes no local ref.

Above 32 missing claims a reader fetches `refs/claims/*` and the notes in
one go. It needs the objects only: a local ref per claim cost seconds at
10,000 claims (bench/, "reap"), so none is written, on every scheme and
with both transports. The objects are then reachable from no local ref,
so a `git gc --prune=now` in the clone may take them again: the next
reader fetches them again. A reap of many claims writes its notes as one
pack, not as loose objects.
"""

from __future__ import annotations

from agents import remote_refs, ticket_state
from test_pruned_objects import prune

MANY = 40  # above the pattern-fetch threshold (claims.WILDCARD_THRESHOLD = 32)
OLD = 1767225600  # 2026-01-01: every seeded claim is long past any TTL


def seed_claims(seeder, count: int) -> dict[str, str]:
    """`count` claims of other agents, written with plain git and pushed in one push."""
    blob = seeder.git("hash-object", "-w", "--stdin", input="").stdout.strip()
    refs: dict[str, str] = {}
    for index in range(count):
        ticket = f"B{index:03d}"
        agent = f"agent-{index % 7}"
        message = (f"claim {ticket}\n\nClaim-Ticket: {ticket}\nClaim-State: held\n"
                   f"Claim-Agent: {agent}\nClaim-Host: h\nClaim-Time: 2026-01-01T00:00:00Z\n"
                   f"Claim-Nonce: {index:032x}\nClaim-Version: 1\n")
        tag = seeder.git("mktag", input=f"object {blob}\ntype blob\ntag claim/{ticket}\n"
                                        f"tagger {agent} <a@example.com> {OLD} +0000\n\n"
                                        + message).stdout.strip()
        refs[f"refs/claims/{ticket}"] = tag
    seeder.git("push", "-q", "origin", *[f"{tag}:{ref}" for ref, tag in refs.items()])
    return refs


def local_refs(agent) -> list[str]:
    return agent.git("for-each-ref", "--format=%(refname)").stdout.split()


def test_many_missing_claims_are_read_without_local_refs(world):
    seeder, bob, alice = world.agent("seeder"), world.agent("bob"), world.agent("alice")
    seeded = seed_claims(seeder, MANY)
    assert bob.claim("640").code == 0
    assert bob.claim("heartbeat", "640").code == 0
    before = local_refs(alice)

    listed = alice.cmd("claim", "list", "--json")
    assert listed.code == 0, listed
    rows = {row["ticket"]: row for row in listed.json()}
    assert set(rows) == {ref.rsplit("/", 1)[1] for ref in seeded} | {"640"}
    assert rows["B005"]["agent"] == "agent-5" and rows["B005"]["tag"] == seeded["refs/claims/B005"]
    assert rows["640"]["agent"] == "bob" and rows["640"]["beats"] == 1
    assert all(row["problem"] is None for row in rows.values()), rows
    assert local_refs(alice) == before  # objects only: no ref per fetched claim

    # objects reachable from no ref are gc's to take: the next reader fetches again
    prune(alice)
    reaped = alice.cmd("reap", "--ttl", "15m", "--json")
    assert reaped.code == 0, reaped
    assert sorted(e["ticket"] for e in reaped.json()["reaped"]) == sorted(
        ref.rsplit("/", 1)[1] for ref in seeded)
    assert all(ticket_state(world.repo, ref.rsplit("/", 1)[1]).state == "free" for ref in seeded)
    assert ticket_state(world.repo, "640").agent == "bob"
    # the reap's 40 notes commits were written in a pack, none as a loose object
    notes = [oid for ref, oid in remote_refs(world.repo).items()
             if ref.startswith("refs/notes/claims/B")]
    assert len(notes) == MANY
    objects = alice.workdir / ".git" / "objects"
    assert not [oid for oid in notes if (objects / oid[:2] / oid[2:]).exists()], notes
    assert all(alice.git("cat-file", "-e", oid, check=False).code == 0 for oid in notes)
    assert local_refs(alice) == before
