"""The command lines' shared parser: a usage error is one line and exit status 2, as every other
error of main.py, play and dataset is (argparse itself would print its whole usage first)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        program = self.prog.split()[0]  # a subcommand's parser is "<program> <subcommand>"
        print(f"{program}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def run_tool(main: Callable[[], int]) -> NoReturn:
    """Run a tool's main() as a program and exit with its status. Output piped into a reader that
    stops early (`| head`) ends the tool quietly, as Unix tools end, not with a BrokenPipeError
    traceback: SIGPIPE gets its default action back (Python ignores it). Not for main.py, whose
    trainer must outlive a closed pipe long enough to write its checkpoint."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
