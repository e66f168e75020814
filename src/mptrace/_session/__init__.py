"""The owner's side: the one process that starts a session and ends it.

Options and the environment, launching the listener, joining a session that
already runs, the end of a session, ``mptrace run`` and the
``opentelemetry-instrument`` entry. Imports the instrumentation, the
participant, the schema, and the listener's sink registry to check
``exporters=`` (never the listener's router or sinks themselves).
"""
