"""Which tickets are ours and still held, for completion: checked on the remote, briefly.

`git release <TAB>` must offer the claims we hold now, not every record left
in our git dir: a claim of ours that was reaped, released by someone with
--force, or ended from another checkout keeps its local record until we
next touch it. Only the remote knows, so a completion asks it, within
limits that keep a TAB from hanging:

- The remote is read by a child process (the protocol, pygit2 and the
  network are never loaded into the completion itself), in a session of its
  own with no terminal and no prompts, so a credential prompt cannot block.
- The completion waits READ_TIMEOUT seconds for it. When the child is late
  the completion answers from what it knows (below) and the child finishes
  alone, so that the next TAB finds its answer in the cache. A child gives
  up after CHILD_LIMIT seconds, killing what it started.
- The answer is cached for CACHE_SECONDS in our git dir
  (git-claim/completion-live.json): TABs come in bursts (TAB, TAB, the next
  word), and a few seconds is short next to a claim's lease (minutes), so a
  cached answer is at most that old, while repeated TABs stay instant. A
  change in our records (a claim won or released here) makes it stale at
  once. A failed read is cached too, so an unreachable remote costs one
  READ_TIMEOUT per CACHE_SECONDS, not one per TAB.
- A claim the remote showed ended (reaped, released, superseded, gone) is
  remembered as ended: claims are an append-only log, so an ended claim never
  comes back. When the remote cannot be read, the answer is our records
  less those: the best we know, offline.

"Ours and live" is the rule of `git claim list` (board.py): the claim in
force on the remote is held, and its tag is one this agent's records name
(or the copy a claim worktree carries), as `git release` would accept it.
Several agents may share a checkout, each with its own name (--agent on the
line, GIT_CLAIM_AGENT, claim.agent, or the default): each gets its own
answer, online and offline, and the cache says whose answer it holds.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False  # not imported from typing: a TAB imports as little as it can
if TYPE_CHECKING:
    from .session import Session

CACHE_FILE = ("git-claim", "completion-live.json")
AGENT_VARIABLE = "GIT_CLAIM_AGENT"  # settings.AGENT_VARIABLE, not imported: a TAB stays light
CACHE_SECONDS = 5.0
READ_TIMEOUT = 1.5
CHILD_LIMIT = 20
OWNED_DIR = ("git-claim", "owned")

_CHILD = ("import sys; del sys.path[0]; from git_claim.live_claims import main;"
          " raise SystemExit(main(sys.argv[1:]))")


def _records(git_dir: str) -> list[dict[str, object]]:
    """Our settled claim records (git_claim.ownership's files): pending ones are attempts."""
    root = os.path.join(git_dir, *OWNED_DIR)
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    paths = []
    for name in names:
        if name.startswith("."):
            continue
        if name.endswith(".json"):  # owned/<ticket>.json of earlier versions
            paths.append(os.path.join(root, name))
            continue
        try:
            inner = sorted(os.listdir(os.path.join(root, name)))
        except OSError:
            continue
        paths += [os.path.join(root, name, n) for n in inner
                  if n.endswith(".json") and not n.startswith(".")]
    from .quickgit import ticket_id

    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("pending", True):
            continue
        ticket = ticket_id(record.get("ticket"))
        tag = record.get("tag")
        if ticket and isinstance(tag, str):
            records.append({"ticket": ticket, "tag": tag, "remote_url": record.get("remote_url"),
                            "agent": record.get("agent"),
                            "worktree_copy": record.get("worktree_copy") is True})
    return records


def _who(given: str | None) -> str | None:
    """The agent name the command would take before its default, or None for the default.

    `--agent` on the line, else GIT_CLAIM_AGENT, else `claim.agent`, as the
    settings read them; the default name (user@host:dir-hash) is the child's
    to work out, with the full settings, and it says it in the cache.
    """
    if given:
        return given
    if AGENT_VARIABLE in os.environ:
        return os.environ[AGENT_VARIABLE]  # "" too: the command would refuse that name
    from .quickgit import git

    configured = (git("config", "--get", "claim.agent") or "").strip()
    return configured or None


def _of_agent(records: list[dict[str, object]], agent: str | None) -> list[dict[str, object]]:
    """The records `agent` may release: its own and worktree copies (all when None)."""
    if agent is None:
        return records
    return [r for r in records if r["agent"] == agent or r["worktree_copy"]]


def recorded_tickets(git_dir: str) -> list[str]:
    """The tickets of our settled records, live or not (no remote read)."""
    return list(dict.fromkeys(str(record["ticket"]) for record in _records(git_dir)))


def _read_cache(git_dir: str) -> dict[str, object]:
    try:
        with open(os.path.join(git_dir, *CACHE_FILE), encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _fresh(cache: dict[str, object], remote: str, who: str | None, tags: list[str]) -> bool:
    at = cache.get("at")
    if not isinstance(at, (int, float)) or not 0 <= time.time() - at < CACHE_SECONDS:
        return False
    return cache.get("remote") == remote and cache.get("who") == who and cache.get("tags") == tags


def _agent_for(who: str | None, cache: dict[str, object]) -> str | None:
    """Whose records count: the named agent, or the default one the child found (None:
    not known yet, every record counts)."""
    if who is not None:
        return who
    agent = cache.get("agent") if "who" in cache and cache.get("who") is None else None
    return agent if isinstance(agent, str) else None


def our_live_tickets(remote: str | None = None, agent: str | None = None) -> list[str]:
    """Tickets whose claim in force on the remote is ours and held (see the module docstring).

    `agent` is the --agent of the command line being completed, if any.
    """
    from .quickgit import git_dirs

    dirs = git_dirs()
    if dirs is None:
        return []
    who = _who(agent)
    if who == "":
        return []  # no agent has that name: the command would refuse it
    git_dir = dirs[0]
    cache = _read_cache(git_dir)
    ended = set(_strings(cache.get("ended")))
    every = _of_agent(_records(git_dir), _agent_for(who, cache))
    if not [r for r in every if r["tag"] not in ended]:
        return []
    tags = sorted({str(r["tag"]) for r in every})  # what the cached answer is about
    wanted = remote or ""
    if not _fresh(cache, wanted, who, tags) and _ask_remote(wanted, who, READ_TIMEOUT):
        cache = _read_cache(git_dir)
        every = _of_agent(_records(git_dir), _agent_for(who, cache))
        tags = sorted({str(r["tag"]) for r in every})
    if _fresh(cache, wanted, who, tags) and not cache.get("failed"):
        return _strings(cache.get("live"))
    ended = set(_strings(cache.get("ended")))  # offline: our records, less the ended claims
    return list(dict.fromkeys(str(r["ticket"]) for r in every if r["tag"] not in ended))


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _ask_remote(remote: str, who: str | None, timeout: float) -> bool:
    """Start the child that reads the remote; True when it finished within `timeout`."""
    import select

    read_end, write_end = os.pipe()
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", SSH_ASKPASS_REQUIRE="never",
               GCM_INTERACTIVE="never")
    try:
        named = "" if who is None else "=" + who  # "=NAME" for a name, "" for the default
        os.posix_spawn(sys.executable, [sys.executable, "-c", _CHILD, remote, named], env,
                       file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_DUP2, write_end, 1),
                                     (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)],
                       setsid=True)
    except (OSError, NotImplementedError, AttributeError):  # no posix_spawn, or no setsid
        os.close(read_end)
        return False
    finally:
        os.close(write_end)
    try:
        # the child writes one line when the cache is written (and holds the pipe until
        # then; something it started may hold it longer, so EOF is not awaited)
        ready, _, _ = select.select([read_end], [], [], timeout)
        return bool(ready) and os.read(read_end, 64).startswith(b"done")
    finally:
        os.close(read_end)


