"""A pipeline of Python programs: run it with ``mptrace run``.

mptrace run examples/stages.py

Each stage is a separate program (``stage.py``), started with ``subprocess``:
the first directly, the second through a shell. Neither knows of mptrace;
both join the run, with their pools, records and exit codes.
"""

import shlex
import subprocess
import sys
from pathlib import Path

STAGE = str(Path(__file__).resolve().parent / "stage.py")

if __name__ == "__main__":
    extract = subprocess.run([sys.executable, STAGE, "extract", "0"])
    load = subprocess.run(
        f"{shlex.quote(sys.executable)} {shlex.quote(STAGE)} load 3", shell=True
    )
    print("exit codes:", extract.returncode, load.returncode)
