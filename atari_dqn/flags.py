"""main.py's command line: its flags, made from Config's fields, and the flags typed -> a Config.
Here rather than in main.py so that the suite (suite.py), which checks each run's flags as main.py
will, imports them from the package instead of loading main.py."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from atari_dqn.cli import OneLineParser
from atari_dqn.config import Config, default_run_dir, resume_may_change_flags, sections


def integer_flag(text: str) -> int:
    """An integer, also written as 1e6 or 500_000."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The flags, one per Config field, listed in --help by Config's sections."""
    parser = OneLineParser(
        prog="main.py",
        description="Train a DQN on an Atari game, played as --protocol says. "
                    "1 agent step = 4 emulator frames; counts are agent steps unless stated.")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for title, names in sections().items():
        group = parser.add_argument_group(title)
        for name in names:
            if not fields[name].metadata.get("recorded"):  # facts a run records, not flags
                _add_flag(group, fields[name])
    return parser


def _add_flag(group: Any, f: dataclasses.Field) -> None:
    help_text = f"{f.metadata['doc']} (default: {f.default!r})"
    if f.name == "resume":  # made from the tuple itself, so that it cannot drift from it
        help_text = (f"{f.metadata['doc']}; other flags must match the run's, except "
                     f"{', '.join(resume_may_change_flags())} (--out only naming the run's "
                     f"folder) (default: {f.default!r})")
    # SUPPRESS: only the flags actually typed reach Config, so a resume can tell them apart.
    kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
    metavar = (None if "choices" in f.metadata
               else f.metadata["flag"].lstrip("-").upper().replace("-", "_"))
    if f.type == "bool":
        group.add_argument(f.metadata["flag"], action=argparse.BooleanOptionalAction, **kwargs)
    else:
        kind = {"int": integer_flag, "float": float, "str": str}[f.type]
        group.add_argument(f.metadata["flag"], type=kind, choices=f.metadata.get("choices"),
                           metavar=metavar, **kwargs)


def config_from_flags(given: dict[str, Any]) -> Config:
    """The flags typed -> a Config: a resumed run's saved settings, or a new run's preset with
    the flags on top (Config.from_flags checks them all). Game names are resolved here
    (config.py knows no games): an unknown game is an error, and the default run folder is named
    after the game (and an offline run's loss)."""
    if given.get("resume"):
        from atari_dqn.run.checkpoint import resume_config

        return resume_config(given["resume"], given)
    config = Config.from_flags(given)  # checked before torch is imported: fast errors
    from atari_dqn.envs.atari import game_name  # raises ConfigError for an unknown game

    game = game_name(config.env_id)
    if config.offline:
        game = f"{game}-offline-{config.loss}"
    if not config.out_dir:
        config = dataclasses.replace(config, out_dir=default_run_dir(game, config.seed))
    return config
