"""The WAN scenario: each command over a link with a round-trip time.

Loopback hides what users pay on a real link: every round trip to a hosted
remote costs tens of milliseconds. Here our delaying proxy
(:mod:`bench.wanproxy`) sits between the clones and `git daemon` or the
smart-HTTP server, at RTT 0, 20 and 80 ms (quick: git:// only, 0 and 80).
For each command it reports the wall time, the connections and turns the
proxy counted, and the round trips read off the slope of wall time against
RTT; the seed pair (tag + push) is measured in the same rounds, interleaved,
as the baseline. At RTT 0 the difference ours minus the seed pair is the
cost of starting up (the issue's target: at most 100 ms for a claim, a
heartbeat and a release).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .harness import BenchError, Row, judge, quiet, run
from .wanproxy import WanProxy

if TYPE_CHECKING:
    from .scenarios import Bench, Clone

RTTS_MS = (0, 20, 80)
QUICK_RTTS_MS = (0, 80)
SCHEMES = ("git", "http")
QUICK_SCHEMES = ("git",)
STARTUP_LIMIT = 0.1  # seconds over the seed pair at RTT 0
SETTLE = 0.05  # after a command exits: the server's last answer reaches the proxy
PAIR = "seed pair"
HEARTBEAT_TICKET = "HB"


@dataclass(frozen=True)
class Command:
    key: str
    label: str
    startup_target: bool  # judged against STARTUP_LIMIT
    # The round trips: a claim and a heartbeat are one push connection,
    # a release at most one read and one push, --next one listing and one push.
    max_connections: int | None = None


COMMANDS = (
    Command("claim", "`git claim T`", True, 1),
    Command("claim_git", "`git claim T`, claim.transport git", False),
    Command("heartbeat", "`git claim heartbeat T`", True, 1),
    Command("release_done", "`git release T --done`", True, 2),
    Command("release", "`git release T`", True, 2),
    Command("next", "`git claim --next --from FILE`", False, 2),
)


def rtts(b: Bench) -> tuple[int, ...]:
    return QUICK_RTTS_MS if b.quick else RTTS_MS


def schemes(b: Bench) -> tuple[str, ...]:
    return QUICK_SCHEMES if b.quick else SCHEMES


def case_name(scheme: str, rtt_ms: int | None = None) -> str:
    """The table's case; bench/plot.py reads the RTT back from it."""
    return f"{scheme}://" if rtt_ms is None else f"{scheme}://, RTT {rtt_ms} ms"


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least squares slope of y against x: seconds of wall per second of RTT,
    that is, the round trips the command waits for one after the other."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        raise BenchError("a slope needs at least two different round-trip times")
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


@dataclass
class Link:
    """A served repository reached through the proxy, and two clones of it."""

    scheme: str
    proxy: WanProxy
    libgit2: Clone  # claim.transport auto: libgit2 talks to the remote
    cli: Clone  # claim.transport git: the git CLI does
    backlog_dir: Path  # a fresh backlog file for each --next

    def measure(self, clone: Clone, argv: list[str]) -> tuple[dict[str, float], str]:
        """Run one command through the link; its wall time and what the proxy saw.

        The counts are reset just before it starts and read RTT/2 + 50 ms
        after it exits: its last bytes reach the server RTT/2 after they left,
        and whatever the server does about them is counted with this command,
        not with the next.
        """
        self.proxy.reset()
        proc = run(argv, cwd=clone.path, env=clone.env, check=False)
        time.sleep(self.proxy.rtt / 2 + SETTLE)
        seen = self.proxy.reset()
        if proc.code != 0:
            raise BenchError(f"{' '.join(argv)} over {self.scheme}:// at RTT"
                             f" {self.proxy.rtt * 1000:.0f} ms exited {proc.code}:"
                             f" {proc.stderr.strip()[-1000:]}")
        return ({"wall": proc.wall, "connections": seen.connections, "turns": seen.turns},
                proc.stdout)


def open_link(b: Bench, scheme: str) -> Link:
    server = b.server(scheme)
    port = getattr(server, "port", None)
    if not isinstance(port, int):
        raise BenchError(f"the {scheme} server has no port")
    repo = b.repo(scheme)  # the HTTP server's repositories accept pushes already
    proxy = WanProxy(("127.0.0.1", port), 0)
    proxy.start()
    try:
        direct = f"//127.0.0.1:{port}/"
        if direct not in repo.url:
            raise BenchError(f"unexpected URL {repo.url}")
        url = repo.url.replace(direct, f"//127.0.0.1:{proxy.port}/", 1)
        clones = []
        for suffix, transport in (("", "auto"), ("-cli", "git")):
            clone = b.clone(repo, f"wan-{scheme}{suffix}")
            for key, value in (("remote.origin.url", url), ("claim.transport", transport),
                               ("claim.maxPerAgent", "1000")):  # --next: default 1 per agent
                quiet(["git", "config", key, value], cwd=clone.path, env=clone.env)
            clones.append(clone)
        where = b.root / f"wan-backlogs-{scheme}"
        where.mkdir()
        link = Link(scheme, proxy, clones[0], clones[1], where)
        link.measure(link.libgit2, ["git", "claim", HEARTBEAT_TICKET])  # held, to beat
        return link
    except BaseException:
        proxy.stop()
        raise


