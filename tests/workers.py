"""Worker functions for child processes: importable, so every start method can run them."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time

import mptrace

log = logging.getLogger("tests.worker")


def log_then_exit(n: int, how: str) -> None:
    """Log *n* records (half stdlib, half structlog), then leave the way *how* says."""
    slog = mptrace.get_logger("tests.structlog")
    for i in range(n):
        if i % 2:
            slog.info("record", i=i)
        else:
            log.info("record", extra={"i": i})
    if how == "return":
        return
    if how == "raise":
        raise RuntimeError("worker failed on purpose")
    if how == "sys.exit":
        sys.exit(3)
    if how == "os._exit":
        os._exit(7)
    if how == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "sigsegv":
        ctypes.string_at(0)  # a real segmentation fault
    if how in ("sigterm", "sigkill"):  # pragma: no cover - the signal ends us
        signal.pause()
    raise AssertionError(f"unknown exit {how!r}")  # pragma: no cover


def log_forever(size: int, started, tag: str) -> None:
    """Log records of *size* characters until killed; set *started* after the first."""
    payload = "x" * size
    i = 0
    while True:
        i += 1
        log.info("big", extra={"i": i, "tag": tag, "payload": payload})
        if i == 3:
            started.set()


def log_n(n: int, tag: str) -> None:
    for i in range(n):
        log.info("steady", extra={"i": i, "tag": tag})


def nested(depth: int, method: str, n: int) -> None:
    """Log *n* records, then start a child one level deeper through mptrace."""
    log_n(n, f"depth-{depth}")
    if depth > 1:
        p = mptrace.get_context(method).Process(
            target=nested, args=(depth - 1, method, n)
        )
        p.start()
        p.join(60)
        assert p.exitcode == 0, p.exitcode


def stderr_to(path: str) -> None:
    """Send this process's fd 2 to *path* (a forkserver child's stderr is the server's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)


def log_through_dead_listener(n: int, tag: str, go, done_first, err_path: str) -> None:
    """Log *n* records, wait for *go*, log *n* more and record the slowest call."""
    stderr_to(err_path)
    log_n(n, tag + "-before")
    done_first.set()
    go.wait(60)
    slowest = 0.0
    for i in range(n):
        t0 = time.monotonic()
        log.info("after death", extra={"i": i, "tag": tag + "-after"})
        slowest = max(slowest, time.monotonic() - t0)
    log.info("slowest call", extra={"tag": tag + "-slowest", "seconds": slowest})
    if tag.endswith("3"):
        sys.exit(3)


def log_into_a_dying_listener(ready, stopped, written, killed, count, err_path) -> None:
    """With SIGPIPE's default action restored, as command-line tools do: log
    *count* records the stopped listener cannot read, then one after it died."""
    import signal

    stderr_to(err_path)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    log.info("connected")
    ready.set()
    stopped.wait(60)
    for i in range(count):
        log.info("unread", extra={"i": i})
    written.set()
    killed.wait(60)
    log.info("after death")


def log_while_the_listener_is_full(tried, freed, err_path: str) -> None:
    """Log while the listener has no descriptor to spare, then until the
    stream is back once it has (the stream tries again on its own clock)."""
    from mptrace._participant import participant as _participant

    stderr_to(err_path)
    log.info("while full")
    tried.set()
    freed.wait(60)
    stream = _participant.current().stream
    deadline = time.monotonic() + 30
    while stream.failed and time.monotonic() < deadline:
        log.info("waiting for the listener")
        freed.wait(0.05)  # already set: a pause between tries, not a wait on a peer
    log.info("back")


def log_big_and_time(ready, go, count: int, err_path: str) -> None:
    """After *go*, log *count* 1 MiB records and say on stderr how long the slowest took."""
    stderr_to(err_path)
    log.info("connected")
    ready.set()
    go.wait(60)
    payload = "y" * (1024 * 1024)
    slowest = 0.0
    for i in range(count):
        t0 = time.monotonic()
        log.info("big", extra={"i": i, "payload": payload})
        slowest = max(slowest, time.monotonic() - t0)
    os.write(2, f"slowest big call {slowest:.3f}\n".encode())


def log_once_and_exit(tag: str) -> None:
    log.info("forked child logs", extra={"tag": tag})


