"""The man pages: current with their sources, complete, and found by `git claim --help`.

The pages are generated from man/*.rst by tools/build_man.py (see man/README.md).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from types import ModuleType

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "build_man.py"
SCRIPTS = ("git-claim", "git-release", "git-reap")

requires_docutils = pytest.mark.skipif(
    importlib.util.find_spec("docutils") is None,
    reason="docutils is not installed: it renders the man pages for the freshness check"
           " (pip install -e '.[test]' or pip install docutils)")


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_man", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool() -> ModuleType:
    return load_tool()


# ----------------------------------------------------------------- the check


@requires_docutils
def test_pages_are_current_and_document_every_command_and_option() -> None:
    result = subprocess.run([sys.executable, str(TOOL), "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        "man pages are stale or incomplete (edit man/*.rst, then run"
        f" `python tools/build_man.py`):\n{result.stdout}{result.stderr}")


@requires_docutils
def test_rendering_is_deterministic(tool: ModuleType) -> None:
    version = tool.package_version()
    for source in tool.sources():
        first = tool.render(source, version)
        assert first == tool.render(source, version)
        assert ".SH NAME\n" in first
        assert re.search(r'^\.TH "[^"]+" "[^"]+" "\d{4}-\d{2}-\d{2}"', first, re.M)


def test_check_finds_a_page_older_than_its_source(tool: ModuleType, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    man = tmp_path / "man"
    shutil.copytree(ROOT / "man", man)
    monkeypatch.setattr(tool, "MAN", man)
    source = man / "git-reap.rst"
    source.write_text(source.read_text() + "\nA new paragraph.\n")
    problems, _ = tool.stale()
    assert [p for p in problems if p.startswith("man/git-reap.1:")], problems
    (man / "git-release.1").unlink()
    problems, _ = tool.stale()
    assert "man/git-release.1: missing" in problems


def test_check_finds_undocumented_options_and_subcommands(
        tool: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    tool.load_cli()
    from git_claim.cli.claim_cmd import claim_group
    from git_claim.cli.reap_cmd import reap_command

    before = set(tool.undocumented())  # empty unless the pages lag (the test above says)
    monkeypatch.setattr(reap_command, "params",
                        [*reap_command.params, click.Option(["--older-than"])])
    frobnicate = click.Command("frobnicate", params=[click.Option(["--wobble", "-w"])])
    monkeypatch.setitem(claim_group.commands, "frobnicate", frobnicate)
    problems = set(tool.undocumented()) - before
    assert any("git-reap.1" in p and "--older-than" in p for p in problems), problems
    assert any("`git claim frobnicate` is not mentioned" in p for p in problems), problems
    assert any("--wobble" in p for p in problems) and any("-w " in p for p in problems)


def test_each_script_has_the_click_command_the_cli_names(tool: ModuleType,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    roots, problems = tool.root_commands()
    from git_claim.cli.claim_cmd import claim_group
    from git_claim.cli.reap_cmd import reap_command
    from git_claim.cli.release_cmd import release_command

    assert problems == []
    assert roots == {"git-claim": claim_group, "git-release": release_command,
                     "git-reap": reap_command}
    monkeypatch.setattr(tool, "console_scripts",
                        lambda: {"git-frob": "git_claim.entry:frob"})
    roots, problems = tool.root_commands()
    assert roots == {}
    assert any(p.startswith("git-frob: the CLI names no click command") for p in problems)


def test_text_of_a_page_reads_like_the_page(tool: ModuleType) -> None:
    text = tool.troff_text((ROOT / "man" / "git-reap.1").read_text())
    assert "--max-skew DURATION" in " ".join(text.split())
    assert not tool.mentions(text, "--max")  # a prefix of an option is not the option
    assert tool.mentions(text, "--dry-run")


# ----------------------------------------------------- an installed package


def _copy_source_tree(target: Path) -> Path:
    """The project as it would be checked out, without build output or caches."""
    ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", ".mypy_cache", ".venv",
                                    "venv", ".tox")
    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    return target


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600,
                            **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the project's wheel (and its dependencies) installed."""
    work = tmp_path_factory.mktemp("install")
    source = _copy_source_tree(work / "source")
    wheels = work / "wheels"
    pip_env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PIP_REQUIRE_VIRTUALENV", "PYTHONPATH"))}
    pip_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
          "."], cwd=source, env=pip_env)
    (wheel,) = wheels.glob("git_claim-*.whl")
    target = work / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(target)
    python = target / "bin" / "python"
    # This interpreter's pip installs into the new venv: no ensurepip, ten seconds saved.
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
               str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=600, env=pip_env)
    if result.returncode != 0 and "--python" in result.stderr:  # pip older than 22.3
        venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(target)
        install = [str(python), "-m", "pip", "install", "--quiet", str(wheel)]
        result = subprocess.run(install, capture_output=True, text=True, timeout=600,
                                env=pip_env)
    assert result.returncode == 0, f"installing the wheel failed:\n{result.stderr}"
    return target


def _help_env(venv_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MANPATH", None)  # man must find the pages through PATH, as a user's would
    env.update({"PATH": f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "MANPAGER": "cat", "PAGER": "cat", "GIT_PAGER": "cat", "MANWIDTH": "200"})
    return env


def _name_line(page: str) -> str:
    """`git-claim - claim tickets ...`: the NAME line the page's source promises."""
    text = (ROOT / "man" / f"{page}.rst").read_text()
    title, subtitle = re.findall(r"^(?:=+|-+)\n(.+)\n(?:=+|-+)$", text, re.M)[:2]
    return f"{title.strip()} - {subtitle.strip()}"


def test_installed_wheel_has_the_commands_and_pages_git_help_finds(installed: Path) -> None:
    """One test, so that one wheel is built even when xdist spreads the tests."""
    for script in SCRIPTS:
        assert (installed / "bin" / script).is_file(), f"{script} is not in the venv's bin"
    for page in ("man1/git-claim.1", "man1/git-release.1", "man1/git-reap.1",
                 "man7/gitclaim.7"):
        path = installed / "share" / "man" / page
        assert path.is_file(), f"share/man/{page} is not installed"
        assert path.read_text() == (ROOT / "man" / path.name).read_text()

    if shutil.which("man") is None:
        pytest.skip("`man` is not installed: cannot check that `git claim --help` opens the page")
    if shutil.which("nroff") is None and shutil.which("groff") is None:
        pytest.skip("groff is not installed: `man` cannot format pages")
    env = _help_env(installed)
    for script in SCRIPTS:
        subcommand = script.split("-", 1)[1]
        # git turns `git claim --help` into `man git-claim`; man finds the page
        # in <venv>/share/man because <venv>/bin is on PATH.
        page = subprocess.run(["git", subcommand, "--help"], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        shown = " ".join(page.stdout.replace("\u2010", "-").replace("\u2212", "-").split())
        assert page.returncode == 0 and "NAME" in page.stdout, (
            f"`git {subcommand} --help` did not show the man page (does `man` look in"
            f" ../share/man next to PATH entries?):\n{page.stdout}{page.stderr}")
        assert _name_line(script) in shown, shown[:300]

        short = subprocess.run(["git", subcommand, "-h"], env=env, capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert short.returncode == 0 and "Usage" in short.stdout, short.stdout + short.stderr
        assert _name_line(script) not in " ".join(short.stdout.split())
    guide = subprocess.run(["man", "-w", "gitclaim"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert guide.stdout.strip() == str(installed / "share" / "man" / "man7" / "gitclaim.7")
