# `git claim`, `git release` and `git reap`: fish 3.6 neither lists git-*
# commands after `git` nor forwards their arguments to git-claim's completion
# (it looks for git-git-claim); complete them here. Sourced at startup: it only
# registers completions.
complete -c git -f -n __fish_git_needs_command -a claim -d 'Claim tickets atomically through the shared git remote'
complete -c git -f -n __fish_git_needs_command -a release -d 'Release a claimed ticket: free it, or record it done or blocked'
complete -c git -f -n __fish_git_needs_command -a reap -d 'Free the claims of crashed agents'
complete -c git -f -n '__fish_git_using_command claim' -a '(__git_claim_complete claim git)'
complete -c git -f -n '__fish_git_using_command release' -a '(__git_claim_complete release git)'
complete -c git -f -n '__fish_git_using_command reap' -a '(__git_claim_complete reap git)'
