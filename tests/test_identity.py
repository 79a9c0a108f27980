"""Who we are: --agent over GIT_CLAIM_AGENT over claim.agent over the default."""

from __future__ import annotations

from agents import with_env


def test_agent_precedence(make_world):
    world = make_world("path")
    agent = world.agent("env-name")
    agent.git("config", "claim.agent", "config-name")
    env_without = {k: v for k, v in agent.env.items() if k != "GIT_CLAIM_AGENT"}
    assert agent.cmd("claim", "1", env=env_without).code == 0
    assert agent.cmd("claim", "2").code == 0
    assert agent.cmd("claim", "3", "--agent", "flag-name").code == 0
    rows = {r["ticket"]: r["agent"] for r in agent.claim("list", "--json").json()}
    assert rows == {"1": "config-name", "2": "env-name", "3": "flag-name"}


def test_bad_agent_names_are_usage_errors(make_world):
    agent = make_world("path").agent("alice")
    for bad in ("a<b>", "", "x" * 101, "tab\there"):
        outcome = agent.cmd("claim", "1", "--agent", bad)
        assert outcome.code == 2, (bad, outcome)
    assert agent.cmd("claim", "1", env=with_env(agent, GIT_CLAIM_AGENT="evil\x1b[31m")).code == 2


def test_auto_uses_the_git_cli_when_ssh_needs_the_users_ssh_command(make_world):
    """With GIT_SSH_COMMAND set, `auto` lets git run ssh as the user configured it."""
    import pytest

    from servers import SshServer

    if not SshServer.available():
        pytest.skip("sshd is not installed")
    world = make_world("ssh", "auto")
    agent = world.agent("alice")
    for key in (world.home / ".ssh").glob("id_*"):
        key.unlink()  # libgit2 alone would have no key to offer
    won = agent.claim("640")
    assert won.code == 0, won
    forced = agent.cmd("claim", "641", env={**agent.env, "GIT_CLAIM_AGENT": "alice"})
    assert forced.code == 0
    agent.git("config", "claim.transport", "libgit2")
    failed = agent.claim("642")
    assert failed.code == 3 and failed.stderr.count("\n") == 1, failed
