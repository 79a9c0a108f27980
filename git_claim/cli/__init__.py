"""The command line: parses arguments, calls the protocol, prints. Nothing else.

Only this package imports click. Heavy modules (pygit2, the protocol) are
imported inside the commands, so `-h` and completion start fast.
"""
