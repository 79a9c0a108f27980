"""The plots (matplotlib is an optional bench dependency): the contention
scaling, and the wall time of each command against the link's RTT.

    python -m bench.plot bench/results/latest.json docs/performance.png
    python -m bench.plot --wan bench/results/latest.json docs/performance-wan.png

redraw them from a results file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

PUSHES = "claim pushes per agent (client-reported)"
SEEN = "claim pushes per agent (seen by server)"
TIME = "time until all hold distinct tickets"


def _series(document: dict[str, Any], metric: str) -> tuple[list[int], list[dict], list[dict]]:
    sizes, ours, naive = [], [], []
    for row in document["rows"]:
        if row["scenario"] != "contention" or row["metric"] != metric:
            continue
        sizes.append(int(row["case"].split("=", 1)[1]))
        ours.append(row["stat"])
        naive.append(row["baseline_stat"])
    return sizes, ours, naive


NO_MATPLOTLIB = ("no plot: matplotlib is not installed"
                 " (pip install '.[bench]' or pip install matplotlib)")


def _pyplot() -> Any:
    """matplotlib's pyplot drawing to files, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_contention(document: dict[str, Any], path: Path) -> str:
    """Draw pushes per agent and time to all-claimed against N; returns a status line."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric, label, scale in ((axes[0], PUSHES, "claim pushes per agent", 1.0),
                                       (axes[1], TIME, "time until all hold a ticket (s)", 1.0)):
        sizes, ours, naive = _series(document, metric)
        if not sizes:
            continue
        suffix = " (client-reported)" if metric == PUSHES else ""
        for stats, name, marker, color in ((ours, "git claim --next" + suffix, "o", "C0"),
                                           (naive, "naive loop" + suffix, "s", "C1")):
            medians = [s["median"] * scale for s in stats]
            low = [(s["median"] - s["min"]) * scale for s in stats]
            high = [(s["max"] - s["median"]) * scale for s in stats]
            axis.errorbar(sizes, medians, yerr=[low, high], marker=marker, capsize=3, label=name,
                          color=color)
        if metric == PUSHES:
            sizes_seen, ours_seen, naive_seen = _series(document, SEEN)
            for stats, name, color in ((ours_seen, "git claim --next (seen by server)", "C0"),
                                       (naive_seen, "naive loop (seen by server)", "C1")):
                axis.plot(sizes_seen, [s["median"] for s in stats], linestyle="--",
                          marker=".", alpha=0.6, label=name, color=color)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes)
        axis.set_xticklabels([str(n) for n in sizes])
        axis.set_xlabel("agents starting together (N), backlog of 2N tickets")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    mode = document.get("mode", "")
    figure.suptitle(f"Contention on git:// ({mode} run, {document.get('date', '')[:10]};"
                    " median, bars min–max)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"plot: {path}"


_WAN_CASE = re.compile(r"(\w+)://, RTT (\d+) ms")
WAN_WALL = ", wall"


def wan_series(document: dict[str, Any]) -> dict[str, dict[str, list[tuple[int, dict]]]]:
    """Per scheme, per command (and the seed pair): (RTT in ms, wall stat) in RTT order."""
    out: dict[str, dict[str, list[tuple[int, dict]]]] = {}
    pairs: dict[str, dict[int, dict]] = {}
    for row in document["rows"]:
        match = _WAN_CASE.fullmatch(row["case"])
        if row["scenario"] != "wan" or not match or not row["metric"].endswith(WAN_WALL):
            continue
        scheme, rtt = match.group(1), int(match.group(2))
        command = row["metric"][:-len(WAN_WALL)]
        out.setdefault(scheme, {}).setdefault(command, []).append((rtt, row["stat"]))
        if row.get("baseline_stat"):  # the same seed pair samples in every row of an RTT
            pairs.setdefault(scheme, {})[rtt] = row["baseline_stat"]
    for scheme, by_rtt in pairs.items():
        out[scheme][row_pair_name(document)] = sorted(by_rtt.items())
    for commands in out.values():
        for series in commands.values():
            series.sort(key=lambda point: point[0])
    return out


WAN_SLOPE = ", round trips (slope of wall against RTT)"


def wan_round_trips(document: dict[str, Any], pair: str) -> dict[tuple[str, str], str]:
    """(scheme, command) -> its round trips, counted by the proxy (connections +
    turns) and from the slope of its wall time against the RTT; the pair's too."""
    medians: dict[tuple[str, str, str], float] = {}
    for row in document["rows"]:
        if row["scenario"] != "wan" or ":" not in row["case"] or "RTT" in row["case"]:
            continue
        scheme = row["case"].split(":", 1)[0]
        for suffix, what in ((WAN_SLOPE, "slope"), (", connections", "connections"),
                             (", turns", "turns")):
            if row["metric"].endswith(suffix):
                command = row["metric"][:-len(suffix)]
                medians[(scheme, command, what)] = row["stat"]["median"]
                if row.get("baseline_stat"):
                    medians[(scheme, pair, what)] = row["baseline_stat"]["median"]
    out = {}
    for scheme, command, what in medians:
        if what != "slope":
            continue
        counted = (medians.get((scheme, command, "connections"), 0)
                   + medians.get((scheme, command, "turns"), 0))
        out[(scheme, command)] = (f"{counted:g} counted,"
                                  f" slope {medians[(scheme, command, 'slope')]:.1f}")
    return out


