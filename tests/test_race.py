"""Many real processes race for one ticket: exactly one wins, every time.

Every race has AGENTS (20) processes, half of them on each transport. The
default run races RACE_TRIALS times on each of four servers: a trial repeats
the same race, so more of them only look for a rare failure, which
`pytest -m slow` does with SLOW_TRIALS trials on all five (see the README).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from agents import Agent, remote_refs, tag_message

AGENTS = 20
RACE_TRIALS = 2
SLOW_TRIALS = 20


def race(world, agents, ticket: str, prefix: str = "refs/claims/") -> None:
    processes = [agent.popen("claim", ticket, "--json") for agent in agents]
    results = []
    for agent, process in zip(agents, processes, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        results.append((agent, process.returncode, stdout, stderr))
    winners = [r for r in results if r[1] == 0]
    assert len(winners) == 1, [(a.name, code, out, err) for a, code, out, err in results]
    winner = winners[0][0]
    landed = remote_refs(world.repo)[prefix + ticket]
    body = tag_message(world.repo, landed)
    assert f"Claim-Agent: {winner.name}\n" in body
    assert json.loads(winners[0][2])["tag"] == landed  # the winner's own tag landed
    assert winner.claim("verify", ticket).code == 0  # and the winner knows it holds it
    for agent, code, stdout, stderr in results:
        if agent is winner:
            continue
        assert code == 1, (agent.name, code, stdout, stderr)
        message = json.loads(stdout)["error"]["message"]
        assert f"is held by {winner.name} since" in message, message


def _racers(world) -> list[Agent]:
    """Half the racers use libgit2 and half the git CLI: both transports in every race.

    One clone is made through the server and copied for the others: a copy of
    a fresh clone is what another clone would be, without a fetch each.
    """
    first = world.agent("racer00", transport="libgit2")
    agents = [first]
    for i in range(1, AGENTS):
        name = f"racer{i:02d}"
        workdir = world.root / name
        shutil.copytree(first.workdir, workdir, symlinks=True)
        env = dict(world.env, GIT_CLAIM_AGENT=name)
        subprocess.run(["git", "-C", str(workdir), "config", "claim.transport",
                        ("libgit2", "git")[i % 2]], env=env, check=True)
        agents.append(Agent(name, workdir, env, world.repo))
    return agents


def _run_trials(world, trials: int) -> None:
    agents = _racers(world)
    for trial in range(trials):
        race(world, agents, f"T{trial}")


@pytest.mark.parametrize("scheme_name", ["path", "git", "http", "ssh"])
def test_twenty_processes_one_winner(make_world, scheme_name):
    _run_trials(make_world(scheme_name), RACE_TRIALS)


@pytest.mark.slow
@pytest.mark.parametrize("scheme_name", ["path", "file", "git", "http", "ssh"])
def test_twenty_processes_one_winner_many_trials(make_world, scheme_name):
    _run_trials(make_world(scheme_name), SLOW_TRIALS)


def test_seed_pattern_by_hand_against_git_claim(make_world, transport):
    """A human pushing the seed pattern and agents running `git claim` share one lock."""
    world = make_world("git", transport)
    human = world.agent("human")
    agents = [world.agent(f"racer{i}") for i in range(4)]
    for agent in agents:
        agent.git("config", "claim.refPrefix", "refs/tags/claim/")
    for trial in range(3):
        ticket = f"S{trial}"
        human.git("tag", "-a", f"claim/{ticket}", "-m", f"agent=human nonce=n{trial}")
        hand = human.popen("push", "--porcelain", "origin", f"refs/tags/claim/{ticket}")
        processes = [agent.popen("claim", ticket) for agent in agents]
        hand_out, hand_err = hand.communicate(timeout=60)
        codes = [p.wait(timeout=60) for p in processes]
        outputs = [p.communicate() for p in processes]
        human_won = hand.returncode == 0
        assert codes.count(0) + int(human_won) == 1, (hand_out, hand_err, codes, outputs)
        if human_won:
            for _, err in outputs:
                assert f"{ticket} is held by human since" in err, err
    # and a hand-made claim made beforehand is reported with its agent
    human.git("tag", "-a", "claim/S9", "-m", "agent=asif-laptop nonce=abc123")
    human.git("push", "-q", "origin", "refs/tags/claim/S9")
    refused = agents[0].claim("S9")
    assert refused.code == 1
    assert "S9 is held by asif-laptop since" in refused.stderr
    rows = {r["ticket"]: r for r in agents[0].claim("list", "--json").json()}
    assert rows["S9"]["agent"] == "asif-laptop" and rows["S9"]["seed_pattern"] is True
