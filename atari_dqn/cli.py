"""The command lines' shared parser: a usage error is one line and exit status 2, as every other
error of main.py, play and dataset is (argparse itself would print its whole usage first)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        program = self.prog.split()[0]  # a subcommand's parser is "<program> <subcommand>"
        print(f"{program}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
