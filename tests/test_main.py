"""main.py: flags -> Config."""

from __future__ import annotations

import pytest

import main
from atari_dqn.config import ConfigError


def flags(*args: str) -> dict:
    return vars(main.build_parser().parse_args(list(args)))


def test_the_default_run_folder_is_under_rewards_and_named_after_the_game():
    config = main.config_from_flags(flags("--env", "ALE/Pong-v5", "--seed", "3"))
    assert config.out_dir.startswith("rewards/Pong-seed3-")
    assert main.config_from_flags(flags("--env", "pong")).out_dir.startswith("rewards/Pong-seed0-")


def test_an_unknown_game_is_refused_where_flags_become_a_config():
    with pytest.raises(ConfigError, match="unknown Atari game"):
        main.config_from_flags(flags("--env", "NoSuchGame", "--out", "x"))


def test_integer_flags_accept_scientific_and_underscored_forms():
    assert main.config_from_flags(flags("--steps", "1e3", "--out", "x")).total_steps == 1000
    assert main.config_from_flags(flags("--steps", "2_000", "--out", "x")).total_steps == 2000
