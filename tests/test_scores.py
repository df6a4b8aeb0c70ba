"""atari_dqn.scores: the human/random table, the named sets and Dopamine's returns file."""

import csv

import gymnasium as gym
import pytest

import atari_dqn.envs.atari  # noqa: F401 (registers ALE's games with gymnasium)
from atari_dqn import scores


def test_human_normalized_is_zero_at_random_and_one_at_human():
    # Breakout: random 1.7, human 30.5 (Mnih et al. 2015): 16.1 is half way.
    assert scores.human_normalized("Breakout", 1.7) == 0.0
    assert scores.human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert scores.human_normalized("Breakout", 16.1) == pytest.approx(0.5)
    # Pong's random score is negative: (0 - -20.7) / (14.6 - -20.7)
    assert scores.human_normalized("Pong", 0.0) == pytest.approx(20.7 / 35.3)
    with pytest.raises(KeyError):
        scores.human_normalized("Tetris", 1.0)  # not one of the 57


def test_the_table_has_the_57_games_each_an_ale_game_with_human_above_random():
    assert len(scores.RANDOM_HUMAN) == 57
    for game, (random, human) in scores.RANDOM_HUMAN.items():
        assert f"ALE/{game}-v5" in gym.registry, game
        assert human > random, game


def test_named_sets_hold_known_games():
    assert len(scores.GAME_SETS["dqn5"]) == 5 and len(scores.GAME_SETS["atari5"]) == 5
    assert len(scores.GAME_SETS["atari26"]) == 26
    for games in scores.GAME_SETS.values():
        assert len(set(games)) == len(games)
        assert set(games) <= set(scores.RANDOM_HUMAN)


def test_dopamine_returns_cover_every_named_game_with_both_networks():
    table = scores.dopamine_returns()
    games = {game for games in scores.GAME_SETS.values() for game in games}
    assert {game for game, _, _ in table} == games
    for game in games:
        for network in ("nature", "impala"):
            agents = {agent for g, n, agent in table if (g, n) == (game, network)}
            assert agents == {"DQN", "C51", "Rainbow", "IQN", "QR-DQN"}, (game, network)
    breakout_dqn = table["Breakout", "nature", "DQN"]
    assert sorted(breakout_dqn) == list(range(10)) and len(breakout_dqn[0]) == 5


def test_dopamine_returns_refuses_a_file_with_runs_out_of_order(tmp_path):
    path = tmp_path / "returns.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["game", "network", "agent", "run", "iteration", "return"])
        writer.writerow(["Pong", "nature", "DQN", 1, 0, "-20.0"])
    with pytest.raises(ValueError, match="out of order"):
        scores.dopamine_returns(path)
