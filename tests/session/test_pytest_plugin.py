"""The pytest plugin, used as a user's test suite uses it: through its fixture."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from workers import log_tagged, tr_square

import mptrace

log = logging.getLogger("tests.plugin")


def test_the_plugin_is_a_pytest11_entry_point():
    """pytest finds the plugin without a conftest line."""
    names = {ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert "mptrace.pytest_plugin" in names


class TestFixture:
    def test_every_processs_records_and_spans_as_dicts(
        self, mptrace_session, start_method
    ):
        """Records of the parent, a child and pool tasks, and their spans."""
        log.info("from the test")
        ctx = mptrace.get_context(start_method)
        p = ctx.Process(target=log_tagged, args=("child",))
        p.start()
        p.join(60)
        with ctx.Pool(1) as pool:
            pool.map(tr_square, range(2))
        assert mptrace_session.records(event="from the test")
        assert mptrace_session.records(tag="child")[0]["pid"] == p.pid
        assert len(mptrace_session.records(event="squaring")) == 2
        assert mptrace_session.spans("task workers.tr_square")
        assert {e["transition"] for e in mptrace_session.lifecycle()} >= {
            "started",
            "exited",
        }

    @pytest.mark.mptrace(level="DEBUG")
    def test_the_marker_gives_init_its_arguments(self, mptrace_session):
        """@pytest.mark.mptrace(level="DEBUG"): debug records arrive."""
        log.debug("a debug line")
        assert mptrace_session.records(event="a debug line", level="debug")

    def test_a_childs_record_reaches_caplog(
        self, mptrace_session, caplog, start_method
    ):
        """to_caplog(caplog): caplog sees the child's record, with its pid and name."""
        p = mptrace.get_context(start_method).Process(
            target=log_tagged, args=("for caplog",)
        )
        p.start()
        p.join(60)
        assert mptrace_session.to_caplog(caplog) >= 1
        (record,) = [r for r in caplog.records if getattr(r, "tag", "") == "for caplog"]
        assert record.process == p.pid and record.name == "tests.worker"
        assert record.levelno == logging.INFO and record.getMessage() == "tagged"
        assert mptrace_session.to_caplog(caplog) == 0  # each record once
