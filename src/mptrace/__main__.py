"""``python -m mptrace``: the ``mptrace`` command."""

from __future__ import annotations

from mptrace._cli.main import main

if __name__ == "__main__":
    main(prog_name="mptrace")
