"""The contention scaling plot (matplotlib is an optional bench dependency).

    python -m bench.plot bench/results/latest.json docs/performance.png

redraws the plot from a results file.
"""

from __future__ import annotations

import json
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


def plot_contention(document: dict[str, Any], path: Path) -> str:
    """Draw pushes per agent and time to all-claimed against N; returns a status line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("no plot: matplotlib is not installed"
                " (pip install '.[bench]' or pip install matplotlib)")
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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    document = json.loads(Path(argv[0]).read_text())
    print(plot_contention(document, Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
