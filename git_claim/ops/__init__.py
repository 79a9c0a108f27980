"""The operations: one typed function per command, under the thin CLI.

Each module takes a typed request and returns a frozen result; nothing here
prints or imports click. The CLI (git_claim/cli/) parses options into a
request, calls one operation and renders its result (git_claim/cli/output.py).
"""