def row_pair_name(document: dict[str, Any]) -> str:
    names = {row["baseline_name"] for row in document["rows"]
             if row["scenario"] == "wan" and row.get("baseline_name")}
    return f"{names.pop()} (tag + push)" if len(names) == 1 else "seed pair (tag + push)"


def plot_wan(document: dict[str, Any], path: Path) -> str:
    """Draw each command's wall time against the RTT, one panel per transport."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    series = wan_series(document)
    if not series:
        return "no WAN plot: the results have no wan rows"
    panels = len(series)
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 6 if panels == 1 else 7),
                                squeeze=False)
    pair = row_pair_name(document)
    trips = wan_round_trips(document, pair)
    for axis, (scheme, commands) in zip(axes[0], sorted(series.items()), strict=True):
        rtts: set[int] = set()
        for number, (command, points) in enumerate(commands.items()):
            xs = [rtt for rtt, _ in points]
            rtts.update(xs)
            medians = [s["median"] * 1000 for _, s in points]
            low = [(s["median"] - s["min"]) * 1000 for _, s in points]
            high = [(s["max"] - s["median"]) * 1000 for _, s in points]
            is_pair = command == pair
            found = trips.get((scheme, command))
            label = command.replace("`", "") + (f" ({found})" if found else "")
            axis.errorbar(xs, medians, yerr=[low, high], capsize=3, label=label,
                          marker="s" if is_pair else "o", markersize=4,
                          linestyle="--" if is_pair else "-",
                          color="black" if is_pair else f"C{number}")
        axis.set_xticks(sorted(rtts))
        axis.set_xlabel("round-trip time of the link (ms)")
        axis.set_ylabel("wall time of the command (ms)")
        axis.set_title(f"{scheme}:// through the delaying proxy")
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        # below the panel: the lines fan out over all of it
        axis.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14),
                    ncol=1 if panels > 1 else 2)
    mode = document.get("mode", "")
    figure.suptitle(f"Commands over a link ({mode} run, {document.get('date', '')[:10]})\n"
                    "median, bars min–max; in brackets the round trips", fontsize="medium")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"WAN plot: {path}"


def main(argv: list[str]) -> int:
    wan = argv[:1] == ["--wan"]
    if wan:
        argv = argv[1:]
    if len(argv) != 2:
        print("usage: python -m bench.plot [--wan] RESULTS.json OUT.png", file=sys.stderr)
        return 2
    document = json.loads(Path(argv[0]).read_text())
    draw = plot_wan if wan else plot_contention
    print(draw(document, Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
