"""Repeated records: folded on the console, all kept (or rate-limited) in JSON lines.

Four processes log 2,500 warnings each from one template. The console
prints a few lines whose counts add up to 10,000; the JSON-lines file has
every record (with ``console?repeats=on``; without it, the console prints
all 10,000). With ``rate=noisy:100`` and every record stamped in the same
second, the file keeps exactly 100 and the end says the other 9,900.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_jsonl

PROCESSES = 4
EACH = 2_500
TOTAL = PROCESSES * EACH
SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import mptrace

    # The terminal is the console exporter's alone: no last resort printing.
    logging.getLogger().addHandler(logging.NullHandler())

    class SameSecond(logging.Filter):
        # Every record in one second of its own time: the rate's count is exact.
        def filter(self, record):
            record.created = 1_800_000_000.5
            return True

    def child(fixed):
        log = logging.getLogger("noisy")
        if fixed:
            log.addFilter(SameSecond())
        for i in range({each}):
            log.warning("disk %s is full", i)

    if __name__ == "__main__":
        method, jsonl, console, fixed = sys.argv[1:5]
        with mptrace.init(exporters=[console, jsonl], level="INFO"):
            logging.getLogger("calm").warning("once, %s", "alone")
            ctx = mptrace.get_context(method)
            procs = [ctx.Process(target=child, args=(fixed == "1",))
                     for _ in range({processes})]
            for p in procs:
                p.start()
            for p in procs:
                p.join(120)
            logging.getLogger("calm").warning("after them")
    """
).format(each=EACH, processes=PROCESSES)
REPEATED = re.compile(r'"disk %s is full" repeated ([\d,]+) times? in (\d+) process')


def _run(tmp_path: Path, method: str, jsonl: str, console: str, fixed: bool) -> str:
    script = tmp_path / "noisy.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), method, jsonl, console, "1" if fixed else "0"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


class TestConsoleFolds:
    def test_ten_thousand_alike_print_as_a_few_lines_with_their_count(
        self, tmp_path, start_method
    ):
        """A few lines on the console, their counts adding to 10,000; the file has all."""
        jsonl = tmp_path / "run.jsonl"
        err = _run(
            tmp_path, start_method, f"jsonl:{jsonl}", "console?repeats=on", fixed=False
        )
        shown = [ln for ln in err.splitlines() if "disk " in ln and " is full" in ln]
        repeats = [REPEATED.search(ln) for ln in shown]
        counted = sum(int(m.group(1).replace(",", "")) for m in repeats if m)
        first = [ln for ln, m in zip(shown, repeats, strict=True) if m is None]
        assert len(shown) <= 10, "\n".join(shown)
        assert len(first) + counted == TOTAL, "\n".join(shown)
        assert any(m and int(m.group(2)) == PROCESSES for m in repeats), shown
        assert "once, alone" in err and "after them" in err  # others still print
        noisy = [e for e in read_jsonl(jsonl) if e.get("logger") == "noisy"]
        assert len(noisy) == TOTAL
        assert {e["template"] for e in noisy} == {"disk %s is full"}

    def test_without_repeats_every_record_prints(self, tmp_path, start_method):
        """Folding is asked for: a plain ``console`` prints every record."""
        jsonl = tmp_path / "run.jsonl"
        err = _run(tmp_path, start_method, f"jsonl:{jsonl}", "console", fixed=False)
        shown = [ln for ln in err.splitlines() if "disk " in ln and " is full" in ln]
        assert len(shown) == TOTAL and not REPEATED.search(err)


class TestRateLimit:
    def test_the_file_keeps_the_rate_and_the_end_says_the_rest(
        self, tmp_path, start_method
    ):
        """``rate=noisy:100`` in one second: 100 written, 9,900 said dropped."""
        jsonl = tmp_path / "run.jsonl"
        target = f"jsonl:{jsonl}?rate=noisy:100"
        err = _run(tmp_path, start_method, target, "console?level=error", fixed=True)
        events = read_jsonl(jsonl)
        assert len([e for e in events if e.get("logger") == "noisy"]) == 100
        assert len([e for e in events if e.get("logger") == "calm"]) == 2
        dropped = TOTAL - 100
        assert f"{dropped} records over the rate limit (noisy {dropped:,})" in err


@pytest.mark.parametrize(
    "query",
    ["max_rate=0", "max_rate=x", "rate=noisy", "rate=:5", "rate=a:1&rate=b:2"],
)
def test_a_bad_rate_fails_at_init_and_says_what_is_allowed(tmp_path, query):
    """A rate that is not a positive number per logger fails at once."""
    import mptrace
    from mptrace.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_rate is a number"):
        mptrace.init(exporters=[f"jsonl:{tmp_path / 'r.jsonl'}?{query}"])


@pytest.mark.parametrize("value", ["-1", "x", "inf", "nan"])
def test_a_bad_repeats_fails_at_init(value):
    """``repeats`` is seconds, 0 or more."""
    import mptrace
    from mptrace.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="repeats is the seconds"):
        mptrace.init(exporters=[f"console?repeats={value}"])
