"""How an event reads as a line of text for a person: the line, its colours.

Runs in the listener (the console sink), in the ``mptrace`` command (``mptrace
logs``) and, once the listener is gone, in any process that falls back to
stderr. Imports only the schema.
"""
