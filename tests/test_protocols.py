"""--protocol: deepmind plays exactly as before it existed; machado is sticky at the rate asked,
ends a learning episode only at game over, presses nothing at a reset, and saves and restores
exactly (docs/protocols.md)."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import main
from atari_dqn.config import PROTOCOL_NAMES
from atari_dqn.envs import atari as envs
from atari_dqn.envs.atari import DEEPMIND, MACHADO
from atari_dqn.scores import GAME_SETS

GOLDEN = json.loads((Path(__file__).parent / "data" / "deepmind_golden.json").read_text())
GAME = "Breakout"
NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3  # Breakout's minimal action set


def test_the_protocols_are_the_configs_choices():
    assert tuple(envs.PROTOCOLS) == PROTOCOL_NAMES
    assert envs.PROTOCOLS["deepmind"] is DEEPMIND and envs.PROTOCOLS["machado"] is MACHADO
    assert (MACHADO.sticky_action_probability, MACHADO.noop_max, MACHADO.fire_on_reset,
            MACHADO.life_loss_ends_episode) == (0.25, 0, False, False)
    assert (DEEPMIND.sticky_action_probability, DEEPMIND.noop_max, DEEPMIND.fire_on_reset,
            DEEPMIND.life_loss_ends_episode) == (0.0, 30, True, True)


# --- deepmind: exactly as before --protocol (tests/data/deepmind_golden.json) -----------------

def _digest(results: list[envs.StepResult]) -> str:
    digest = hashlib.sha256()
    for result in results:
        for name in ("frames", "rewards", "terminated", "truncated", "game_over", "reset_frames"):
            digest.update(np.ascontiguousarray(getattr(result, name)).tobytes())
    return digest.hexdigest()


def game_digests(**protocol) -> dict:
    """The golden file's "games" part, for the games made with `protocol` (none: the default, as
    the code before --protocol took no such argument; that code made the golden)."""
    train = envs.TrainEnvs(GAME, 2, 11, **protocol)
    rng = np.random.default_rng(0)
    try:
        first = train.reset()
        results = [train.step(rng.integers(train.action_count, size=2)) for _ in range(2000)]
    finally:
        train.close()
    out = {"train": _digest(results), "train_first": hashlib.sha256(first.tobytes()).hexdigest(),
           "train_game_overs": sum(int(r.game_over.sum()) for r in results),
           "train_terminals": sum(int(r.terminated.sum()) for r in results)}
    evaluation = envs.EvalEnvs(GAME, 2, max_steps=2000, **protocol)
    rng = np.random.default_rng(1)
    try:
        first = evaluation.reset(12)
        results = []
        while evaluation.playing.any():
            results.append(evaluation.step(rng.integers(evaluation.action_count, size=2)))
    finally:
        evaluation.close()
    return {**out, "eval": _digest(results),
            "eval_first": hashlib.sha256(first.tobytes()).hexdigest(), "eval_steps": len(results)}


def test_deepmind_games_are_frame_for_frame_the_ones_before_protocol_existed():
    expected = {k: v for k, v in GOLDEN["games"].items() if k != "what"}
    assert game_digests(protocol=DEEPMIND) == expected


def test_games_made_without_a_protocol_are_deepmind_s():
    for build in (envs.make_train_env, envs.make_eval_env, envs.TrainEnvs, envs.EvalEnvs):
        assert inspect.signature(build).parameters["protocol"].default is DEEPMIND


def test_a_deepmind_run_writes_the_rewards_txt_it_wrote_before_protocol_existed(tmp_path):
    # about 20 s: a learning Pong run, whose evaluations depend on every training step
    args = GOLDEN["rewards"]["command"].split()[2:]
    run = tmp_path / "run"
    assert main.main([*args[:-1], str(run), "--protocol", "deepmind"]) == 0
    assert (run / "rewards.txt").read_text() == GOLDEN["rewards"]["rewards_txt"]
    assert json.loads((run / "config.json").read_text())["protocol"] == "deepmind"


# --- machado is sticky, measured on the emulator ------------------------------------------------

PADDLE_X = 72  # Breakout's RAM: the paddle's x position
PADDLE_AIM = 150  # a point mid-court the paddle is steered back to, away from the walls


def repeat_rate(env: gym.Env, steps: int) -> tuple[int, int, int]:
    """(repeats, draws, unreadable steps) of the sticky-action draws `env` made over `steps` agent
    steps, read from the emulator alone. The steps alternate NOOP and a move towards PADDLE_AIM,
    so that each asks for another action than the last. Before each step the emulator's state is
    cloned into a plain, never sticky emulator, which plays the five things the step can be
    (k = 0..4 frames of the previously played action, then the new one), and the RAM after the
    real step says which k it was: k < 4 is k repeats and one draw that took the new action
    (k + 1 draws), k = 4 four repeats. A step whose five outcomes are not all different (an input
    the game did not read) is skipped; that is known before the step, so skipping does not
    depend on the draws and does not bias the rate."""
    plain = gym.make(env.unwrapped.spec.id, obs_type="ram", frameskip=1,
                     repeat_action_probability=0.0).unwrapped
    plain.reset(seed=0)
    ale = env.unwrapped.ale
    previous, repeats, draws, unreadable = NOOP, 0, 0, 0
    for t in range(steps):
        action = (NOOP if t % 2 == 0
                  else RIGHT if ale.getRAM()[PADDLE_X] < PADDLE_AIM else LEFT)
        state = ale.cloneState()
        outcomes = []
        for k in range(envs.FRAME_SKIP + 1):
            plain.ale.restoreState(state)
            for frame in range(envs.FRAME_SKIP):
                ram = plain.step(previous if frame < k else action)[0]
            outcomes.append(ram.tobytes())
        _, _, terminated, truncated, _ = env.step(action)
        ks = [k for k, ram in enumerate(outcomes) if ram == ale.getRAM().tobytes()]
        assert ks, f"step {t}: no frame sequence of the two actions gives the emulator's state"
        if len(set(outcomes)) == len(outcomes):
            repeats += ks[0]
            draws += ks[0] + (ks[0] < envs.FRAME_SKIP)
        else:
            unreadable += 1
        if max(ks) < envs.FRAME_SKIP:
            previous = action
        if terminated or truncated:
            env.reset()
            previous = NOOP  # neither protocol below plays an action at a real reset's end
    plain.close()
    return repeats, draws, unreadable


@pytest.mark.parametrize("protocol, make, seed, steps", [
    (MACHADO, "train", 3, 600), (MACHADO, "eval", 4, 600),
    (DEEPMIND, "train", 3, 200), (DEEPMIND, "eval", 4, 200),
], ids=["machado-train", "machado-eval", "deepmind-train", "deepmind-eval"])
def test_the_previous_action_is_played_again_at_the_rate_the_protocol_asks(protocol, make, seed,
                                                                          steps):
    env = (envs.make_train_env(GAME, protocol) if make == "train"
           else envs.make_eval_env(GAME, max_steps=10_000, protocol=protocol))
    env.reset(seed=seed)
    repeats, draws, unreadable = repeat_rate(env, steps)
    env.close()
    assert unreadable < 0.1 * steps and draws >= 0.9 * steps
    p = protocol.sticky_action_probability
    if p == 0:
        assert repeats == 0
    else:  # each draw repeats with probability p: binomial, within 4 standard errors
        assert abs(repeats / draws - p) < 4 * math.sqrt(p * (1 - p) / draws), (repeats, draws)


def test_machado_and_deepmind_games_differ_under_the_same_actions():
    trajectories = []
    for protocol in (DEEPMIND, MACHADO):
        env = envs.make_eval_env(GAME, max_steps=1000, protocol=protocol)
        env.reset(seed=0)
        trajectories.append([env.step(a)[0].copy() for a in [FIRE] + [RIGHT, LEFT] * 20])
        env.close()
    assert any(not np.array_equal(a, b) for a, b in zip(*trajectories))


# --- machado: what an episode is, what a reset does --------------------------------------------

def test_machado_ends_a_learning_episode_only_at_game_over_and_deepmind_at_each_lost_life():
    rng = np.random.default_rng(0)
    for protocol in (MACHADO, DEEPMIND):
        env = envs.make_train_env(GAME, protocol)
        env.reset(seed=1)
        lives, lost = env.unwrapped.ale.lives(), 0
        for _ in range(5_000):
            action = FIRE if rng.random() < 0.3 else int(rng.integers(4))
            _, _, terminated, truncated, info = env.step(action)
            lost += env.unwrapped.ale.lives() < lives
            lives = env.unwrapped.ale.lives()
            if terminated or truncated:
                break
        assert terminated and not truncated
        if protocol is MACHADO:  # every life lost on the way, the episode is the whole game
            assert lost == 5 and lives == 0 and info["game_over"]
        else:
            assert lost == 1 and lives == 4 and not info["game_over"]
        env.close()


@pytest.mark.parametrize("make", ["train", "eval"])
def test_a_machado_reset_plays_no_no_ops_and_no_fire(make):
    for seed in range(3):
        env = (envs.make_train_env(GAME, MACHADO) if make == "train"
               else envs.make_eval_env(GAME, max_steps=100, protocol=MACHADO))
        _, info = env.reset(seed=seed)
        assert info["episode_frame_number"] == 0  # deepmind: 1..30 no-ops and 4 frames of FIRE
        env.close()


def test_a_machado_game_is_cut_at_its_cap_in_agent_steps_exactly():
    # No no-ops or FIRE at the reset: ALE's frame count starts at 0 and moves 4 frames a step, so
    # its cap (TRAIN_MAX_FRAMES for training games) is 27,000 agent steps, and an evaluation
    # game's max_steps; shown here on a short evaluation cap (no FIRE: nothing else ends it).
    train = envs.make_train_env(GAME, MACHADO)
    train.reset(seed=0)
    assert train.unwrapped.ale.getInt("max_num_frames_per_episode") == envs.TRAIN_MAX_FRAMES
    assert envs.TRAIN_MAX_FRAMES // envs.FRAME_SKIP == 27_000
    assert [train.step(NOOP)[4]["episode_frame_number"] for _ in range(3)] == [4, 8, 12]
    train.close()
    evaluation = envs.make_eval_env(GAME, max_steps=50, protocol=MACHADO)
    evaluation.reset(seed=0)
    for step in range(1, 100):
        _, _, terminated, truncated, _ = evaluation.step(NOOP)
        if terminated or truncated:
            break
    assert (step, truncated, terminated) == (50, True, False)
    evaluation.close()


# --- machado: exact save and restore --------------------------------------------------------------

def _play(env: gym.Env, actions) -> list[tuple]:
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(int(action))
        out.append((obs.tobytes(), env.unwrapped.ale.getRAM().tobytes(), reward, terminated,
                    truncated, info["game_over"]))
        if terminated or truncated:
            out.append((env.reset()[0].tobytes(),))
    return out


def test_a_machado_game_restored_from_a_snapshot_goes_on_exactly():
    """The sticky draws and the action played last (which ALE's cloneState would not save) are in
    the snapshot: a copy restored from it plays on exactly. The same copy with only the action
    played last wrong (NOOP, as a fresh game has it) goes astray: the check can fail."""
    rng = np.random.default_rng(0)
    env = envs.make_train_env(GAME, MACHADO)
    env.reset(seed=5)
    copy, bare = envs.make_train_env(GAME, MACHADO), envs.make_train_env(GAME, MACHADO)
    astray = 0
    for trial in range(20):
        _play(env, rng.integers(4, size=10))
        _play(env, [RIGHT] * 3)  # played last: RIGHT (unless all 12 frames repeated, 6e-8)
        snap = envs.snapshot(env)
        assert snap["sticky_last"] == RIGHT
        actions = [LEFT, *rng.integers(4, size=15)]
        expected = _play(env, actions)
        envs.restore(copy, snap)
        assert _play(copy, actions) == expected, f"trial {trial}"
        envs.restore(bare, snap)
        envs._find(bare, envs.StickyActions).last = NOOP
        astray += _play(bare, actions) != expected
    assert astray >= 1
    for e in (env, copy, bare):
        e.close()


@pytest.mark.parametrize("game", sorted({g for games in GAME_SETS.values() for g in games}))
def test_a_machado_game_restored_into_a_fresh_env_goes_on_exactly(game):
    """A resume restores each game into an env made afresh, whose machado reset played no emulator
    frame. In some games (Qbert: a resumed reference run went astray, ale-py 0.12.1) ALE's state
    restored into such an emulator plays on differently unless restore() plays a frame first."""
    rng = np.random.default_rng(1)
    env = envs.make_train_env(game, MACHADO)
    env.reset(seed=3)
    n = env.action_space.n
    _play(env, rng.integers(n, size=150))
    snap = envs.snapshot(env)
    actions = rng.integers(n, size=100)
    expected = _play(env, actions)
    fresh = envs.make_train_env(game, MACHADO)
    envs.restore(fresh, snap)
    assert _play(fresh, actions) == expected
    env.close()
    fresh.close()


def test_machado_games_in_a_child_process_equal_those_in_this_one_and_move_between_them():
    rng = np.random.default_rng(2)
    actions = rng.integers(4, size=(300, 2))
    actions[rng.random((300, 2)) < 0.3] = FIRE
    here = envs.TrainEnvs(GAME, 2, 4, protocol=MACHADO)
    there = envs.TrainEnvs(GAME, 2, 4, processes=1, protocol=MACHADO)
    try:
        assert np.array_equal(here.reset(), there.reset())
        for step, row in enumerate(actions):
            a, b = here.step(row), there.step(row)
            assert all(np.array_equal(getattr(a, f), getattr(b, f))
                       for f in ("frames", "rewards", "terminated", "truncated", "game_over",
                                 "reset_frames")), f"step {step}"
            assert np.array_equal(a.terminated, a.game_over)  # whole games: a terminal is the end
            if step == 150:
                there.restore(here.snapshot())  # and on from the same place
    finally:
        here.close()
        there.close()


# --- the setting -----------------------------------------------------------------------------

def test_protocol_is_a_setting_of_the_run_fixed_at_its_start(tmp_path, capsys):
    from atari_dqn.config import Config, ConfigError

    assert Config().protocol == "deepmind"
    with pytest.raises(ConfigError, match="--protocol must be one of deepmind, machado"):
        Config(protocol="atari")
    old = json.loads(Config().to_json())
    del old["protocol"]  # a config.json from before --protocol
    assert Config.from_json(json.dumps(old)).protocol == "deepmind"
    with pytest.raises(SystemExit) as exited:  # argparse's choices: one line, status 2
        main.main(["--protocol", "atari", "--out", str(tmp_path / "r")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol: invalid choice: 'atari'" in err
    assert not (tmp_path / "r").exists()


def test_a_machado_run_stopped_and_resumed_equals_the_straight_one(tmp_path, capsys):
    """Exact resume under sticky actions: stopped between evaluations, mid-game, and resumed
    with the game in a child process; rewards.txt, models and episodes.csv as the straight
    run's. Random play throughout (--eps-end 1: FIRE is pressed, games end). The protocol may
    not change on resume."""
    from atari_dqn.run.checkpoint import read_checkpoint
    from atari_dqn.modes.one_process import train
    from tests.test_train_e2e import (TINY, assert_same_episodes, assert_same_models,
                                      tiny_config)

    flags = ["--protocol", "machado", "--eps-end", "1.0"]
    straight = tmp_path / "straight"
    assert main.main([*TINY, *flags, "--out", str(straight)]) == 0
    run = tmp_path / "stopped"
    assert train(tiny_config(run, *flags), stop_when=lambda step: step == 222).steps == 222
    assert all(snap["sticky_last"] is not None for snap in read_checkpoint(run)["env"])
    assert main.main(["--resume", str(run), "--protocol", "deepmind"]) == 2
    assert "--protocol cannot change when resuming" in capsys.readouterr().err
    assert main.main(["--resume", str(run), "--env-processes", "1"]) == 0
    assert "resumed the episode in progress" in capsys.readouterr().out
    assert (run / "rewards.txt").read_text() == (straight / "rewards.txt").read_text()
    assert_same_episodes(run, straight)
    ends = [int(line.split(",")[0]) for line in (straight / "episodes.csv").read_text().split()[1:]]
    assert any(e < 222 for e in ends) and any(e > 222 for e in ends)  # a game on each side
    assert_same_models(run, straight)
    assert json.loads((run / "config.json").read_text())["protocol"] == "machado"
