"""Instrumentation: the program's processes, pools and calls made into spans.

Runs in every participating process: the drop-ins and the patched stdlib
classes (Process, Pool, executors), task spans, each child's lifecycle and
its exit monitor, ``@traced``, the tracer and the run's span. Imports the
participant and the schema, never the session, the listener or the command.
"""
