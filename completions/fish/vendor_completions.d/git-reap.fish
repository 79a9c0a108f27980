# fish completion for git-reap: see __git_claim_complete.
complete -c git-reap -f -a '(__git_claim_complete reap)'
