"""Measuring: processes with their resource usage, repeated runs, statistics, the table.

Every number in the results is a list of samples taken after a warm-up; the
table shows their median with the minimum and maximum. A row may carry the
samples of its baseline (the seed's shell pair, the naive loop, or a
reference floor) measured in the same run, with the same warm-up and the
same number of runs, interleaved with ours so that background load hits
both alike; the ratio is median over baseline median.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Sample = Mapping[str, float]


class BenchError(RuntimeError):
    """A scenario could not be measured (a command failed, a check did not hold)."""


# --------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    """One finished child process: exit code, output, wall time and its own usage."""

    argv: list[str]
    code: int
    stdout: str
    stderr: str
    wall: float  # seconds, from spawn to exit
    cpu: float  # user + system seconds of the child and the children it waited for
    maxrss_mb: float | None  # peak RSS of the command (largest of its processes), if asked

    def json(self) -> Any:
        return json.loads(self.stdout)

    def check(self, *codes: int) -> Proc:
        if self.code not in (codes or (0,)):
            raise BenchError(f"{' '.join(self.argv)} exited {self.code}\n"
                             f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}")
        return self


def _cpu(ru: Any) -> float:
    return ru.ru_utime + ru.ru_stime


# Peak RSS needs a small parent. A child's ru_maxrss counts the memory it had
# before exec, which is its parent's (fork copies it, vfork shares it), so
# wait4 on a child of this bench would report at least the bench's own RSS.
# GNU time is a few MB; it forks the command and reports that child's peak.
GNU_TIME = "/usr/bin/time"
# Without GNU time: a minimal Python parent (its own few MB are then a floor).
RSS_LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss}\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _has_gnu_time() -> bool:
    try:
        done = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True)
    except OSError:
        return False
    return "GNU" in done.stdout + done.stderr


_GNU_TIME: bool | None = None


def rss_launcher(report: str) -> list[str]:
    """The argv prefix that runs a command and writes its peak RSS (KiB) to `report`."""
    global _GNU_TIME
    if _GNU_TIME is None:
        _GNU_TIME = _has_gnu_time()
    if _GNU_TIME:
        return [GNU_TIME, "-f", "%M", "-o", report]
    import sys

    return [sys.executable, "-I", "-S", "-c", RSS_LAUNCHER, report]


class Running:
    """A child started now; :meth:`finish` reaps it with ``wait4``.

    ``wait4`` returns the usage of this one child (and of the processes it
    waited for), not of every child the bench ever had, so CPU is per
    command even though the bench runs many. With ``peak_rss`` the command
    runs under a small launcher that reports its peak RSS (see above); the
    command is then the launcher's child (:meth:`command_pid`).
    """

    def __init__(self, argv: Sequence[str], *, cwd: Path | str | None, env: Mapping[str, str],
                 stdin_fd: int | None = None, peak_rss: bool = False) -> None:
        self.argv = list(argv)
        # the child writes into these until finish() reads and closes them
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._rss_report: str | None = None
        command = self.argv
        if peak_rss:
            fd, self._rss_report = tempfile.mkstemp(prefix="git-claim-bench-rss-")
            os.close(fd)
            command = [*rss_launcher(self._rss_report), *self.argv]
        stdin = stdin_fd if stdin_fd is not None else subprocess.DEVNULL
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(command, cwd=cwd, env=dict(env), stdin=stdin,
                                      stdout=self._out, stderr=self._err)
        self.pid = self.popen.pid
        self.launched = peak_rss
        self.ended: float | None = None
        self.result: Proc | None = None

    def command_pid(self) -> int | None:
        """The command's own process id (the launcher's child when measuring RSS)."""
        if not self.launched:
            return self.pid
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as handle:
                children = handle.read().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def _read_rss(self) -> float | None:
        if self._rss_report is None:
            return None
        try:
            with open(self._rss_report) as handle:
                lines = handle.read().split()
            return int(lines[-1]) / 1024.0 if lines else None
        except (OSError, ValueError):
            return None
        finally:
            os.unlink(self._rss_report)

    def finish(self, timeout: float = 300.0) -> Proc:
        if self.result is not None:
            return self.result
        timer = threading.Timer(timeout, self._kill)
        timer.daemon = True
        timer.start()
        try:
            _, status, ru = os.wait4(self.pid, 0)
        finally:
            timer.cancel()
        self.ended = time.perf_counter()
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self._out.seek(0)
        self._err.seek(0)
        self.result = Proc(self.argv, self.popen.returncode,
                           self._out.read().decode("utf-8", "replace"),
                           self._err.read().decode("utf-8", "replace"),
                           self.ended - self.started, _cpu(ru), self._read_rss())
        self._out.close()
        self._err.close()
        return self.result

    def _kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


def run(argv: Sequence[str], *, cwd: Path | str | None = None, env: Mapping[str, str],
        timeout: float = 300.0, check: bool = True, peak_rss: bool = False) -> Proc:
    """Run one command to completion and measure it."""
    proc = Running(argv, cwd=cwd, env=env, peak_rss=peak_rss).finish(timeout)
    return proc.check() if check else proc


def quiet(argv: Sequence[str], *, cwd: Path | str | None = None, env: Mapping[str, str],
          input: str | None = None) -> str:
    """Setup commands: run, raise on failure, return stdout (not measured)."""
    done = subprocess.run(list(argv), cwd=cwd, env=dict(env), input=input, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} failed ({done.returncode}):"
                         f" {done.stderr.strip()[-2000:]}")
    return done.stdout


class Gate:
    """Start many processes together: each waits on a shared pipe until it is closed."""

    PREFIX = ["sh", "-c", 'read _; exec "$@" </dev/null', "gate"]

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.running: list[Running] = []
        self.opened_at: float | None = None

    def spawn(self, argv: Sequence[str], *, cwd: Path | str, env: Mapping[str, str]) -> Running:
        # the pipe is the shell's stdin: `read` returns at end-of-file
        child = Running([*self.PREFIX, *argv], cwd=cwd, env=env, stdin_fd=self.read_fd)
        self.running.append(child)
        return child

    def open(self) -> float:
        os.close(self.read_fd)
        self.opened_at = time.perf_counter()
        os.close(self.write_fd)  # every waiting `read` sees end-of-file now
        return self.opened_at

    def finish_all(self, timeout: float = 600.0) -> list[Proc]:
        results: list[Proc | None] = [None] * len(self.running)

        def reap(index: int, child: Running) -> None:
            results[index] = child.finish(timeout)

        threads = [threading.Thread(target=reap, args=(i, c), daemon=True)
                   for i, c in enumerate(self.running)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [r for r in results if r is not None]


# --------------------------------------------------------------------------
# repetition


def repeat(measure: Callable[[int], Sample], *, runs: int, warmup: int = 1,
           baseline: Callable[[int], Sample] | None = None) -> tuple[dict[str, list[float]],
                                                                    dict[str, list[float]]]:
    """Call `measure` (and `baseline`) `warmup` times unrecorded, then `runs` times.

    Ours and the baseline alternate, in an order that flips every run, so that
    a burst of background load does not fall on one side only. Returns the
    samples of each metric for ours and for the baseline.
    """
    ours: dict[str, list[float]] = {}
    base: dict[str, list[float]] = {}
    for index in range(-warmup, runs):
        order = [(measure, ours), (baseline, base)]
        if index % 2:
            order.reverse()
        for function, into in order:
            if function is None:
                continue
            sample = function(index)
            if index < 0:
                continue
            for key, value in sample.items():
                into.setdefault(key, []).append(float(value))
    return ours, base


@dataclass
class Stat:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass
class Row:
    """One line of the table: a metric of git-claim, optionally against a baseline."""

    scenario: str
    case: str
    metric: str
    unit: str  # "s", "ms-cpu", "count", "MB", "ratio", "x"
    values: list[float]
    baseline: list[float] | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""
    stat: Stat | None = field(default=None, init=False)
    baseline_stat: Stat | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.stat = Stat.of(self.values)
        self.baseline_stat = Stat.of(self.baseline or [])

    @property
    def ratio(self) -> float | None:
        if self.stat is None or self.baseline_stat is None or not self.baseline_stat.median:
            return None
        return self.stat.median / self.baseline_stat.median

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def judge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


# --------------------------------------------------------------------------
# output


def fmt(value: float | None, unit: str, scale_by: float | None = None) -> str:
    """A value for the table; times use ms below 10 s (judged on `scale_by`), else s."""
    if value is None:
        return "-"
    big = (scale_by if scale_by is not None else value) >= 10
    if unit in ("s", "ms-cpu"):
        return f"{value:.1f} s" if big else f"{value * 1000:.0f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "count":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_stat(stat: Stat | None, unit: str) -> str:
    """`median (min–max)`, all three in one unit."""
    if stat is None:
        return "-"
    median = fmt(stat.median, unit, stat.max)
    if stat.n == 1 or stat.min == stat.max:
        return median
    low, high = fmt(stat.min, unit, stat.max), fmt(stat.max, unit, stat.max)
    if unit in ("s", "ms-cpu", "MB"):  # the unit once, after the range
        low = low.rsplit(" ", 1)[0]
    return f"{median} ({low}–{high})"


COLUMNS = ("Scenario", "Case", "Metric", "git-claim median (min–max)", "Baseline",
           "Baseline median (min–max)", "Ratio", "Target", "Met")


def table_cells(row: Row) -> list[str]:
    ratio = row.ratio
    met = {True: "yes", False: "NO", None: ""}[row.met]
    return [row.scenario, row.case, row.metric, fmt_stat(row.stat, row.unit),
            row.baseline_name if row.baseline is not None else "",
            fmt_stat(row.baseline_stat, row.unit) if row.baseline is not None else "",
            f"{ratio:.2f}" if ratio is not None else "", row.target, met]


def render_text(rows: Sequence[Row]) -> str:
    cells = [list(COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    out = []
    for number, line in enumerate(cells):
        padded = (text.ljust(width) for text, width in zip(line, widths, strict=True))
        out.append("  ".join(padded).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out) + "\n"


def render_markdown(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(row)) + " |")
    return "\n".join(out) + "\n"


def render_targets(rows: Sequence[Row]) -> str:
    """The rows that carry a target, as a Markdown table: what was asked, what was measured."""
    out = ["| Scenario | Case | Metric | Measured (median, min–max) | Target | Met |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        if not row.target:
            continue
        measured = fmt_stat(row.stat, row.unit)
        if row.baseline is not None and row.ratio is not None:
            measured += f"; {row.ratio:.2f}× {row.baseline_name}"
        met = {True: "met", False: "**missed**", None: ""}[row.met]
        cells = [row.scenario, row.case, row.metric, measured, row.target, met]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)
