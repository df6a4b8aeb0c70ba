"""TrainEnvs (N training games at once) against the single-env path it must reproduce exactly."""

import numpy as np
import pytest

from atari_dqn import env as envs

GAME = "Breakout"
FIRE = 1  # Breakout's actions: NOOP, FIRE, RIGHT, LEFT


def random_actions(rng, steps, n):
    """Random Breakout actions, FIRE often so that the ball is relaunched and lives are lost."""
    actions = rng.integers(4, size=(steps, n))
    actions[rng.random((steps, n)) < 0.3] = FIRE
    return actions


def play_alone(seed, actions):
    """What the single-env training loop sees: one make_train_env, reset(seed=seed), stepped with
    actions, reset (without a seed) when an episode ends. One tuple per step."""
    env = envs.make_train_env(GAME)
    first, _ = env.reset(seed=seed)
    rows = []
    for action in actions:
        frame, reward, terminated, truncated, info = env.step(int(action))
        frame = frame.copy()  # the reference keeps its own copy, whatever the env reuses
        reset_frame = env.reset()[0].copy() if terminated or truncated else frame
        rows.append((frame, reward, terminated, truncated, info["game_over"], reset_frame))
    env.close()
    return first, rows


def play_vector(vector, actions):
    """Step a TrainEnvs with actions (steps, N); per row, the same tuples as play_alone."""
    per_row = [[] for _ in range(len(vector))]
    for step_actions in actions:
        result = vector.step(step_actions)
        assert result.frames.shape == result.reset_frames.shape == (len(vector), 84, 84)
        assert result.frames.dtype == np.uint8 and result.rewards.dtype == np.float64
        for i, row in enumerate(per_row):
            row.append((result.frames[i], result.rewards[i], result.terminated[i],
                        result.truncated[i], result.game_over[i], result.reset_frames[i]))
    return per_row


def assert_same_rows(got, expected):
    assert len(got) == len(expected)
    for step, (g, e) in enumerate(zip(got, expected)):
        assert np.array_equal(g[0], e[0]), f"frame differs at step {step}"
        assert g[1] == e[1] and (g[2], g[3], g[4]) == (e[2], e[3], e[4]), f"step {step}"
        assert np.array_equal(g[5], e[5]), f"reset frame differs at step {step}"


def test_seeds_keep_the_run_seed_for_game_0_and_are_distinct():
    seeds = envs.game_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert envs.game_seeds(7, 4) == seeds and envs.game_seeds(7, 2) == seeds[:2]
    assert envs.game_seeds(8, 4)[1:] != seeds[1:]
    with pytest.raises(ValueError, match="seed >= 0"):
        envs.game_seeds(-1, 2)


def test_every_row_is_a_lone_train_env_with_its_seed():
    n, seed = 3, 11
    actions = random_actions(np.random.default_rng(0), 300, n)
    vector = envs.TrainEnvs(GAME, n, seed)
    first = vector.reset()
    got = play_vector(vector, actions)
    vector.close()
    ended = game_overs = 0
    for i, game_seed in enumerate(envs.game_seeds(seed, n)):
        expected_first, expected = play_alone(game_seed, actions[:, i])
        assert np.array_equal(first[i], expected_first)
        assert_same_rows(got[i], expected)
        ended += sum(bool(row[2] or row[3]) for row in expected)
        game_overs += sum(bool(row[4]) for row in expected)
    # the stretch covers lost lives (soft resets) and whole games ending (real resets)
    assert ended > game_overs > 0


def test_one_env_is_todays_single_env():
    actions = random_actions(np.random.default_rng(1), 250, 1)
    vector = envs.TrainEnvs(GAME, 1, 3)
    first = vector.reset()
    expected_first, expected = play_alone(3, actions[:, 0])
    assert np.array_equal(first[0], expected_first)
    assert_same_rows(play_vector(vector, actions)[0], expected)


def test_snapshot_restore_continues_every_game_exactly():
    n, seed = 2, 5
    rng = np.random.default_rng(2)
    vector = envs.TrainEnvs(GAME, n, seed)
    vector.reset()
    play_vector(vector, random_actions(rng, 100, n))
    snaps = vector.snapshot()
    later = random_actions(rng, 200, n)
    expected = play_vector(vector, later)
    copy = envs.TrainEnvs(GAME, n, seed=99)  # the seed does not matter: restore overwrites all
    copy.restore(snaps)
    got = play_vector(copy, later)
    assert any(row[2] or row[3] for rows in expected for row in rows)  # crosses an episode end
    for i in range(n):
        assert_same_rows(got[i], expected[i])


