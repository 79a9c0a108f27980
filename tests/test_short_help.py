"""`-h` answered without click: the same text click prints, at every width.

The console entry points print pre-rendered help (git_claim/short_help.py)
for the widths an 80-column terminal, a pipe and a wide terminal give, and
hand anything else to click. Either way the text must be click's own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROGRAMS = ("git-claim", "git-release", "git-reap")


def load_tool():
    spec = importlib.util.spec_from_file_location("build_short_help",
                                                  ROOT / "tools" / "build_short_help.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_texts_are_current() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "build_short_help.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("columns", ["80", "100", "140", "60", "0", "junk", None])
def test_installed_short_help_is_clicks(columns: str | None) -> None:
    tool = load_tool()
    for program in PROGRAMS:
        env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
        if columns is not None:
            env["COLUMNS"] = columns
        env["PYTHONPROFILEIMPORTTIME"] = "1"
        done = subprocess.run([str(BIN / program), "-h"], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:]
        effective = columns if columns and columns.isdigit() and int(columns) > 0 else "80"
        assert done.stdout == tool.click_help(program, int(effective)), (program, columns)
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                    if "|" in line}
        cached = int(effective) in (80,) or int(effective) >= 100
        assert ("click" in imported) is not cached, (program, columns)


def test_help_width_follows_clicks_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from git_claim.entry import help_width

    for columns, width in (("80", 78), ("100", 98), ("250", 98), ("40", 50), ("99", 97)):
        monkeypatch.setenv("COLUMNS", columns)
        assert help_width() == width, columns
