"""`python -m tests.soak`: run the soak, check its history, print (and keep) the figures.

By default two configurations run one after the other, each checked on its
own: claims under refs/claims/ for two thirds of --seconds, then under
refs/tags/claim/ (tags mode, with a stale clone pushing its old tags back)
for the last third. `--mode claims` or `--tags-mode` runs one of them for all
of --seconds.

Exit 0 when the checker passes, 1 when it finds a violation, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from .driver import Config, plan, run_plan
from .figures import render, update

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=16,
                        help="`git claim run` loops, over clones of one to three loops"
                             " (default 16)")
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="how long the agents run, all configurations together"
                             " (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="the random choices (default 1)")
    parser.add_argument("--tickets", type=int, default=0,
                        help="backlog size (default: one and a half per agent)")
    parser.add_argument("--ttl", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="heartbeat interval, seconds (default 2)")
    parser.add_argument("--max-skew", type=float, default=2.0,
                        help="seconds; skewed agents and the reaper's forward steps stay"
                             " within it (default 2)")
    parser.add_argument("--mode", choices=("both", "claims", "tags"), default="both",
                        help="claims under refs/claims/, under refs/tags/claim/ (tags mode), or"
                             " both one after the other (default)")
    parser.add_argument("--tags-mode", action="store_const", const="tags", dest="mode",
                        help="the same as --mode tags")
    parser.add_argument("--workdir", type=Path,
                        help="where servers, clones and the history go (default: a new"
                             " temporary directory, kept)")
    parser.add_argument("--figures", type=Path, metavar="DOC",
                        help="rewrite the soak section of DOC (docs/reliability.md)")
    parser.add_argument("--hostile", action="store_true",
                        help="also count the hostile-remote cases for the figures"
                             " (a pytest collection)")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.seconds <= 0 or args.ttl <= args.interval:
        parser.error("--agents and --seconds must be positive, --ttl above --interval")
    return args


def hostile_cases() -> int:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "tests/faults/test_hostile_remote.py", "-m", ""], cwd=ROOT,
                          capture_output=True, text=True)
    return sum(1 for line in done.stdout.splitlines() if "::" in line)


def command_line(args: argparse.Namespace) -> str:
    line = (f"python -m tests.soak --agents {args.agents} --seconds {args.seconds:g}"
            f" --seed {args.seed} --ttl {args.ttl:g} --interval {args.interval:g}"
            f" --max-skew {args.max_skew:g}")
    return line + ("" if args.mode == "both" else f" --mode {args.mode}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(agents=args.agents, seconds=args.seconds, seed=args.seed,
                    tickets=args.tickets, ttl=args.ttl, interval=args.interval,
                    max_skew=args.max_skew)
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="git-claim-soak-"))
    summaries = run_plan(plan(config, args.mode), folder,
                         say=lambda line: print(line, file=sys.stderr))
    text = render(summaries, hostile_cases=hostile_cases() if args.hostile else None,
                  command=command_line(args))
    print(text)
    print(f"history and summary: {folder}", file=sys.stderr)
    errors = [e for s in summaries for e in s["harness_errors"]]
    if errors:
        print("harness errors:\n" + "\n".join(errors), file=sys.stderr)
    if args.figures:
        update(args.figures, text)
    return 0 if all(s["ok"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
