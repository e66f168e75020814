"""This process's part in a session: what runs in every participating process.

The participant and its stream to the listener; the sources that turn the
program's logging, structlog and OpenTelemetry into events; plain values,
redaction, fork safety and import hooks. Imports the schema and the renderer
(for the fallback to stderr), never the instrumentation, the session, the
listener or the command.
"""