def fork_while_threads_log(method: str, children: int, stop_threads) -> list:
    """In this process, 4 threads log without pause while *children* processes start.

    Returns the exit codes; a child that hangs on an inherited lock shows as None.
    """
    import threading

    def spin(n: int) -> None:
        while not stop_threads.is_set():
            log.info("thread spinning", extra={"thread_no": n})

    threads = [threading.Thread(target=spin, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    codes = []
    try:
        ctx = mptrace.get_context(method)
        for i in range(children):
            p = ctx.Process(target=log_once_and_exit, args=(f"forked-{i}",))
            p.start()
            p.join(20)
            if p.exitcode is None:
                p.kill()
                p.join()
                codes.append(None)
            else:
                codes.append(p.exitcode)
    finally:
        stop_threads.set()
        for t in threads:
            t.join()
    return codes


# -- bad input (tests/guarantees/test_bad_input.py) ---------------------------
# Each ``bad_case_NAME(case)`` logs bad input tagged ``case=NAME`` and returns how
# many records it logged; ``bad_input_run`` follows each with one sentinel.
# Helper classes are defined inside the functions: they never cross a process.


def _bad_objects():
    """Return (BadStr, BadRepr): classes whose ``__str__`` / ``__repr__`` raise."""

    class BadStr:
        def __str__(self) -> str:
            raise RuntimeError("__str__ exploded")

    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("__repr__ exploded")

        __str__ = __repr__

    return BadStr, BadRepr


def bad_case_args_unpicklable(case: str) -> int:
    import threading

    log.info("lock %s gen %s", threading.Lock(), (i for i in ()), extra={"case": case})
    return 1


def bad_case_args_str_raises(case: str) -> int:
    bad_str, _ = _bad_objects()
    log.info("value %s", bad_str(), extra={"case": case})
    return 1


def bad_case_args_repr_raises(case: str) -> int:
    _, bad_repr = _bad_objects()
    log.info("value %r", bad_repr(), extra={"case": case})
    return 1


def bad_case_extra_unpicklable(case: str) -> int:
    import threading

    _, bad_repr = _bad_objects()
    extra = {
        "case": case,
        "lock": threading.Lock(),
        "gen": (i for i in ()),
        "bad": bad_repr(),
    }
    log.info("extra", extra=extra)
    return 1


def bad_case_structlog_kv(case: str) -> int:
    import threading

    _, bad_repr = _bad_objects()
    slog = mptrace.get_logger("tests.bad").bind(bound_lock=threading.Lock())
    slog.info(
        "kv", case=case, lock=threading.Lock(), gen=(i for i in ()), bad=bad_repr()
    )
    return 1


def bad_case_structlog_event_str_raises(case: str) -> int:
    bad_str, _ = _bad_objects()
    mptrace.get_logger("tests.bad").info(bad_str(), case=case)
    return 1


def bad_case_huge(case: str) -> int:
    size = 16 * 1024 * 1024
    log.info("x" * size, extra={"case": case})
    mptrace.get_logger("tests.bad").info("huge", case=case, payload="y" * size)
    return 2


def bad_case_surrogates(case: str) -> int:
    fields = {
        "lone": "\udcff",
        "raw": b"\xff\xfe",
        "escaped": b"caf\xc3\xa9 \xff\xfe".decode("utf-8", "surrogateescape"),
    }
    log.info("lone \udcff", extra={"case": case, **fields})
    mptrace.get_logger("tests.bad").info("lone \udcff", case=case, **fields)
    return 2


def bad_case_exception_unpicklable(case: str) -> int:
    import threading

    class LockedError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.lock = threading.Lock()
            self.gen = (i for i in ())

    try:
        raise LockedError("holding a lock")
    except LockedError as exc:
        log.exception("locked", extra={"case": case, "err": exc})
        mptrace.get_logger("tests.bad").exception("locked", case=case, err=exc)
    return 2


def bad_case_exception_str_raises(case: str) -> int:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("__str__ exploded")

    try:
        raise UnprintableError()
    except UnprintableError:
        log.exception("unprintable", extra={"case": case})
    return 1


def bad_case_chain_explicit(case: str) -> int:
    try:
        try:
            raise KeyError("first cause")
        except KeyError as cause:
            raise RuntimeError("second effect") from cause
    except RuntimeError:
        log.exception("chained", extra={"case": case})
    return 1


def bad_case_chain_implicit(case: str) -> int:
    try:
        try:
            raise KeyError("first context")
        except KeyError:
            raise RuntimeError("second during handling")  # noqa: B904 - the implicit chain is what is tested
    except RuntimeError:
        log.exception("chained", extra={"case": case})
    return 1


def bad_case_exception_group(case: str) -> int:
    if sys.version_info < (3, 11):
        return 0
    try:
        raise ExceptionGroup(  # noqa: F821 - Python 3.11+ only
            "several", [ValueError("member one"), TypeError("member two")]
        )
    except Exception:
        log.exception("group", extra={"case": case})
        mptrace.get_logger("tests.bad").exception("group", case=case)
    return 2


def bad_case_logger_exception(case: str) -> int:
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        log.exception("division failed", extra={"case": case})
        mptrace.get_logger("tests.bad").exception("division failed", case=case)
    return 2


def bad_case_bigger_than_a_frame(case: str) -> int:
    fields = {f"f{i}": "z" * (1024 * 1024) for i in range(70)}  # 70 MiB
    log.info("too big", extra=fields)
    return 0  # its fields, "case" among them, are cut


def bad_case_huge_int(case: str) -> int:
    big = 10**5000  # past the 4,300 digits an int may have as decimal text
    mptrace.get_logger("tests.bad").info("huge int", case=case, n=big)
    log.info("huge int", extra={"case": case, "n": big})
    return 2


def bad_case_mixed_keys(case: str) -> int:
    fields = {"mixed": {1: "int one", "1": "str one", (2,): "tuple"}}
    mptrace.get_logger("tests.bad").info("mixed keys", case=case, **fields)
    log.info("mixed keys", extra={"case": case, **fields})
    return 2


def bad_case_structlog_reserved_keys(case: str) -> int:
    mptrace.get_logger("tests.bad").warning("reserved", case=case, level=3, pid="mine")
    return 1


def bad_input_cases() -> list[str]:
    """Names of every ``bad_case_*`` function, in definition order."""
    return [
        name[len("bad_case_") :] for name in globals() if name.startswith("bad_case_")
    ]


def bad_input_run() -> None:
    """Run every bad-input case; after each, log one sentinel and what it logged.

    A case that raises is reported as a ``case raised`` record, so the test
    names the case instead of losing the rest of the run.
    """
    for case in bad_input_cases():
        try:
            count = globals()["bad_case_" + case](case)
        except Exception:
            log.exception("case raised", extra={"case": case})
            count = -1
        log.info("sentinel", extra={"case": case, "logged": count})


# -- redaction (tests/guarantees/test_security.py) ----------------------------


def log_secrets(tag: str) -> None:
    """Log secrets through stdlib extra= and structlog, at the top level and nested."""
    log.info(
        "stdlib secrets",
        extra={
            "tag": tag,
            "password": "hunter2-std",
            "headers": {"Authorization": "Bearer tok-std", "Accept": "text/plain"},
            "ssn": "123-45-6789",
            "user": "bob",
        },
    )
    mptrace.get_logger("tests.secrets").info(
        "structlog secrets",
        tag=tag,
        api_key="ak-sl",
        nested={"list": [{"access_token": "at-sl", "n": 1}], "X-Api-Key": "xak-sl"},
        tokens_used=5,
        ssn="987-65-4321",
    )


# -- listener processors (tests/session/test_config.py) -----------------------


def processor_add_listener_pid(logger, method_name, event_dict):
    """A user processor: records the pid of the process it runs in."""
    event_dict["processed_in"] = os.getpid()
    event_dict["processed_method"] = method_name
    return event_dict


def processor_drop_marked(logger, method_name, event_dict):
    """A user processor that drops events carrying ``drop=True``."""
    import structlog

    if event_dict.get("drop") is True:
        raise structlog.DropEvent
    return event_dict


def processor_fail(logger, method_name, event_dict):
    """A user processor that always raises."""
    raise RuntimeError("processor failed on purpose")


def log_stdlib_and_structlog(tag: str) -> None:
    """One stdlib and one structlog record, both tagged *tag*."""
    log.info("from stdlib", extra={"tag": tag})
    mptrace.get_logger("tests.structlog").info("from structlog", tag=tag)


# -- structlog (tests/participant/test_structlog.py) --------------------------


def structlog_typed(tag: str) -> None:
    """Log bound and key-value fields of every JSON type, and a contextvar."""
    import structlog

    structlog.contextvars.bind_contextvars(request_id=f"req-{tag}", attempt=2)
    try:
        slog = mptrace.get_logger("tests.typed").bind(bound_int=7, bound_list=["a", 1])
        slog.info(
            "typed",
            tag=tag,
            an_int=42,
            a_float=2.5,
            a_list=[1, "two", None, [3.0]],
            a_tuple=(1, 2),
            a_dict={"a": {"b": [1, {"c": None}]}, "t": True},
            yes=True,
            no=False,
            nothing=None,
        )
    finally:
        structlog.contextvars.clear_contextvars()


def structlog_levels(tag: str) -> None:
    """A debug and an info record through structlog and stdlib each."""
    slog = mptrace.get_logger("tests.levels")
    slog.debug("hidden", tag=tag)
    log.debug("hidden", extra={"tag": tag})
    slog.info("shown", tag=tag)
    log.info("shown", extra={"tag": tag})


def structlog_exception(tag: str) -> None:
    """structlog's log.exception inside an except block."""
    try:
        raise ValueError(f"bad value {tag}")
    except ValueError:
        mptrace.get_logger("tests.exc").exception("it failed", tag=tag)


# -- tracing (tests/instrument/: test_tracing, test_lifecycle, test_pool, test_traced) ---


def tr_square(x: int) -> int:
    """A pool task: logs once (inside its task span) and returns x squared."""
    log.info("squaring", extra={"x": x})
    return x * x


def tr_pid(x: int) -> int:
    """A pool task that says which process ran it."""
    return os.getpid()


def tr_fail_on_two(x: int) -> int:
    """A pool task that raises ValueError (caused by a KeyError) for x == 2."""
    if x == 2:
        try:
            raise KeyError("the task's cause")
        except KeyError as cause:
            raise ValueError(f"task failed on {x}") from cause
    return x


def tr_raise_chained() -> None:
    """A process target that raises RuntimeError from a KeyError."""
    try:
        raise KeyError("inner cause of the child")
    except KeyError as cause:
        raise RuntimeError("outer failure of the child") from cause


def tr_block(ready) -> None:
    """Set *ready*, then wait to be terminated or killed (gives up after 60 s)."""
    import threading

    ready.set()
    threading.Event().wait(60)


def tr_start_grandchild(method: str) -> None:
    """A process target: inside a @traced call, start a grandchild through mptrace."""
    code = _tr_grandchild_in_span(method)
    if code != 0:
        sys.exit(10 + (code if code > 0 else 0))


@mptrace.traced(name="start grandchild")
def _tr_grandchild_in_span(method: str) -> int:
    p = mptrace.get_context(method).Process(
        target=tr_square, args=(5,), name="grandchild"
    )
    p.start()
    p.join(60)
    return p.exitcode if p.exitcode is not None else -999


def tr_tree(method: str, items: int) -> dict:
    """The tree workload, run in an active session: a "root" span, under it two
    ``mptrace.Process`` children (one returns, one calls ``sys.exit(3)``) and a
    ``Pool(2).map`` of *items* tasks.

    Returns the pids and results, for the test to check the spans against.
    """
    from opentelemetry import trace

    ctx = mptrace.get_context(method)
    with trace.get_tracer("tests").start_as_current_span("root") as root:
        children = [
            ctx.Process(target=tr_square, args=(3,), name="tree-child-0"),
            ctx.Process(
                target=log_then_exit, args=(0, "sys.exit"), name="tree-child-1"
            ),
        ]
        for p in children:
            p.start()
        pool = mptrace.Pool(2, context=ctx)
        try:
            results = pool.map(tr_square, range(items))
        finally:
            pool.close()
            pool.join()
        for p in children:
            p.join(60)
    return {
        "root_span_id": format(root.get_span_context().span_id, "016x"),
        "trace_id": format(root.get_span_context().trace_id, "032x"),
        "children": {p.name: p.pid for p in children},
        "exitcodes": [p.exitcode for p in children],
        "results": results,
        "parent_pid": os.getpid(),
    }


def tr_program(exporters: list, method: str, service_name: str, items: int) -> dict:
    """A whole traced program: init, the tree workload, shutdown.

    Returns what the program saw, and how long ``shutdown()`` took.
    """
    session = mptrace.init(exporters=exporters, service_name=service_name)
    out = tr_tree(method, items)
    t0 = time.monotonic()
    session.shutdown()
    out["shutdown_s"] = time.monotonic() - t0
    return out


@mptrace.traced
def tr_traced_add(a: int, b: int) -> int:
    """@traced with no options: the span's name is the qualified name."""
    return a + b


@mptrace.traced(
    name="custom span", attributes={"stage": 2, "team": "core"}, record_args=True
)
def tr_traced_named(a: int, b: int = 10, *, label: object = None) -> int:
    """@traced with every option."""
    return a * b


@mptrace.traced(record_args=True)
def tr_login(user: str, password: str, options: dict, headers: list) -> str:
    """@traced(record_args=True) over secrets, the span's own attributes too."""
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("db.password", "SECRET-db-attr")
    span.set_attribute("http.request.header.authorization", "SECRET-bearer")
    span.add_event("retry", {"X-Api-Key": "SECRET-event-key", "attempt": 2})
    logging.getLogger("tests.security").info(
        "bytes key", extra={"blob": {b"password": "SECRET-bytes-key"}}
    )
    return user


def log_in_everywhere() -> None:
    tr_login(
        "ann",
        "SECRET-arg",
        {"token": "SECRET-dict-arg", "retries": 3},
        [{"authorization": "SECRET-list-arg"}],
    )


@mptrace.traced(record_args=False)
def tr_traced_secret(password: str) -> int:
    """@traced(record_args=False): the argument must not be recorded."""
    return len(password)


@mptrace.traced
def tr_traced_current() -> bool:
    """Whether a valid span is current inside the call."""
    from opentelemetry import trace

    return trace.get_current_span().get_span_context().is_valid


@mptrace.traced
def tr_traced_gen(n: int):
    """A traced generator: logs inside its body before each item."""
    for i in range(n):
        log.info("generating", extra={"i": i})
        yield i * 10
    log.info("generator done")


@mptrace.traced
async def tr_traced_coro(x: int) -> int:
    """A traced coroutine function: awaits, then logs inside its span."""
    import asyncio

    await asyncio.sleep(0)
    log.info("coroutine resumed", extra={"x": x})
    return x + 1


class TrError(Exception):
    """The exception a traced function raises."""


@mptrace.traced
def tr_traced_raises(message: str, box: list) -> None:
    """Put the exception in *box*, then raise it."""
    exc = TrError(message)
    box.append(exc)
    raise exc


@mptrace.traced
def tr_traced_task(x: int) -> int:
    """A traced function used as a pool task."""
    return x * 3


class TrHolder:
    @mptrace.traced
    def method(self, x: int) -> int:
        """A traced method: its span is named TrHolder.method."""
        return x - 1


def tr_mul(a: int, b: int) -> int:
    """A two-argument pool task, for starmap."""
    return a * b


def tr_init(tag: str) -> None:
    """A pool initializer: logs once in each new worker."""
    log.info("worker initialized", extra={"tag": tag})


def tr_leave_grandchild(release) -> None:
    """Fork a plain grandchild (os.fork, not mptrace) that outlives this child
    until *release* is set; it inherits this child's copy of every descriptor."""
    if os.fork() == 0:
        try:
            release.wait(60)
        finally:
            os._exit(0)


def tr_write_fd(fd: int) -> None:
    """Write one byte to *fd* (inherited through fork): "my target is running"."""
    os.write(fd, b"r")


def tr_start_grandchildren(method: str, n: int) -> None:
    """A process target: start *n* grandchildren through mptrace, join them, return at once."""
    ctx = mptrace.get_context(method)
    children = [
        ctx.Process(target=tr_square, args=(i,), name=f"grandchild-{i}")
        for i in range(n)
    ]
    for p in children:
        p.start()
    for p in children:
        p.join(60)
    if any(p.exitcode != 0 for p in children):
        sys.exit(5)


def wait_then_log(go, tag: str) -> None:
    """Wait for *go* (at most a minute), then log once."""
    go.wait(60)
    log.info("after the wait", extra={"tag": tag})


def log_nested_level_field() -> None:
    """One info record whose field holds {"level": "error"}, and one real error."""
    log.info("ok", extra={"check": {"level": "error"}})
    log.error('real error with "level": "error" in its text')


def passthrough_processor(logger, method_name, event_dict):
    """A listener-side processor that changes nothing."""
    return event_dict


def log_after(go, n: int) -> None:
    """Wait for *go*, then log *n* records (a child nobody joins)."""
    go.wait(60)
    for i in range(n):
        log.info("after", extra={"i": i})


def block_until(go) -> None:
    go.wait(60)


def init_in_plain_child(path: str) -> None:
    """A child of a program without mptrace starts a session of its own."""
    with mptrace.init(exporters=[f"jsonl:{path}"]) as session:
        log.warning("from a plain child", extra={"session": type(session).__name__})


# -- living beside the program's own logging and structlog --------------------


def user_logging_lines(tag: str) -> None:
    """Records at every level from two loggers of the program's own."""
    for name in ("app", "app.db"):
        lg = logging.getLogger(name)
        lg.debug("debug %s", tag)
        lg.info("info %s", tag)
        lg.warning("warning %s", tag)
        lg.error("error %s", tag)


def structlog_configure_then_log(tag: str, out_path: str) -> None:
    """Configure structlog (as a program may, after init) and log through it."""
    import structlog

    with open(out_path, "a") as out:
        structlog.configure(
            processors=[structlog.processors.add_log_level, mark_processor,
                        structlog.processors.JSONRenderer(sort_keys=True)],
            logger_factory=structlog.WriteLoggerFactory(file=out),
        )  # fmt: skip
        slog = structlog.get_logger()
        slog.info("configured after init", tag=tag)
        # Without a logger factory: the renderer's string reaches the logger.
        structlog.configure(processors=[structlog.processors.JSONRenderer()])
        structlog.get_logger().info("renderer only", tag=tag)


def mark_processor(logger, method_name, event_dict):
    """A program's processor: mptrace must see what it adds."""
    event_dict["marked_by_program"] = True
    return event_dict


def print_and_log(tag: str) -> None:
    """Log one line through the program's own (console) logging."""
    logging.getLogger("app").warning("line from %s", tag)


def log_tagged(tag: str, n: int = 1) -> None:
    for i in range(n):
        log.info("tagged", extra={"tag": tag, "i": i})


def slow_square(x: int, pause: float = 0.03) -> int:
    """A pool task that takes *pause* seconds (its work), then fails on 13."""
    time.sleep(pause)
    if x == 13:
        raise ValueError("13 is unlucky")
    return x * x


def square(x: int) -> int:
    return x * x


def close_every_descriptor_then_log(folder: str, err_path: str) -> None:
    """Log, close every descriptor from 3 up as daemonizing code does, open
    files of the program's own (at least 12, and until one has taken the
    stream's number), log again, then write and close the files."""
    from mptrace._participant import participant as _participant

    stderr_to(err_path)
    log.info("before the close")
    stream_fd = _participant.current().stream._fd
    os.closerange(3, 4096)
    fds: list[int] = []
    while len(fds) < 12 or stream_fd not in fds:
        path = os.path.join(folder, f"data{len(fds)}.txt")
        fds.append(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for i in range(20):
        log.info("after the close", extra={"i": i})
    for fd in fds:
        os.write(fd, b"the program's own data\n")
        os.close(fd)


def log_item(i: int) -> int:
    """A pool task that logs one record."""
    log.info("item", extra={"i": i})
    return i * i


def run_python(code: str) -> None:
    """Start a Python program, as a pipeline's stage would."""
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def chatter(marked: object, stop: object) -> None:
    """Log without pause until *stop* is set; set *marked* after the first record."""
    log.warning("first")
    marked.set()  # type: ignore[attr-defined]
    n = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        n += 1
        log.info("chatter %d", n)


def log_with_marks(n: int, tag: str, marks: list, err_path: str, killed) -> None:
    """Log *n* numbered records as fast as possible; set ``marks[k]`` at
    record ``n * (k + 1) // 4``, a quarter in, then half way, ...; exit
    only once *killed* is set: the listener died while this process lived.
    The last 100 records wait for it too: however fast this process is, some
    are written after the last kill."""
    stderr_to(err_path)
    at = {n * (k + 1) // 4: mark for k, mark in enumerate(marks)}
    tail = max(n - 100, max(at, default=0) + 1)
    for i in range(n):
        if i == tail:
            killed.wait(120)
        log.info("fast", extra={"i": i, "tag": tag})
        mark = at.get(i)
        if mark is not None:
            mark.set()
    killed.wait(120)
