"""TrainEnvs (N training games at once) against the single-env path it must reproduce exactly."""

import multiprocessing
import os
import signal

import numpy as np
import pytest
import torch

from atari_dqn.config import Config, RunError
from atari_dqn.envs import atari as envs

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


def kill(part) -> int:
    """SIGKILL a game process (a TrainEnvs part) and wait until it is gone; its pid."""
    os.kill(part.process.pid, signal.SIGKILL)
    part.process.join()
    return part.process.pid


def test_a_killed_game_process_is_restarted_and_its_games_go_on_exactly(monkeypatch):
    """The call that finds a process gone restarts it, replays its games from their seeds or
    their last snapshot (taken, restored, or every REPLAY_MAX_STEPS steps), and answers: every
    row stays a lone game's, and one line says what happened."""
    monkeypatch.setattr(envs, "REPLAY_MAX_STEPS", 40)
    n, seed = 3, 8
    rng = np.random.default_rng(5)
    lines = []
    local = envs.TrainEnvs(GAME, n, seed)
    spread = envs.TrainEnvs(GAME, n, seed, processes=2, log=lines.append)  # rows 0-1, row 2

    def play_both(steps):
        actions = random_actions(rng, steps, n)
        expected, got = play_vector(local, actions), play_vector(spread, actions)
        for i in range(n):
            assert_same_rows(got[i], expected[i])

    try:
        assert np.array_equal(local.reset(), spread.reset())
        play_both(30)
        killed = [kill(spread._parts[1])]
        play_both(25)  # replays 30 steps from the seeds; a snapshot at step 40 (15 since)
        killed.append(kill(spread._parts[0]))
        play_both(30)  # replays 15 steps from that snapshot
        spread.restore(local.snapshot())
        play_both(10)
        killed.append(kill(spread._parts[1]))
        play_both(20)  # replays 10 steps from the snapshots restored
    finally:
        local.close()
        spread.close()
    assert len(lines) == 3, lines
    for line, pid, games, replayed, since in zip(
            lines, killed, ("game 2", "games 0-1", "game 2"), (30, 15, 10),
            ("their seeds", "their last snapshot", "their last snapshot")):
        assert line.startswith(f"game process {pid} ended (killed by SIGKILL"), line
        assert f"({games} of --env-processes): restarted it" in line
        assert f"replayed {replayed} agent steps of each game from {since}" in line


def test_a_game_process_that_dies_again_when_restarted_is_one_run_error(monkeypatch):
    spread = envs.TrainEnvs(GAME, 2, 0, processes=2)
    spread.reset()
    start = envs.TrainEnvs._start

    def start_dead(self, k):  # every process started from now on is killed at once
        part = start(self, k)
        kill(part)
        return part

    monkeypatch.setattr(envs.TrainEnvs, "_start", start_dead)
    first = kill(spread._parts[0])
    with pytest.raises(RunError) as error:
        spread.step(np.array([0, 1]))
    message = str(error.value)
    assert message.startswith(f"game process {first} ended (killed by SIGKILL")
    assert "\n" not in message
    assert "the process restarted for them ended too" in message and "--resume" in message
    spread.close()
    assert not any(part.process.is_alive() for part in spread._parts)


def test_a_run_goes_on_exactly_when_a_game_process_is_killed(tmp_path, capsys):
    """train() with --env-processes: a game process killed mid-run is restarted, and the run
    ends bit for bit as the one nobody disturbed (networks, optimizer, replay memory, games)."""
    from atari_dqn.modes import one_process as training

    settings = dict(total_steps=240, learning_starts_steps=60, memory_capacity_transitions=1000,
                    batch_size=8, target_update_steps=40, eval_every_steps=120, eval_episodes=1,
                    eval_max_steps=20, seed=3, threads=1, compile=False, envs=2,
                    env_processes=2)
    training.train(Config(**settings, out_dir=str(tmp_path / "quiet")))
    killed = []

    def kill_one_at_step_100(step):
        if step >= 100 and not killed:
            child = multiprocessing.active_children()[0]  # one of this run's game processes
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            killed.append(child.pid)
        return False

    result = training.train(Config(**settings, out_dir=str(tmp_path / "killed")),
                            stop_when=kill_one_at_step_100)
    assert killed and result.steps == 240 and not result.stopped_early
    lines = [line for line in capsys.readouterr().out.splitlines() if "game process" in line]
    assert len(lines) == 1 and lines[0].startswith(f"game process {killed[0]} ended"), lines
    quiet, disturbed = (torch.load(tmp_path / run / "checkpoint.pt", weights_only=False)
                        for run in ("quiet", "killed"))
    for name in ("online", "target"):
        assert all(torch.equal(quiet["agent"][name][k], disturbed["agent"][name][k])
                   for k in quiet["agent"][name]), name
    assert quiet["env"] == disturbed["env"]
    for run in ("quiet", "killed"):
        assert (tmp_path / run / quiet["replay"]).is_file()
    assert ((tmp_path / "quiet" / quiet["replay"]).read_bytes()
            == (tmp_path / "killed" / disturbed["replay"]).read_bytes())
    scores = [[line.split()[:3] for line in (tmp_path / run / "rewards.txt").read_text()
               .splitlines()] for run in ("quiet", "killed")]
    assert scores[0] == scores[1] and len(scores[0]) == 2


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