def main(args: list[str]) -> int:
    """The child: read our claims on the remote, cache the answer.

    `args`: a remote name or '', and '=NAME' for the agent named, or '' for the default.
    """
    import signal

    def give_up(signum: int, frame: object) -> None:
        os.killpg(0, signal.SIGKILL)  # the child leads its own group: git and ssh go too

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(CHILD_LIMIT)
    remote = args[0] if args else ""
    who = args[1][1:] if len(args) > 1 and args[1].startswith("=") else None
    from .quickgit import git_dirs

    dirs = git_dirs()
    if dirs is None:
        return 1
    git_dir = dirs[0]
    cache = _read_cache(git_dir)
    session: Session | None = None
    agent = who
    try:
        from .session import open_session

        session = open_session(remote=remote or None, agent=who)
        agent = session.settings.agent  # what release checks: the name, from any source
    except Exception:  # any failure: the completion answers offline
        pass
    records = _of_agent(_records(git_dir), agent)
    known = set(_strings(cache.get("ended")))
    answer: dict[str, object] = {"remote": remote, "who": who, "agent": agent,
                                 "tags": sorted({str(r["tag"]) for r in records})}
    try:
        if session is None:
            raise RuntimeError("no session")
        live, ended = _read_remote(session, [r for r in records if r["tag"] not in known])
        answer.update(live=live)
    except Exception:  # any failure: the completion answers offline
        ended = set()
        answer.update(failed=True)
    answer["ended"] = sorted((known | ended) & {str(r["tag"]) for r in records})
    answer["at"] = time.time()
    from pathlib import Path

    from .atomicfile import write_atomic

    write_atomic(Path(git_dir, *CACHE_FILE), json.dumps(answer))
    try:
        sys.stdout.write("done\n")
        sys.stdout.flush()
    except OSError:
        pass  # the completion stopped waiting
    return 0


def _read_remote(session: Session,
                 records: list[dict[str, object]]) -> tuple[list[str], set[str]]:
    """(tickets live and ours, tags of ours that the remote shows ended)."""
    from .claims import read_claims
    from .record import OUTCOME_STATES

    here = [r for r in records if r["remote_url"] == session.remote_url]
    if not here:
        return [], set()
    views = read_claims(session, list(dict.fromkeys(str(r["ticket"]) for r in here)))
    live: list[str] = []
    ended: set[str] = set()
    for record in here:
        view = views.get(str(record["ticket"]))
        if view is None:
            continue
        tag = str(record["tag"])
        if view.oid == tag and view.held:
            if record["ticket"] not in live:
                live.append(str(record["ticket"]))
        elif view.oid != tag or view.state in OUTCOME_STATES or view.handed_to is not None:
            # another claim is in force, or none (ours was freed, reaped, compacted
            # away), or ours records an outcome or was handed on: none of these is ever
            # held again
            ended.add(tag)
    return live, ended