def round_of_commands(link: Link, ids: itertools.count) -> Callable[[int], dict[str, float]]:
    """The six commands once, in this order, each on a claim of its own.

    The releases act on claims made just before in the same round (the
    measured `git claim T`, and the claim `--next` took), so no unmeasured
    claim is needed: both are fresh held claims of this clone.
    """

    def measure(_: int) -> dict[str, float]:
        n = next(ids)
        out: dict[str, float] = {}

        def record(key: str, clone: Clone, argv: list[str]) -> str:
            got, stdout = link.measure(clone, argv)
            for metric, value in got.items():
                out[f"{key}_{metric}"] = value
            return stdout

        mine, cli = link.libgit2, link.cli
        ticket = f"W{n}"
        record("claim", mine, ["git", "claim", ticket])
        record("claim_git", cli, ["git", "claim", f"G{n}"])
        record("heartbeat", mine, ["git", "claim", "heartbeat", HEARTBEAT_TICKET])
        backlog = link.backlog_dir / f"backlog-{n}.txt"
        backlog.write_text(f"X{n}a\nX{n}b\nX{n}c\n")
        stdout = record("next", mine, ["git", "claim", "--next", "--from", str(backlog),
                                       "--json"])
        taken = json.loads(stdout).get("ticket")
        if not isinstance(taken, str):
            raise BenchError(f"--next took no ticket: {stdout.strip()}")
        record("release_done", mine, ["git", "release", ticket, "--done"])
        record("release", mine, ["git", "release", taken])
        return out

    return measure


def seed_pair(link: Link, ids: itertools.count) -> Callable[[int], dict[str, float]]:
    from .scenarios import SEED_PAIR

    def measure(_: int) -> dict[str, float]:
        clone = link.libgit2
        got, _stdout = link.measure(clone, ["sh", "-c", SEED_PAIR, "pair", f"P{next(ids)}",
                                            clone.agent, secrets.token_hex(16)])
        return got

    return measure


Samples = dict[str, list[float]]


def measure_link(b: Bench, scheme: str) -> dict[int, tuple[Samples, Samples]]:
    """Per RTT: the samples of the six commands and of the seed pair, run by run.

    Every run goes through all the RTTs (upwards, and downwards in the next
    run), and at each RTT the seed pair and the six commands take turns going
    first: a burst of background load falls on every RTT and on both sides
    alike, and the slope of one run is taken from times seconds apart, not
    minutes. The first run(s) are the warm-up and are not recorded.
    """
    link = open_link(b, scheme)
    ids = itertools.count()
    sides = [round_of_commands(link, ids), seed_pair(link, ids)]
    got: dict[int, tuple[Samples, Samples]] = {rtt: ({}, {}) for rtt in rtts(b)}
    try:
        # quick: one run fewer (the counts do not vary; the slopes get min–max of 2)
        for index in range(-b.warmup, b.runs - 1 if b.quick and b.runs > 2 else b.runs):
            order = rtts(b) if index % 2 == 0 else tuple(reversed(rtts(b)))
            for step, rtt in enumerate(order):
                link.proxy.set_rtt(rtt)
                first = (index + step) % 2
                for side in (first, 1 - first):
                    sample = sides[side](index)
                    if index < 0:
                        continue
                    for key, value in sample.items():
                        got[rtt][side].setdefault(key, []).append(float(value))
    finally:
        link.proxy.stop()
    return got


def slopes(samples: dict[int, Samples], key: str) -> list[float]:
    """The slope of each run (least squares over the RTTs measured in it)."""
    measured = sorted(samples)
    runs = len(samples[measured[0]][key])
    return [slope([(rtt / 1000, samples[rtt][key][run]) for rtt in measured])
            for run in range(runs)]


