# fish completion for git-claim: see __git_claim_complete.
complete -c git-claim -f -a '(__git_claim_complete claim)'
