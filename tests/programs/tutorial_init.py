"""tutorial.py with ``mptrace.init()`` added; exporters from MPTRACE_EXPORTERS."""

import sys

import tutorial

import mptrace

if __name__ == "__main__":
    with mptrace.init():
        tutorial.main(sys.argv[1])
