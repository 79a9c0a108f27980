"""Sixteen agents draining one backlog with dependencies, priorities and capabilities.

Each agent is its own clone and its own loop of `git claim run --next
--until-empty`, as an agent runner would start it. The commands log what
they did (start and end, with the ticket and the agent), and the verdict
is drawn from that log alone: no agent ever started a ticket before all of
its blockers had ended, none started one needing a capability it lacks, no
ticket ran twice, and the gated and the impossible ones never ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

AGENTS = int(os.environ.get("GIT_CLAIM_PICKING_AGENTS", "16"))

# ticket -> (blocked_by, labels)
BACKLOG: dict[str, tuple[list[str], list[str]]] = {
    "1": ([], []), "2": (["1"], []), "3": (["2"], ["P0"]),  # a chain; its end is urgent
    "4": ([], []), "5": ([], ["needs:python"]), "6": ([], []),
    "10": (["4", "5", "6"], ["priority:high"]),  # a fan-in
    "7": ([], ["needs:frontend"]), "8": (["7"], ["needs:frontend"]),
    "9": ([], ["needs:gpu"]),  # nobody can
    "11": ([], ["needs:python", "P1"]),
    "12": ([], ["design:required"]),  # gated: never
    "13": ([], ["P0"]), "14": ([], ["P0"]), "15": ([], ["priority:low"]),
    **{str(n): ([], []) for n in range(16, 25)},
    "25": (["26"], []), "26": (["25"], []),  # a cycle: never
}
NEVER = {"9", "12", "25", "26"}


def capabilities_of(index: int) -> str:
    return "frontend" if index % 4 == 0 else "python" if index % 4 == 1 else ""


def test_sixteen_agents_never_take_an_ineligible_ticket(make_world, tmp_path):
    world = make_world("git", "libgit2")
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text("".join(json.dumps({"id": ticket, "blocked_by": blockers,
                                           "labels": labels}) + "\n"
                               for ticket, (blockers, labels) in BACKLOG.items()))
    log = tmp_path / "work.log"
    stop = tmp_path / "stop"
    work = tmp_path / "work.sh"
    work.write_text(f'echo "start $GIT_CLAIM_TICKET $GIT_CLAIM_AGENT $(date +%s.%N)" >> {log}\n'
                    "sleep 0.3\n"
                    f'echo "end $GIT_CLAIM_TICKET $GIT_CLAIM_AGENT $(date +%s.%N)" >> {log}\n')
    processes = []
    for index in range(AGENTS):
        agent = world.agent(f"picker-{index}")
        agent.git("config", "claim.source", str(backlog))
        can = capabilities_of(index)
        loop = (f"while [ ! -e {stop} ]; do git claim run --next --until-empty"
                f" {'--can ' + can if can else ''} -- sh {work}"
                f" >> {tmp_path}/agent-{index}.out 2>&1; sleep 1; done")
        processes.append(subprocess.Popen(["sh", "-c", loop], cwd=agent.workdir,
                                          env=agent.env, start_new_session=True))
    expected = set(BACKLOG) - NEVER
    try:
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            ended = {line.split()[1] for line in _lines(log) if line.startswith("end ")}
            if ended >= expected:
                break
            time.sleep(0.5)
    finally:
        stop.write_text("")
        for process in processes:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
    events = [line.split() for line in _lines(log)]
    starts = [(ticket, agent, float(at)) for what, ticket, agent, at in events
              if what == "start"]
    ends = {ticket: float(at) for what, ticket, _agent, at in events if what == "end"}
    started = [ticket for ticket, _agent, _at in starts]
    assert sorted(started) == sorted(set(started)), "a ticket ran twice"
    assert set(started) == expected, (set(started) ^ expected)
    for ticket, agent, at in starts:
        blockers, labels = BACKLOG[ticket]
        for blocker in blockers:
            assert blocker in ends and ends[blocker] < at, \
                f"{agent} started {ticket} before its blocker {blocker} ended"
        can = capabilities_of(int(agent.split("-")[1]))
        for label in labels:
            if label.startswith("needs:"):
                assert label[len("needs:"):] == can, f"{agent} ({can!r}) took {ticket} ({label})"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