def test_bad_actions_and_snapshot_counts_are_value_errors():
    vector = envs.TrainEnvs(GAME, 2, 0)
    vector.reset()
    for bad in (np.array([0]), np.array([0, 1, 2]), np.array([0.0, 1.0]), np.array([0, 4]),
                np.array([-1, 0]), np.array([[0, 1]])):
        with pytest.raises(ValueError, match="TrainEnvs.step"):
            vector.step(bad)
    with pytest.raises(ValueError, match="2 games"):
        vector.restore(vector.snapshot()[:1])


def test_games_in_child_processes_equal_games_in_this_process():
    n, seed = 3, 4
    rng = np.random.default_rng(3)
    first, detour, later = (random_actions(rng, 100, n) for _ in range(3))
    local = envs.TrainEnvs(GAME, n, seed)
    spread = envs.TrainEnvs(GAME, n, seed, processes=2)  # rows 0-1 in one process, 2 in another
    fresh = envs.TrainEnvs(GAME, n, seed=99)
    try:
        assert np.array_equal(local.reset(), spread.reset())
        expected, got = play_vector(local, first), play_vector(spread, first)
        for i in range(n):
            assert_same_rows(got[i], expected[i])
        # snapshots move both ways: from the processes to this one, and back after a detour
        fresh.restore(spread.snapshot())
        local_snaps = local.snapshot()
        play_vector(spread, detour)
        spread.restore(local_snaps)
        expected = play_vector(local, later)
        for other in (spread, fresh):
            got = play_vector(other, later)
            for i in range(n):
                assert_same_rows(got[i], expected[i])
        with pytest.raises(ValueError, match="TrainEnvs.step"):
            spread.step(np.array([0, 1, 9]))
    finally:
        for vector in (local, spread, fresh):
            vector.close()
    assert all(not part.process.is_alive() for part in spread._parts)


def play_eval_alone(seed, actions, max_steps):
    """A lone make_eval_env reset(seed=seed), played with actions until its game ends."""
    env = envs.make_eval_env(GAME, max_steps=max_steps)
    first, _ = env.reset(seed=seed)
    rows = []
    for action in actions:
        frame, reward, terminated, truncated, _ = env.step(int(action))
        rows.append((frame.copy(), reward, terminated, truncated))
        if terminated or truncated:
            break
    env.close()
    return first, rows


def test_eval_games_are_lone_eval_envs_and_stop_at_their_end():
    n, seed, max_steps = 3, 21, 400
    actions = random_actions(np.random.default_rng(4), max_steps, n)
    games = envs.EvalEnvs(GAME, n, max_steps=max_steps)
    first = games.reset(seed)
    got = [[] for _ in range(n)]
    last_frames = first.copy()
    for step_actions in actions:
        if not games.playing.any():
            break
        playing = games.playing.copy()
        result = games.step(step_actions)
        for i in range(n):
            if playing[i]:
                got[i].append((result.frames[i], result.rewards[i], result.terminated[i],
                               result.truncated[i]))
                assert result.game_over[i] == (result.terminated[i] or result.truncated[i])
                last_frames[i] = result.frames[i]
            else:  # an ended game is not stepped again
                assert np.array_equal(result.frames[i], last_frames[i])
                assert result.rewards[i] == 0 and not result.game_over[i]
    assert not games.playing.any()
    lengths = set()
    for i, game_seed in enumerate(envs.game_seeds(seed, n)):
        expected_first, expected = play_eval_alone(game_seed, actions[:, i], max_steps)
        assert np.array_equal(first[i], expected_first)
        assert len(got[i]) == len(expected)
        for g, e in zip(got[i], expected):
            assert np.array_equal(g[0], e[0]) and (g[1], g[2], g[3]) == e[1:]
        lengths.add(len(expected))
    assert len(lengths) > 1  # games ended at different steps
    with pytest.raises(ValueError, match="EvalEnvs.step"):
        games.step(np.array([0, 1]))
    games.close()


def test_eval_games_render_each_screen():
    games = envs.EvalEnvs(GAME, 2, max_steps=10, render=True)
    games.reset(0)
    assert games.render(1).shape == (210, 160, 3)
    games.close()
    with pytest.raises(ValueError, match="at least one game"):
        envs.EvalEnvs(GAME, 0, max_steps=10)
