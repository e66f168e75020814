"""What crosses between processes, and what a JSON-lines file holds.

Runs everywhere: in every participating process, in the listener and in the
``mptrace`` command. The event kinds and keys, their JSON, the span codec and
OpenTelemetry value conversion, the session's configuration as it travels,
and the handshake both ends speak. Imports nothing else of mptrace but its
public leaves (``exceptions``, ``sinks``).
"""
