"""A venv with ~150 ordinary packages beside mptrace, made once into a cache.

What grows with the environment (``importlib.metadata`` walking every
``dist-info`` folder, ``.pth`` files run at each interpreter's start) only
shows in a venv that has many packages; a fresh test venv has ~30. The list
is fixed: pure-Python packages from PyPI that programs commonly have around
(their dependencies come along, a few with compiled wheels).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

PACKAGES = """
alabaster annotated-types anyio appdirs arrow asn1crypto astroid asttokens
attrs babel backoff beautifulsoup4 bleach blinker boltons boto3 botocore
cachetools cattrs certifi cfgv chardet charset-normalizer cloudpickle colorama
commonmark configparser contextlib2 cssselect decorator defusedxml deprecation
dill distlib distro dnspython docopt docutils email-validator et-xmlfile
executing fastjsonschema filelock fire flask fsspec future gitdb gitpython
google-auth h11 html5lib httpcore httpx humanize hyperframe idna imagesize
inflect inflection iniconfig isodate isort itsdangerous jaraco.classes
jedi jinja2 jmespath jsonpatch jsonpointer jsonschema jsonschema-specifications
lazy-object-proxy mako markdown markdown-it-py marshmallow mccabe mdurl
mistune more-itertools mpmath multipledispatch mypy-extensions natsort
nest-asyncio networkx nodeenv oauthlib openpyxl packaging paramiko parso
pathspec pexpect pickleshare platformdirs pluggy ply prettytable prompt-toolkit
ptyprocess pure-eval py pyasn1 pyasn1-modules pycparser pyflakes pygments pyjwt
pylint pyparsing pyproject-hooks pyserial python-dateutil python-dotenv
python-json-logger pytz referencing requests requests-oauthlib
requests-toolbelt retry rfc3339-validator rfc3986 rich-click rsa s3transfer
scramp semver shellingham six smmap sniffio snowballstemmer sortedcontainers
soupsieve sphinx sphinxcontrib-applehelp sphinxcontrib-devhelp
sphinxcontrib-htmlhelp sphinxcontrib-jsmath sphinxcontrib-qthelp
sphinxcontrib-serializinghtml sqlparse stack-data sympy tabulate tenacity
termcolor text-unidecode texttable toml tomli tomlkit toolz tqdm traitlets
typeguard typer typing-extensions tzdata tzlocal uritemplate validators
virtualenv wcwidth webencodings websocket-client werkzeug xmltodict zipp
""".split()

#: Where the venv is kept between runs, named after the list it was made from.
CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
    "mptrace-benchmarks",
)


def default_path() -> str:
    digest = hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12]
    return os.path.join(CACHE, f"big-env-{digest}")


def python_of(path: str) -> str:
    return os.path.join(path, "bin", "python")


def ensure(path: str, repo: str) -> float | None:
    """Make the venv at *path* unless it is there; seconds it took, or None.

    A venv made from another checkout is pointed at *repo*'s code: its
    editable install would otherwise measure that checkout's mptrace.
    """
    if os.path.exists(os.path.join(path, "done")):
        if _installed_from(path) != os.path.join(repo, "src"):
            pip = [python_of(path), "-m", "pip", "install", "-q", "--no-deps"]
            subprocess.run([*pip, "-e", repo], check=True)
        return None
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--clear", path], check=True)
    pip = [python_of(path), "-m", "pip", "install", "-q", "--prefer-binary"]
    subprocess.run([*pip, *PACKAGES], check=True)
    subprocess.run([*pip, "-e", repo], check=True)
    with open(os.path.join(path, "done"), "w") as f:
        f.write(" ".join(PACKAGES) + "\n")
    return time.perf_counter() - t0


def _installed_from(path: str) -> str | None:
    """The source folder of mptrace's editable install in the venv at *path*."""
    code = (
        "import mptrace, os; print(os.path.dirname(os.path.dirname(mptrace.__file__)))"
    )
    out = subprocess.run([python_of(path), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or None


def count_packages(python: str) -> int:
    code = "import importlib.metadata as m; print(len(list(m.distributions())))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)
