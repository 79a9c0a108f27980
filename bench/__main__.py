"""`python -m bench`: run the benchmark suite and print the table of medians.

Starts its own git servers on 127.0.0.1 (a path remote, `git daemon`, smart
HTTP), runs each scenario after a warm-up, prints medians with min and max
and the ratio against the baseline measured in the same run, and writes the
results as JSON (and, with matplotlib installed, plots of the contention
scaling and of the wall time against the link's round-trip time).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .harness import Row, render_markdown, render_targets, render_text, write_json
from .scenarios import SCENARIOS, Bench
from .wan import summary_markdown

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer runs (under 2 minutes on 2 cores)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help=f"run only this scenario (repeatable, or comma-separated):"
                             f" {', '.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help="where to write the results (default: bench/results/latest.json)")
    parser.add_argument("--runs", type=int, metavar="K",
                        help="measured runs per scenario, after the warm-up (default: 5, quick: 3)")
    parser.add_argument("--warmup", type=int, default=1, metavar="W",
                        help="unrecorded warm-up runs per scenario (default: 1)")
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="where to draw the contention scaling plot"
                             " (default: next to the JSON file; needs matplotlib)")
    parser.add_argument("--plot-wan", type=Path, metavar="PNG",
                        help="where to draw the wall time against the RTT (scenario wan;"
                             " default: next to the JSON file; needs matplotlib)")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the table as Markdown (and the WAN summary)")
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.only = names or list(SCENARIOS)
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def machine(load: tuple[float, float, float] | None) -> dict[str, object]:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    try:
        from importlib.metadata import version

        tool = version("git-claim")
    except Exception:
        tool = "?"
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "git": git,
            "platform": platform.platform(), "git_claim": tool, "load_at_start": load}


def print_profiles(profiles: dict[str, dict]) -> None:
    for label, profile in profiles.items():
        print(f"\nimport profile of `{label}` (python -X importtime), cumulative:")
        for item in profile["top"][:6]:
            print(f"  {item['cumulative_s'] * 1000:7.1f} ms  {item['module']}")
        print(f"  all imports: {profile['total_s'] * 1000:.0f} ms")
        packages = ", ".join(f"{name} {seconds * 1000:.0f} ms"
                             for name, seconds in profile["packages_s"].items())
        print(f"  packages (cumulative, first import): {packages}")
        groups = ", ".join(f"{name} {seconds * 1000:.0f} ms"
                           for name, seconds in list(profile["by_package_self_s"].items())[:6])
        print(f"  by package (self time, all modules): {groups}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    bench = Bench(quick=args.quick, runs=args.runs, warmup=args.warmup)
    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    timings: dict[str, float] = {}
    mode = "quick" if args.quick else "full"
    print(f"git-claim benchmarks ({mode}: {args.runs} runs after {args.warmup} warm-up;"
          f" scenarios: {', '.join(args.only)})", flush=True)
    if load is not None:
        print(f"load average at start: {load[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    try:
        for name in args.only:
            begin = time.perf_counter()
            print(f"  {name} ...", end="", flush=True)
            try:
                rows += SCENARIOS[name](bench)
            except Exception as error:  # one failed scenario does not stop the others
                errors.append({"scenario": name, "error": str(error),
                               "traceback": traceback.format_exc()})
                print(f" FAILED: {str(error).splitlines()[0] if str(error) else error!r}",
                      end="")
            timings[name] = time.perf_counter() - begin
            print(f" {timings[name]:.1f} s", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; reporting what was measured", file=sys.stderr)
    finally:
        bench.close()
    elapsed = time.perf_counter() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None

    print()
    print(render_text(rows), end="")
    if args.markdown:
        print()
        print(render_markdown(rows), end="")
        summary = summary_markdown([row.as_dict() for row in rows])
        if summary:
            print()
            print(summary, end="")
    # every target of this run, met or missed, in one table (docs/performance.md)
    print()
    print("Targets:")
    print(render_targets(rows), end="")
    print_profiles(bench.profiles)
    for error in errors:
        print(f"\nscenario {error['scenario']} failed: {error['error']}", file=sys.stderr)
    print(f"\ntotal {elapsed:.0f} s; CPU used by the bench and everything it ran"
          f" (servers included): {cpu:.0f} s")

    document = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode, "runs": args.runs, "warmup": args.warmup, "scenarios": args.only,
        "machine": {**machine(load), "load_at_end": load_end},
        "elapsed_s": elapsed, "cpu_s": cpu, "scenario_s": timings,
        "rows": [row.as_dict() for row in rows], "profiles": bench.profiles,
        "errors": errors,
    }
    write_json(args.json, document)
    print(f"results: {args.json}")
    if any(row.scenario == "contention" for row in rows):
        from .plot import plot_contention

        target = args.plot or args.json.with_name(args.json.stem + "-contention.png")
        message = plot_contention(document, target)
        print(message)
    if any(row.scenario == "wan" for row in rows):
        from .plot import plot_wan

        target = args.plot_wan or args.json.with_name(args.json.stem + "-wan.png")
        print(plot_wan(document, target))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
