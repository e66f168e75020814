"""The listener process: one per session, every event in, every sink out.

Its entry and signals, the transport and the door, the router, the process
table, and the sinks (console, JSON lines with rotation, OTLP, the user's,
memory) with their batching, reorder window, progress line and relay to the
program's own exporter. Imports the schema, the renderer and the public sink
seam; never the participant, the instrumentation or the session.
"""
