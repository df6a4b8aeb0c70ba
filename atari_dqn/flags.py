"""main.py's command line: its flags, made from Config's fields, and the flags typed -> a Config.
Here rather than in main.py so that the suite (suite.py), which checks each run's flags as main.py
will, imports them from the package instead of loading main.py."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from atari_dqn.cli import OneLineParser
from atari_dqn.config import (Config, ConfigError, default_run_dir, flag_of,
                              resume_may_change_flags)


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
    parser = OneLineParser(
        prog="main.py",
        description="Train a Nature-CNN DQN on an Atari game (DeepMind preprocessing). "
                    "1 agent step = 4 emulator frames; counts are agent steps unless stated.")
    for f in dataclasses.fields(Config):
        if f.metadata.get("recorded"):  # facts a run records (its offline dataset), not flags
            continue
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
            parser.add_argument(f.metadata["flag"], action=argparse.BooleanOptionalAction,
                                **kwargs)
        else:
            kind = {"int": integer_flag, "float": float, "str": str}[f.type]
            parser.add_argument(f.metadata["flag"], type=kind, choices=f.metadata.get("choices"),
                                metavar=metavar, **kwargs)
    return parser


def config_from_flags(given: dict[str, Any]) -> Config:
    """The flags typed -> a Config: a resumed run's saved settings, or a new run's preset with
    the flags on top. Game names are resolved here (config.py knows no games): an unknown game
    is an error, and the default run folder is named after the game."""
    if given.get("resume"):
        from atari_dqn.run.checkpoint import resume_config

        return resume_config(given["resume"], given)
    if given.get("offline"):
        from atari_dqn.modes.offline import offline_config

        return offline_config(given)
    for name in ("loss", "cql_alpha", "total_updates"):  # atari_dqn.modes.offline.OFFLINE_ONLY
        if name in given:
            raise ConfigError(f"{flag_of(name)} is for offline training: give --offline DATA")
    config = Config.from_flags(given)  # checked before torch is imported: fast errors
    from atari_dqn.envs.atari import game_name  # raises ConfigError for an unknown game

    game = game_name(config.env_id)
    if not config.out_dir:
        config = dataclasses.replace(config, out_dir=default_run_dir(game, config.seed))
    return config