def scenario_wan(b: Bench) -> list[Row]:
    rows: list[Row] = []
    for scheme in schemes(b):
        got = measure_link(b, scheme)
        measured = sorted(got)
        ours = {rtt: got[rtt][0] for rtt in measured}
        pair = {rtt: got[rtt][1] for rtt in measured}
        pair_slopes = slopes(pair, "wall")
        for command in COMMANDS:
            wall = f"{command.key}_wall"
            for rtt in measured:
                rows.append(Row("wan", case_name(scheme, rtt), f"{command.label}, wall", "s",
                                ours[rtt][wall], pair[rtt]["wall"], PAIR))
            for metric in ("connections", "turns"):  # the same at every RTT, or the range says
                key = f"{command.key}_{metric}"
                row = Row("wan", case_name(scheme), f"{command.label}, {metric}", "count",
                          [v for rtt in measured for v in ours[rtt][key]],
                          [v for rtt in measured for v in pair[rtt][metric]], PAIR)
                if metric == "connections" and command.max_connections is not None:
                    row.target = f"≤ {command.max_connections}"
                    row.met = max(row.values) <= command.max_connections
                rows.append(row)
            rows.append(Row("wan", case_name(scheme),
                            f"{command.label}, round trips (slope of wall against RTT)", "count",
                            slopes(ours, wall), pair_slopes, PAIR))
            # at the lowest RTT (0), run by run: ours and the pair ran next to each other
            low = measured[0]
            extra = [m - p for m, p in zip(ours[low][wall], pair[low]["wall"], strict=True)]
            row = Row("wan", case_name(scheme, low),
                      f"{command.label} minus seed pair (start-up)", "s", extra,
                      target="≤ 100 ms" if command.startup_target else "")
            if command.startup_target:
                row.met = judge(statistics.median(extra), STARTUP_LIMIT)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------
# the summary: one line per command and transport


def _cell(stat: dict | None, ratio: float | None = None) -> str:
    from .harness import Stat, fmt_stat

    if not stat:
        return ""
    text = fmt_stat(Stat(**stat), "s")
    return f"{text}, {ratio:.1f}×" if ratio is not None else text


def _count(stat: dict | None) -> str:
    if not stat:
        return ""
    low, high = stat["min"], stat["max"]
    return f"{low:g}" if low == high else f"{stat['median']:g} ({low:g}–{high:g})"


def _slope_cell(stat: dict | None) -> str:
    if not stat:
        return ""
    if stat["min"] == stat["max"]:
        return f"{stat['median']:.1f}"
    return f"{stat['median']:.1f} ({stat['min']:.1f}–{stat['max']:.1f})"


def summary_markdown(rows: Sequence[dict]) -> str:
    """The WAN rows (as in the results file) as one line per command and transport:
    wall per RTT with the ratio to the seed pair, connections, turns, the round trips
    the proxy counted (a connection's handshake is one) beside those of the slope,
    and the start-up over the seed pair at RTT 0."""
    ours = [row for row in rows if row["scenario"] == "wan"]
    if not ours:
        return ""
    rtt_list = sorted({int(m.group(1)) for row in ours
                       if (m := _RTT.search(row["case"]))})
    header = (["Command", "Link"] + [f"RTT {rtt} ms" for rtt in rtt_list]
              + ["Connections", "Turns", "Round trips: counted", "Round trips: slope",
                 "Start-up over the pair (RTT 0)"])
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(row["case"], row["metric"]): row for row in ours}
    for scheme in dict.fromkeys(row["case"].split(":", 1)[0] for row in ours):
        link = case_name(scheme)
        first = True
        for command in COMMANDS:
            get = by_key.get
            walls = [get((case_name(scheme, rtt), f"{command.label}, wall")) for rtt in rtt_list]
            conns = get((link, f"{command.label}, connections"))
            turns = get((link, f"{command.label}, turns"))
            slope_row = get((link, f"{command.label}, round trips (slope of wall against RTT)"))
            startup = get((case_name(scheme, rtt_list[0]),
                           f"{command.label} minus seed pair (start-up)"))
            if conns is None or turns is None or slope_row is None:
                continue
            if first:  # the seed pair, from the baseline of the first command's rows
                counted = conns["baseline_stat"]["median"] + turns["baseline_stat"]["median"]
                out.append("| " + " | ".join(
                    ["seed pair (tag + push)", link]
                    + [_cell(w["baseline_stat"]) if w else "" for w in walls]
                    + [_count(conns["baseline_stat"]), _count(turns["baseline_stat"]),
                       f"{counted:g}", _slope_cell(slope_row["baseline_stat"]), ""])
                    + " |")
                first = False
            counted = conns["stat"]["median"] + turns["stat"]["median"]
            target = ""
            if startup and startup.get("target"):
                target = " (met)" if startup.get("met") else " (**over 100 ms**)"
            out.append("| " + " | ".join(
                [command.label.replace("|", "\\|"), link]
                + [_cell(w["stat"], w.get("ratio")) if w else "" for w in walls]
                + [_count(conns["stat"]), _count(turns["stat"]), f"{counted:g}",
                   _slope_cell(slope_row["stat"]),
                   (_cell(startup["stat"]) + target) if startup else ""]) + " |")
    return "\n".join(out) + "\n"


_RTT = re.compile(r"RTT (\d+) ms")


def main(argv: list[str]) -> int:
    import sys

    if len(argv) != 1:
        print("usage: python -m bench.wan RESULTS.json  (prints the WAN summary as Markdown)",
              file=sys.stderr)
        return 2
    document = json.loads(Path(argv[0]).read_text())
    print(summary_markdown(document["rows"]), end="")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
