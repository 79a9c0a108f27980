"""Credentials stay out of everything the tool writes or prints.

A remote URL that carries a password (`http://user:secret@host/...`) is a
bad habit that happens. Whatever the transport, the secret must not appear
in the tool's output (success or failure), in the claim tags and notes it
pushes, or in the files it keeps in the git dir.
"""

from __future__ import annotations

import subprocess

from agents import Agent, base_env
from faultkit import assert_clean_output
from servers import start_server

SECRET = "s3cr3t-T0ken-9f8e7d"


def where_the_secret_is(git_dir) -> list[str]:
    """Which of a repository's objects (uncompressed) and git-claim files contain SECRET."""
    found = []
    objects = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects",
                              "--batch", "--unordered"], capture_output=True, check=True).stdout
    if SECRET.encode() in objects:
        found.append("an object")
    for path in sorted((git_dir / "git-claim").rglob("*")):
        if path.is_file() and SECRET.encode() in path.read_bytes():
            found.append(str(path.relative_to(git_dir)))
    return found


def test_a_password_in_the_remote_url_reaches_no_output_and_no_record(tmp_path, hermetic):
    server = start_server("http", tmp_path / "srv", username="agent", password=SECRET)
    try:
        repo = server.create_repo("project")
        url = repo.url.replace("http://", f"http://agent:{SECRET}@")
        env = base_env(hermetic)
        seed = tmp_path / "seed"
        for args in (["init", "-q", "-b", "main", str(seed)],
                     ["-C", str(seed), "commit", "-q", "--allow-empty", "-m", "seed"],
                     ["-C", str(seed), "push", "-q", url, "main"]):
            subprocess.run(["git", *args], env=env, check=True, capture_output=True)
        outputs = []
        for transport, ticket in (("libgit2", "640"), ("git", "641")):
            workdir = tmp_path / transport
            subprocess.run(["git", "clone", "-q", url, str(workdir)], env=env, check=True,
                           capture_output=True)
            agent = Agent(transport, workdir, {**env, "GIT_CLAIM_AGENT": transport}, repo)
            agent.git("config", "claim.transport", transport)
            for command in (["claim", ticket], ["claim", "heartbeat", ticket]):
                outcome = agent.cmd(*command)
                assert_clean_output(outcome, allowed=(0,))
                outputs.append(outcome)
        server.stop()  # now every command fails, and says where it tried to go
        for transport, ticket in (("libgit2", "640"), ("git", "641")):
            agent = Agent(transport, tmp_path / transport,
                          {**env, "GIT_CLAIM_AGENT": transport}, repo)
            failed = agent.cmd("release", ticket)
            assert_clean_output(failed, allowed=(3,))
            assert "127.0.0.1" in failed.stderr, failed  # it does say where
            outputs.append(failed)
        for outcome in outputs:
            assert SECRET not in outcome.stdout + outcome.stderr, outcome
        assert where_the_secret_is(repo.path) == []
        for transport in ("libgit2", "git"):
            assert where_the_secret_is(tmp_path / transport / ".git") == [], transport
    finally:
        server.stop()
