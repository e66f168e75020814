"""The ``mptrace`` command: reading the JSON-lines files a run wrote.

The reader, what ``mptrace logs`` selects, the report (text and HTML), the
trace-event timeline, and the command itself. Imports the schema and the
renderer; ``mptrace run`` alone loads the session.
"""
