# fish completion for git-release: see __git_claim_complete.
complete -c git-release -f -a '(__git_claim_complete release)'
