"""Real shells pressing TAB: what bash, zsh and fish offer for a command line.

One harness for every completion test, so that they all ask each shell the
same way: bash calls the completion function its `complete -p` names, with
COMP_WORDS as readline splits the line; zsh runs compsys in a zpty, where a
widget records what compadd receives; fish answers `complete -C`. Each shell
completes all of its lines in one process and returns the candidates of
each line, in order. How the completion is set up (what is sourced, which rc
file is read) is the caller's part.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
TIMEOUT = 120


def available(shell: str) -> bool:
    """The shell is installed (bash: with bash-completion, which loads git's completion)."""
    if shutil.which(shell) is None:
        return False
    return shell != "bash" or BASH_COMPLETION.is_file()


def _chunks(output: str, marker: str, lines: Sequence[str], stderr: str) -> list[str]:
    """What the shell printed for each line, after that line's marker. A line that
    printed no marker fails here, with all the shell said (its errors included)."""
    chunks = output.split(marker)[1:]
    assert len(chunks) == len(lines), output + stderr
    return chunks


# -- bash ----------------------------------------------------------------------------------

BASH_TAB = r"""
__t() {  # LINE CUR CWORD WORD...: what bash does on TAB, after readline split the line
    local line=$1 arg2=$2 cword=$3 spec func
    shift 3
    COMP_WORDS=("$@") COMP_CWORD=$cword COMP_LINE=$line COMP_POINT=${#line}
    spec=$(complete -p -- "$1" 2>/dev/null) ||
        { _completion_loader "$1"; spec=$(complete -p -- "$1" 2>/dev/null); }
    func=${spec##*-F }
    func=${func%% *}
    COMPREPLY=()
    "$func" "$1" "$arg2" "${COMP_WORDS[cword-1]}"
    printf '@@ROW\n'
    printf '%s\n' "${COMPREPLY[@]}"
}"""


def bash_words(line: str) -> tuple[list[str], str]:
    """COMP_WORDS as readline splits the line ('=' and ':' of COMP_WORDBREAKS make
    words of their own), and the current word as bash passes it ($2)."""
    words: list[str] = []
    for token in line.split():
        words += re.findall(r"[=:]+|[^=:]+", token)
    if line.endswith(" "):
        words.append("")
    current = words[-1]
    return words, "" if current and set(current) <= set("=:") else current


def bash_tab(lines: Sequence[str], *, env: dict[str, str], cwd: Path,
             preamble: Sequence[str] = ()) -> list[list[str]]:
    """The candidates bash offers for each line, after bash-completion and then the
    preamble's lines are run (a non-interactive bash that reads no rc file). Each is the
    whole word: readline replaces only the text after the last '=' or ':', so that text's
    kept prefix is put back in front."""
    script = [f"source {shlex.quote(str(BASH_COMPLETION))}", *preamble, BASH_TAB,
              f"cd {shlex.quote(str(cwd))}"]
    for line in lines:
        words, current = bash_words(line)
        script.append(" ".join(["__t", shlex.quote(line), shlex.quote(current),
                                str(len(words) - 1), *map(shlex.quote, words)]))
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(script) + "\n"],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    results = []
    for line, chunk in zip(lines, _chunks(done.stdout, "@@ROW\n", lines, done.stderr),
                           strict=True):
        kept = re.match(r".*[=:]", line.split(" ")[-1])
        results.append([(kept.group(0) if kept else "") + item.rstrip()
                        for item in chunk.splitlines() if item.strip()])
    return results


# -- zsh -----------------------------------------------------------------------------------

ZSH_CAPTURE = r"""
# Record every candidate compadd is given and that matches the word, then add it.
compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
  local -a __hits
  local __hit
  builtin compadd -O __hits "$@"
  for __hit in $__hits; do print -r -- "@@<$__hit>@@"; done
  builtin compadd "$@"
}
__capture() {
  print -r -- "@@BEGIN@@"
  zle complete-word
  print -r -- "@@END@@"
  zle kill-whole-line
}
zle -N __capture
bindkey '^I' __capture
"""

ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty shell @ZSH@
zpty -w shell "source @INIT@"
zpty -r shell out '*@@READY@@*'
for line in "$@"; do
  zpty -w -n shell "$line"$'\t'
  zpty -r shell out '*@@END@@*'
  print -r -- "@@ROW@@"
  print -r -- "$out"
done
zpty -d shell
"""


def zsh_tab(lines: Sequence[str], *, env: dict[str, str], cwd: Path,
            init_lines: Sequence[str] = (), interactive_rc: bool = False) -> list[list[str]]:
    """The candidates zsh's completion system offers for each line, typed in an
    interactive zsh in a zpty and completed with TAB. That zsh reads the user's
    ~/.zshrc with interactive_rc, and no rc file at all without (`zsh -f`); then it
    runs init_lines (the caller's fpath, compinit and scripts) before TAB is bound."""
    with tempfile.TemporaryDirectory(prefix="zsh-tab-") as scratch:
        init = Path(scratch, "init.zsh")
        init.write_text("\n".join(["PS1='' PROMPT='' RPROMPT=''", *init_lines, ZSH_CAPTURE,
                                   f"cd {shlex.quote(str(cwd))}",
                                   'print -r -- "@@READY@@"']) + "\n")
        driver = Path(scratch, "drive.zsh")
        driver.write_text(ZSH_DRIVER.replace("@ZSH@", "zsh -i" if interactive_rc else "zsh -f -i")
                          .replace("@INIT@", shlex.quote(str(init))))
        done = subprocess.run(["zsh", "-f", str(driver), *lines], env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
    return [re.findall(r"@@<(.*?)>@@", chunk)
            for chunk in _chunks(done.stdout, "@@ROW@@", lines, done.stderr)]


# -- fish ----------------------------------------------------------------------------------

def fish_quote(text: str) -> str:
    """A fish single-quoted word: only backslash and the quote are escaped there."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_tab(lines: Sequence[str], *, env: dict[str, str], cwd: Path) -> list[list[str]]:
    """The candidates `complete -C` gives for each line in fish (which reads its own
    configuration from the env's XDG_CONFIG_HOME), without their descriptions."""
    commands = [f"cd {fish_quote(str(cwd))}"]
    for line in lines:
        commands += ["echo @@ROW", f"complete -C {fish_quote(line)}"]
    done = subprocess.run(["fish", "-c", "\n".join(commands)], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    return [[item.split("\t", 1)[0] for item in chunk.splitlines() if item]
            for chunk in _chunks(done.stdout, "@@ROW\n", lines, done.stderr)]
