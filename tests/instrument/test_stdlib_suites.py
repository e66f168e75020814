"""What CPython's own multiprocessing tests check of the program's processes.

Each test here is one thing ``test_multiprocessing_*`` or
``test_concurrent_futures`` looks at after its tests (``benchmarks/stdlib_compat.py``
runs them with and without mptrace): a joined child's objects gone with the
last reference, as without mptrace.
"""

from __future__ import annotations

import ast
import gc
import multiprocessing
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from conftest import read_jsonl
from guest_workers import keyword_self


class TestAJoinedChildIsFreed:
    def test_process_and_popen_go_with_the_last_reference(self, start_method, session):
        """_TestFinalize: once join() returns, nothing of mptrace's holds the
        Process or its Popen, so the Popen's finalizer (closing its pipe) runs
        at the next collection and none is left registered."""
        from multiprocessing import util

        ctx = multiprocessing.get_context(start_method)
        for _ in range(5):  # the monitor's thread races join(): try it often
            p = ctx.Process(target=keyword_self, kwargs={"self": 1})
            p.start()
            p.join(60)
            process, popen = weakref.ref(p), weakref.ref(p._popen)
            del p
            gc.collect()
            assert process() is None
            assert popen() is None
            assert not [
                f
                for f in util._finalizer_registry.values()
                if f._callback is util.close_fds
            ]

    def test_freed_without_a_collection(self, start_method, session):
        """No reference cycle through mptrace's state: as without mptrace, the
        last reference frees a joined Process at once (a test suite that
        counts live processes need not collect garbage first)."""
        ctx = multiprocessing.get_context(start_method)
        p = ctx.Process(target=keyword_self, kwargs={"self": 1})
        p.start()
        p.join(60)
        process = weakref.ref(p)
        gc.disable()
        try:
            del p
            assert process() is None
        finally:
            gc.enable()


class TestAClosedProcess:
    def test_terminate_after_close_is_the_programs_error_alone(
        self, start_method, session, jsonl
    ):
        """_TestProcess.test_close: terminate() of a closed process raises the
        stdlib's ValueError, and mptrace, reading no exit code of it, has no
        warning to add."""
        ctx = multiprocessing.get_context(start_method)
        p = ctx.Process(target=keyword_self, kwargs={"self": 1})
        p.start()
        p.join(60)
        p.close()
        with pytest.raises(ValueError, match="closed"):
            p.terminate()
        session.shutdown()
        warnings = [
            r
            for r in read_jsonl(jsonl)
            if "could not record" in str(r.get("message", r))
        ]
        assert warnings == []


NO_THREAD_PROGRAM = """
import multiprocessing, sys, threading
import mptrace
from stdlib_workers import keep_unraisable, report_threads

def refuse(*args, **kwargs):
    raise RuntimeError("can't create new thread at interpreter shutdown")

if __name__ == "__main__":
    with mptrace.init(exporters=["jsonl:" + sys.argv[2]]):
        ctx = multiprocessing.get_context(sys.argv[1])
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=report_threads, args=(w,))
        sys.unraisablehook = keep_unraisable
        name = "_start_joinable_thread" if sys.version_info >= (3, 13) else "_start_new_thread"
        real = getattr(threading, name)
        setattr(threading, name, refuse)
        try:
            p.start()
        finally:
            setattr(threading, name, real)
        w.close()
        assert r.poll(60)
        print(r.recv())
        p.join(60)
"""


class TestNoThreadAtAFork:
    def test_a_child_starts_with_no_thread_made_for_it(self, start_method, tmp_path):
        """test_python_finalization_error: with thread creation failing (as at
        interpreter shutdown), a child starts without an error of mptrace's in
        a fork hook, and with no thread but its main one.

        In a program of its own, as CPython's test: an SDK ``TracerProvider``
        that another test made lives on (the SDK registers its ``shutdown``
        with ``atexit``), and its own fork hook would be what fails here.
        """
        script = tmp_path / "prog.py"
        script.write_text(NO_THREAD_PROGRAM)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        done = subprocess.run(
            [sys.executable, str(script), start_method, str(tmp_path / "run.jsonl")],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        unraisable, threads = ast.literal_eval(done.stdout.strip())
        assert unraisable == []
        assert threads == ["MainThread"]
