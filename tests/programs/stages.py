"""A pipeline of Python stages started with subprocess, one through a shell.

Run as ``python -m mptrace run stages.py METHOD``: each stage logs, maps four
items over a Pool of METHOD, and exits with the code it is given.
"""

import shlex
import subprocess
import sys
from pathlib import Path

STAGE = str(Path(__file__).resolve().parent / "stage.py")

if __name__ == "__main__":
    method = sys.argv[1]
    first = subprocess.run([sys.executable, STAGE, "first", method, "0"])
    second = subprocess.run(
        f"{shlex.quote(sys.executable)} {shlex.quote(STAGE)} second {method} 3",
        shell=True,
    )
    print(first.returncode, second.returncode)
