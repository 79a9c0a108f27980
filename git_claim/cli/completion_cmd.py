"""`git claim completion bash|zsh|fish`: the shell completion scripts.

The scripts are generated here, from one text per shell; completions/ holds
the generated files that the package installs where each shell looks (a test
checks that they are up to date: regenerate them with
`python -c 'from git_claim.cli.completion_cmd import write_files; write_files("completions")'`).
Every script asks `git-claim --complete COMMAND WORD...` for its candidates
(see git_claim/completion.py), so the shells only pass words and show answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS

if TYPE_CHECKING:  # pathlib is imported by write_files only: -h stays light
    from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
COMMANDS = ("claim", "release", "reap")
DESCRIPTIONS = {
    "claim": "claim tickets atomically through the shared git remote",
    "release": "release a claimed ticket: free it, or record it done or blocked",
    "reap": "free the claims of crashed agents",
}

# Where each directory of completions/ is installed (setup.cfg [options.data_files]).
INSTALL_DIRS = {
    "bash": "share/bash-completion/completions",
    "zsh": "share/zsh/site-functions",
    "fish/vendor_completions.d": "share/fish/vendor_completions.d",
    "fish/vendor_functions.d": "share/fish/vendor_functions.d",
    "fish/vendor_conf.d": "share/fish/vendor_conf.d",
}

BASH = r"""# bash completion for git-claim, git-release and git-reap, and for
# `git claim`, `git release` and `git reap` through git's own completion.
#
# Installed as share/bash-completion/completions/git-claim (and as git-release
# and git-reap): bash-completion loads it on the first TAB after one of these
# commands, and git's completion loads it to find _git_claim, _git_release
# and _git_reap. Manual setup, in ~/.bashrc: source <(git claim completion bash)
#
# The candidates come from `git-claim --complete COMMAND WORD...`, which reads
# local files only (no network).

# __git_claim_reply COMMAND WORD...: set COMPREPLY; the last WORD is the one completed.
__git_claim_reply()
{
    local cur=${!#} line files= commands= value prefix=
    local -a run=(command git-claim)
    # `git -C DIR claim ...`: ask in DIR
    [[ ${__git_C_args-} ]] && run=(command git "${__git_C_args[@]}" claim)
    COMPREPLY=()
    while IFS= read -r line; do
        case $line in
        :files) files=1 ;;
        :commands) commands=1 ;;
        :*) ;;
        *) COMPREPLY+=("${line%%$'\t'*}") ;;
        esac
    done < <("${run[@]}" --complete "$@" 2>/dev/null)

    value=$cur
    if [[ $cur == --*=* ]]; then
        value=${cur#*=}
        # readline replaces only the text after the last word break character
        [[ $COMP_WORDBREAKS == *=* ]] && prefix=${cur%%=*}=
    fi
    if [[ $prefix ]]; then
        COMPREPLY=("${COMPREPLY[@]#"$prefix"}")
    fi
    # git's completion adds the space after a word itself (nospace), and falls
    # back to file names, which are never arguments here
    compopt +o nospace 2>/dev/null
    if [[ $commands ]]; then
        while IFS= read -r line; do
            COMPREPLY+=("$line")
        done < <(compgen -c -- "$value")
    fi
    if [[ -z $files ]]; then
        compopt +o default +o bashdefault 2>/dev/null
    elif declare -F _filedir >/dev/null; then
        cur=$value _filedir
    else
        compopt -o filenames 2>/dev/null
        while IFS= read -r line; do
            COMPREPLY+=("$line")
        done < <(compgen -f -- "$value")
    fi
    return 0
}

# `git [OPTIONS] COMMAND ...`: git's completion sets words, cword and cur, and
# __git_cmd_idx to the index of COMMAND in words.
__git_claim_git()
{
    local i=${__git_cmd_idx-}
    if [[ -z $i ]]; then
        for ((i = 1; i < cword; i++)); do
            [[ ${words[i]} == "$1" ]] && break
        done
    fi
    __git_claim_reply "$1" "${words[@]:i+1:cword-i-1}" "$cur"
}

_git_claim() { __git_claim_git claim; }
_git_release() { __git_claim_git release; }
_git_reap() { __git_claim_git reap; }

# git-claim, git-release, git-reap typed directly.
__git_claim_command()
{
    local cur words cword command=${1##*/}
    if declare -F _get_comp_words_by_ref >/dev/null; then
        _get_comp_words_by_ref -n =: cur words cword
    else
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]-}
    fi
    __git_claim_reply "${command#git-}" "${words[@]:1:cword-1}" "$cur"
}

