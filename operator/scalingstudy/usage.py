"""How every `scalingstudy` command refuses bad input: one line on stderr naming what is
wrong, exit status 2, never a traceback. A leaf module: the command modules (`cli.py`,
`cluster/command.py`) both import it and neither imports the other for it."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    print(f"scalingstudy: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)
