"""A large notes tree: git moves notes into fan-out directories (ab/cdef…).

Any git-CLI write to a ticket's notes ref with many notes rewrites its tree
that way; the tool must keep reading and writing the notes where git put
them, or a done ticket reads as live and is reaped and redone.
"""

from __future__ import annotations

import subprocess

from agents import ticket_state, with_env


def _fan_out(agent, ticket: str, count: int) -> None:
    """Add `count` notes on other objects with the git CLI and push them (a fast-forward)."""
    ref = f"refs/notes/claims/{ticket}"
    agent.git("fetch", "-q", "origin", f"+{ref}:{ref}")
    blobs = subprocess.run(["git", "hash-object", "-w", "--stdin-paths"], cwd=agent.workdir,
                           input="".join(f"{name}\n" for name in _files(agent, count)),
                           capture_output=True, text=True, check=True).stdout.split()
    for blob in blobs:
        agent.git("notes", f"--ref={ref}", "add", "-m", "a note on something else", blob)
    listing = agent.git("ls-tree", ref).stdout
    assert " tree " in listing, listing  # git fanned the notes out
    agent.git("push", "-q", "origin", ref)


def _files(agent, count: int) -> list[str]:
    folder = agent.workdir / ".git" / "fanout"
    folder.mkdir(exist_ok=True)
    names = []
    for index in range(count):
        path = folder / f"f{index}"
        path.write_text(f"object {index}\n")
        names.append(str(path))
    return names


def test_notes_in_fan_out_directories_are_read_and_written_in_place(make_world):
    world = make_world("git", "libgit2")
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    reaper.git("config", "claim.heartbeat", "1s")
    assert alice.claim("66").code == 0
    assert alice.claim("heartbeat", "66").code == 0
    _fan_out(bob, "66", 300)
    assert alice.claim("heartbeat", "66").code == 0
    assert alice.release("66", "--done").code == 0
    assert ticket_state(world.repo, "66").state == "done"
    rows = {r["ticket"]: r for r in bob.claim("list", "--json").json()}
    assert rows["66"]["state"] == "done", rows
    assert bob.claim("66").code == 1
    reaped = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--json",
                        env=with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reaped.code == 0 and reaped.json()["reaped"] == [], reaped
    events = [e["event"] for e in bob.claim("log", "66", "--json").json()]
    assert events == ["claimed", "heartbeat", "heartbeat", "released"], events
    # one note per object: git sees a single note on the claim, the release
    shown = subprocess.run(["git", "--git-dir", str(world.repo.path), "notes",
                            "--ref=refs/notes/claims/66", "show",
                            ticket_state(world.repo, "66").tag],
                           capture_output=True, text=True, check=True).stdout
    assert shown.count("Claim-Event:") == 1 and "Claim-Event: released" in shown, shown
