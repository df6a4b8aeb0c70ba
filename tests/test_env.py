import numpy as np
import pytest

from atari_dqn.config import ConfigError
from atari_dqn.envs import atari as envs


@pytest.mark.parametrize("name, env_id", [
    ("Breakout", "BreakoutNoFrameskip-v4"), ("pong", "PongNoFrameskip-v4"),
    ("BreakoutNoFrameskip-v4", "BreakoutNoFrameskip-v4"), ("ALE/Breakout-v5", "ALE/Breakout-v5"),
])
def test_resolve_env_id(name, env_id):
    assert envs.resolve_env_id(name) == env_id


def test_unknown_game_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown Atari game"):
        envs.resolve_env_id("Breakoutt")


def test_learning_reward_is_the_sign():
    assert [envs.learning_reward(r) for r in (-7.0, 0.0, 4.0)] == [-1.0, 0.0, 1.0]
    rows = envs.learning_rewards(np.array([-7.0, 0.0, 4.0]))
    assert rows.dtype == np.float32 and rows.tolist() == [-1.0, 0.0, 1.0]


def test_v5_ids_are_played_deepmind_style():
    env = envs.make_train_env("ALE/Breakout-v5")
    ale = env.unwrapped.ale
    assert env.unwrapped._frameskip == 1
    assert ale.getFloat("repeat_action_probability") == 0.0


def test_train_env_observation_and_fire_on_reset():
    env = envs.make_train_env("Breakout")
    obs, info = env.reset(seed=0)
    assert obs.shape == (84, 84) and obs.dtype == np.uint8
    # no-ops (1..30 frames) then one FIRE step of 4 frames were played
    assert 1 + 4 <= info["episode_frame_number"] <= 30 + 4


def play_until_terminal(env, rng):
    for step in range(5_000):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            return step, info
    raise AssertionError("no terminal within 5,000 agent steps")


def test_a_lost_life_ends_the_learning_episode_but_not_the_game():
    env = envs.make_train_env("Breakout")
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    lives = env.unwrapped.ale.lives()
    _, info = play_until_terminal(env, rng)
    assert not info["game_over"] and env.unwrapped.ale.lives() == lives - 1
    frame_before = env.unwrapped.ale.getEpisodeFrameNumber()
    env.reset()
    # a soft reset: the game goes on (no-op + FIRE = 8 frames), it is not restarted
    assert env.unwrapped.ale.getEpisodeFrameNumber() == frame_before + 8
    assert env.unwrapped.ale.lives() == lives - 1


def test_eval_env_plays_whole_games_of_single_frames():
    env = envs.make_eval_env("Breakout", max_steps=100_000 // 4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84) and obs.dtype == np.uint8  # stacked by evaluate(), not here
    rng = np.random.default_rng(0)
    fire = env.unwrapped.get_action_meanings().index("FIRE")
    terminated = truncated = False
    while not (terminated or truncated):
        # FIRE often so that the ball is relaunched after each lost life
        action = fire if rng.random() < 0.3 else int(rng.integers(4))
        obs, _, terminated, truncated, _ = env.step(action)
    assert terminated and env.unwrapped.ale.lives() == 0


def test_eval_games_are_capped_in_agent_steps():
    env = envs.make_eval_env("Breakout", max_steps=50)
    env.reset(seed=0)
    for step in range(1, 51):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            break
    assert truncated and step <= 50


def test_snapshot_restore_continues_the_episode_exactly():
    rng = np.random.default_rng(0)
    env = envs.make_train_env("Breakout")
    env.reset(seed=5)
    for _ in range(123):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated or truncated:
            env.reset()
    snap = envs.snapshot(env)
    actions = rng.integers(4, size=600)

    def play(e):
        out = []
        for a in actions:
            obs, reward, terminated, truncated, info = e.step(int(a))
            out.append((obs.copy(), reward, terminated, truncated, info["lives"]))
            if terminated or truncated:
                out.append((e.reset()[0].copy(),))
        return out

    expected = play(env)
    copy = envs.make_train_env("Breakout")
    envs.restore(copy, snap)
    got = play(copy)
    assert any(len(x) == 1 for x in expected)  # the stretch crosses an episode boundary
    assert len(got) == len(expected)
    for x, y in zip(expected, got):
        assert np.array_equal(x[0], y[0]) and x[1:] == y[1:]
