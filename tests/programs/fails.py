"""Raises, uncaught: exit status 1 and a traceback of this file only."""


def deep():
    raise LookupError("not found on purpose")


deep()