complete -F __git_claim_command git-claim git-release git-reap
"""

ZSH_BODY = r"""# Candidates from `git-claim --complete COMMAND WORD...` (local files only, no
# network); words[1] is the command (git-claim, or `claim` under _git).
local line files=0 command_names=0 list= expl ret=1
local -a lines matches shown run=(command git-claim)
# `git -C DIR claim ...`: ask in DIR
(( ${+opt_args[-C]} )) && run=(command git -C ${(Q)${~opt_args[-C]}} claim)
lines=(${(f)"$($run --complete $command "${(@Q)words[2,CURRENT-1]}" "${(Q)PREFIX}" 2>/dev/null)"})
for line in $lines; do
  case $line in
    (:files) files=1 ;;
    (:commands) command_names=1 ;;
    (:*) ;;
    (*$'\t'*) matches+=("${line%%$'\t'*}"); shown+=("${line%%$'\t'*}  -- ${line#*$'\t'}"); list=-l ;;
    (*) matches+=("$line"); shown+=("$line") ;;
  esac
done
if (( $#matches )); then
  _description values expl "git $command"
  compadd "$expl[@]" $list -d shown -a matches && ret=0
fi
if (( command_names )); then  # (a local $commands would hide zsh's table of commands)
  _command_names -e && ret=0
fi
if (( files )); then
  compset -P '*='
  _files && ret=0
fi
return ret
"""

ZSH_FILE = r"""#compdef git-@COMMAND@
#description @DESCRIPTION@

# zsh completion for git-@COMMAND@, and for `git @COMMAND@` through zsh's _git,
# which calls _git-@COMMAND@ for it (and lists @COMMAND@ with the description
# above) when this file is on $fpath, as share/zsh/site-functions/_git-@COMMAND@.

local command=@COMMAND@
@BODY@"""

ZSH_SOURCED = r"""# zsh completion for git-claim, git-release and git-reap, and for `git claim`,
# `git release` and `git reap` through zsh's _git. Manual setup, in ~/.zshrc
# after compinit: source <(git claim completion zsh)
# (Installed packages put _git-claim, _git-release and _git-reap on $fpath.)

__git_claim_complete() {
local command=$1
@BODY@}

_git-claim() { __git_claim_complete claim }
_git-release() { __git_claim_complete release }
_git-reap() { __git_claim_complete reap }
compdef _git-claim git-claim
compdef _git-release git-release
compdef _git-reap git-reap

# _git lists third-party commands from the _git-* files on $fpath only: name ours
# as user commands, keeping any others.
() {
  local -a user
  zstyle -g user ':completion:*:*:git:*' user-commands
  zstyle ':completion:*:*:git:*' user-commands ${user:#(claim|release|reap)(|:*)} \
    @USER_COMMANDS@
}
"""

FISH_FUNCTION = r"""# fish completion for git-claim, git-release and git-reap, and for `git claim`,
# `git release` and `git reap`. The candidates come from
# `git-claim --complete COMMAND WORD...`, which reads local files only (no network).
#
# __git_claim_complete COMMAND [git]: candidates for the current command line,
# which starts with git-COMMAND, or with `git [OPTIONS] COMMAND` if `git` is given.
function __git_claim_complete -a command via -d 'Candidates for git claim, git release and git reap'
    set -l words (commandline -opc)
    set -e words[1]
    set -l run git-claim
    if test "$via" = git
        # fish 3.7 and later forward `git COMMAND` to git-COMMAND's completion
        # themselves (3.6 looks for git-git-COMMAND): answer only once.
        if not set -q __git_claim_forwarded
            set -g __git_claim_forwarded (complete -c git | string match -q -- \
                "*__fish_git_complete_custom_command claim)*"; and echo 1; or echo 0)
        end
        test "$__git_claim_forwarded" = 1; and return
        if functions -q __fish_git_global_optspecs
            argparse -s (__fish_git_global_optspecs) -- $words 2>/dev/null; or return
            set words $argv[2..-1]
            # `git -C DIR claim ...`: ask in DIR
            set -q _flag_C; and set run git -C $_flag_C claim
        else if set -l index (contains -i -- $command $words)
            set words $words[(math $index + 1)..-1]
        end
    end
    set -l cur (commandline -ct)
    set -l files
    set -l commands
    for line in (command $run --complete $command $words $cur 2>/dev/null)
        switch $line
            case :files
                set files 1
            case :commands
                set commands 1
            case ':*'
            case '*'
                printf '%s\n' $line
        end
    end
    if set -q commands[1]
        __fish_complete_command
    end
    if set -q files[1]
        set -l prefix (string match -r -- '^--[^=]*=' $cur)
        __fish_complete_path (string replace -r -- '^--[^=]*=' '' $cur) | string replace -r -- '^' "$prefix"
    end
end
"""

FISH_COMMAND = r"""# fish completion for git-@COMMAND@: see __git_claim_complete.
complete -c git-@COMMAND@ -f -a '(__git_claim_complete @COMMAND@)'
"""

FISH_GIT = r"""# `git claim`, `git release` and `git reap`: fish 3.6 neither lists git-*
# commands after `git` nor forwards their arguments to git-claim's completion
# (it looks for git-git-claim); complete them here. Sourced at startup: it only
# registers completions.
@LINES@
"""

FISH_SOURCED_HEAD = r"""# Manual setup: git claim completion fish > ~/.config/fish/conf.d/git-claim.fish
# (Installed packages put these in fish's vendor_completions.d, vendor_functions.d
# and vendor_conf.d directories.)

"""


def _fish_git() -> str:
    lines = [f"complete -c git -f -n __fish_git_needs_command -a {command}"
             f" -d {_quote(DESCRIPTIONS[command].capitalize())}" for command in COMMANDS]
    lines += [f"complete -c git -f -n '__fish_git_using_command {command}'"
              f" -a '(__git_claim_complete {command} git)'" for command in COMMANDS]
    return FISH_GIT.replace("@LINES@", "\n".join(lines))


def _zsh_file(command: str) -> str:
    return (ZSH_FILE.replace("@COMMAND@", command)
            .replace("@DESCRIPTION@", DESCRIPTIONS[command])
            .replace("@BODY@", ZSH_BODY))


def shipped_files() -> dict[str, str]:
    """The files of completions/, by path relative to it."""
    files = {}
    for command in COMMANDS:
        # bash-completion finds a file by the command's name: one copy each
        files[f"bash/git-{command}"] = BASH
        files[f"zsh/_git-{command}"] = _zsh_file(command)
        files[f"fish/vendor_completions.d/git-{command}.fish"] = \
            FISH_COMMAND.replace("@COMMAND@", command)
    files["fish/vendor_functions.d/__git_claim_complete.fish"] = FISH_FUNCTION
    files["fish/vendor_conf.d/git-claim.fish"] = _fish_git()
    return files


def script(shell: str) -> str:
    """One script for manual setup: everything for all three commands."""
    if shell == "bash":
        return BASH
    if shell == "zsh":
        user_commands = " \\\n    ".join(f"{command}:{_quote(DESCRIPTIONS[command])}"
                                          for command in COMMANDS)
        return (ZSH_SOURCED.replace("@BODY@", ZSH_BODY)
                .replace("@USER_COMMANDS@", user_commands))
    if shell == "fish":
        commands = "".join(FISH_COMMAND.replace("@COMMAND@", command).split("\n", 1)[1]
                           for command in COMMANDS)
        return f"{FISH_SOURCED_HEAD}{FISH_FUNCTION}\n{commands}\n{_fish_git()}"
    raise ValueError(shell)


def _quote(text: str) -> str:
    """Single-quoted for zsh and fish, which escape quotes differently: none allowed."""
    assert "'" not in text and "\\" not in text, text
    return f"'{text}'"


def write_files(root: str | Path) -> None:
    """Write the files of completions/ under root."""
    from pathlib import Path

    for relative, text in shipped_files().items():
        path = Path(root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@claim_group.command("completion", context_settings=CONTEXT_SETTINGS)
@click.argument("shell", type=click.Choice(SHELLS))
def completion_command(shell: str) -> None:
    """Print the completion script for SHELL, for a manual setup.

    Completes `git claim`, `git release` and `git reap` (and git-claim,
    git-release, git-reap): subcommands, options, their values, the tickets we
    hold and, for `git claim`, the tickets of the last backlog listing.

    \b
    bash, in ~/.bashrc:   source <(git claim completion bash)
    zsh, in ~/.zshrc after compinit:   source <(git claim completion zsh)
    fish:   git claim completion fish > ~/.config/fish/conf.d/git-claim.fish

    Installed packages put the scripts where each shell looks for them.
    """
    click.echo(script(shell), nl=False)
