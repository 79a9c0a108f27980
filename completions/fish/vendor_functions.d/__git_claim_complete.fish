# fish completion for git-claim, git-release and git-reap, and for `git claim`,
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
