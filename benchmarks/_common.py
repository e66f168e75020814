"""What every benchmark script prints the same way: the machine, and targets."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Iterable


def positive_int(text: str) -> int:
    """argparse type: a positive integer, with ``_`` or ``,`` allowed as separators."""
    value = int(text.replace("_", "").replace(",", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def print_header(title: str, script: str, start_method: str) -> None:
    """The title, the command that reproduces the run, and the machine it ran on."""
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print(f"# {title}\n")
    print(f"- command: `{shlex.join(['python', script, *sys.argv[1:]])}`")
    print(f"- Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"- platform: {platform.platform()}")
    print(f"- start method: {start_method}")
    print(f"- cores: {cores} (usable by this process: {usable})")


def print_targets(results: Iterable[tuple[bool, str]]) -> None:
    """One ``PASS`` or ``MISS`` line per target."""
    print("\nTargets:\n")
    for ok, text in results:
        print(f"- {'PASS' if ok else 'MISS'}  {text}")
