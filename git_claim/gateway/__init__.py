"""The one gateway to git: the only package that imports pygit2 or runs `git`.

A transport quirk (libgit2's local transport, a rejected push that does not
raise, a credential prompt) is handled here once, and everything above sees
plain values: ref listings, per-ref push results, objects by id.
"""
