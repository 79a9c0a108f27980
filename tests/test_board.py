"""`git claim list` as a board: colour only on a terminal, NO_COLOR, width, many claims."""

from __future__ import annotations

import os
import pty
import subprocess

from agents import with_env


def on_terminal(agent, *args, columns=100, extra=None):
    """Run a command with its stdout on a pseudo-terminal of `columns` columns."""
    env = with_env(agent, COLUMNS=str(columns), **(extra or {}))
    env.pop("NO_COLOR", None)
    if extra and "NO_COLOR" in extra:
        env["NO_COLOR"] = extra["NO_COLOR"]
    leader, follower = pty.openpty()
    process = subprocess.Popen(["git", *args], cwd=agent.workdir, env=env, stdout=follower,
                               stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_board_colour_width_and_many_claims(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text("".join(
        f'{{"id": "T{i:03d}", "title": "a rather long title for ticket {i} \\u001b[31m"}}\n'
        for i in range(200)))
    tickets = [f"T{i:03d}" for i in range(200)]
    assert alice.cmd("claim", *tickets[:1]).code == 0
    for ticket in tickets[1:]:
        subprocess.run(["git", "--git-dir", str(world.repo.path), "update-ref",
                        f"refs/claims/{ticket}", _tag_of(world, "T000")], check=True)
    assert alice.claim("--next", "--from", str(backlog)).code == 6  # caches the titles
    piped = alice.claim("list")
    assert "\x1b[" not in piped.stdout
    lines = piped.stdout.splitlines()
    assert len(lines) == 201 and lines[0].split()[:2] == ["TICKET", "STATE"]
    coloured = on_terminal(alice, "claim", "list", columns=80)
    assert "\x1b[32mlive" in coloured
    rows = [line for line in coloured.splitlines() if "T1" in line]
    assert all(len(_visible(line)) <= 80 for line in rows), max(rows, key=len)
    assert "a rather long" in coloured
    assert "ticket 7 ?[31m" in piped.stdout  # the tracker's escape is shown, not obeyed
    plain = on_terminal(alice, "claim", "list", extra={"NO_COLOR": "1"})
    assert "\x1b[" not in plain
    document = alice.claim("list", "--json").json()
    assert len(document) == 200 and set(document[0]) >= {"ticket", "state", "agent", "ours"}


def _tag_of(world, ticket):
    return subprocess.run(["git", "--git-dir", str(world.repo.path), "rev-parse",
                           f"refs/claims/{ticket}"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _visible(line):
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line)
