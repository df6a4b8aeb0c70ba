from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atari_dqn.config import Config
from atari_dqn.envs import atari as envs
from atari_dqn.learn.agent import Agent
from atari_dqn.run.evaluate import (NullFrameWriter, PngFrameWriter, evaluate, evaluation_seeds,
                                    frame_stacker, parse_rewards, plot_curve, rewards_line)


@pytest.fixture(scope="module")
def agent() -> Agent:
    torch.manual_seed(0)
    return Agent(4, Config(out_dir="x", compile=False), torch.device("cpu"))


def test_rewards_line_is_the_established_format():
    assert rewards_line(1, 50_000, 12.345) == "  1    50000 12.3"
    assert rewards_line(12, 12_345_678, -3.0) == " 12 12345678 -3.0"
    assert parse_rewards(rewards_line(3, 150, 2.25) + "\n") == [(3, 150, 2.2)]


def test_plot_curve_writes_a_png(tmp_path):
    (tmp_path / "rewards.txt").write_text("  1      100 0.5\n  2      200 1.5\n")
    plot_curve(tmp_path / "rewards.txt", tmp_path / "rewards.png", title="t")
    assert Image.open(tmp_path / "rewards.png").format == "PNG"


def test_evaluation_seeds_depend_on_the_run_seed_and_the_index():
    assert evaluation_seeds(0, 1) == evaluation_seeds(0, 1)
    assert len({evaluation_seeds(s, i) for s in (0, 1) for i in (1, 2)}) == 4


def test_evaluation_is_a_pure_function_of_its_seeds(agent):
    env = envs.EvalEnvs("Breakout", 2, max_steps=60)
    run = lambda: evaluate(agent, env, epsilon=0.5, seeds=(1, 2))  # noqa: E731
    first = run()
    assert len(first) == 2 and run() == first


class _Lengths(NullFrameWriter):
    """Counts each game's frames (its reset, then one a step while it plays)."""

    def __init__(self):
        self.frames = {}

    def capture(self, game, games):
        self.frames[game] = self.frames.get(game, 0) + 1


def test_games_played_at_once_are_the_lone_games_given_each_row_actions(agent):
    """Game i of an evaluation is a lone make_eval_env reset with its seed and fed the actions
    of row i: its score and length are that lone game's."""
    watcher, lengths = _Watcher(agent), _Lengths()
    scores = evaluate(watcher, envs.EvalEnvs("Breakout", 3, max_steps=60), epsilon=0.5,
                      seeds=(7, 8), frames=lengths)
    for game, seed in enumerate(envs.game_seeds(7, 3)):
        env = envs.make_eval_env("Breakout", max_steps=60)
        env.reset(seed=seed)
        score, steps, over = 0.0, 0, False
        while not over:
            _, reward, terminated, truncated, _ = env.step(int(watcher.actions[steps][game]))
            score, steps, over = score + reward, steps + 1, terminated or truncated
        assert (score, steps + 1) == (scores[game], lengths.frames[game])
    assert all(states.shape == (3, 4, 84, 84) for states in watcher.states)


def test_frame_writer_writes_every_frame_game_by_game_and_the_best_game_as_gif(agent, tmp_path):
    env = envs.EvalEnvs("Breakout", 2, max_steps=40, render=True)
    frames = PngFrameWriter(tmp_path / "eval_001", tmp_path / "eval_001.gif")
    lengths = _Lengths()

    class Both(NullFrameWriter):
        def capture(self, game, games):
            frames.capture(game, games)
            lengths.capture(game, games)

        def end_game(self, game, score):
            frames.end_game(game, score)

        def close(self):
            frames.close()

    scores = evaluate(agent, env, epsilon=1.0, seeds=(0, 0), frames=Both())
    pngs = sorted((tmp_path / "eval_001").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(sum(lengths.frames.values()))]
    # game 1's frames follow game 0's: its first frame is its reset screen, rendered again here
    env.reset(0)  # the evaluation's env seed
    first_of_game_1 = np.asarray(Image.open(pngs[lengths.frames[0]]).convert("RGB"))
    np.testing.assert_array_equal(first_of_game_1, env.render(1))
    best = int(np.argmax(scores))
    gif = Image.open(tmp_path / "eval_001.gif")
    # pillow may merge identical neighbouring frames into one longer frame
    assert 1 < gif.n_frames <= lengths.frames[best]


def test_frame_stacker_pads_an_episode_start_and_keeps_the_last_stack_frames():
    stacker = frame_stacker()
    frames = [np.full((84, 84), i, np.uint8) for i in range(7)]
    stacker.start_episode(frames[0])
    assert [int(f[0, 0]) for f in stacker.state()] == [0, 0, 0, 0]
    for i in range(1, 7):
        stacker.append(0, 0.0, frames[i], terminated=(i == 6))
        if i == 2:
            assert [int(f[0, 0]) for f in stacker.state()] == [0, 0, 1, 2]
    assert [int(f[0, 0]) for f in stacker.state()] == [3, 4, 5, 6]
    stacker.start_episode(frames[1])  # a new game never sees the last one's frames
    assert [int(f[0, 0]) for f in stacker.state()] == [1, 1, 1, 1]


class _Watcher:
    """An actor that records the states it is shown and acts like agent."""

    def __init__(self, agent):
        self.agent, self.states, self.actions = agent, [], []

    def act_batch(self, states, epsilon, rng):
        self.states.append(states.copy())
        self.actions.append(self.agent.act_batch(states, epsilon, rng))
        return self.actions[-1]


def test_evaluation_acts_on_batches_of_the_last_four_frames(agent):
    """The states evaluate() acts on are the stacks of the env's last four frames (padded at a
    game's start), exactly what gymnasium's FrameStackObservation(padding 'reset') gives."""
    from gymnasium.wrappers import FrameStackObservation

    watcher = _Watcher(agent)
    evaluate(watcher, envs.EvalEnvs("Breakout", 1, max_steps=40), epsilon=0.5, seeds=(4, 5))
    reference = FrameStackObservation(envs.make_eval_env("Breakout", max_steps=40), 4,
                                      padding_type="reset")
    rng = np.random.default_rng(5)
    stacked, _ = reference.reset(seed=4)
    for shown in watcher.states:
        assert shown.shape == (1, 4, 84, 84) and shown.dtype == np.uint8
        np.testing.assert_array_equal(shown[0], stacked)
        stacked, *_ = reference.step(agent.act(stacked, 0.5, rng))
    assert len(watcher.states) > 4


class _RandomActor:
    """Uniformly random actions: games that end by losing their lives, at different steps."""

    def __init__(self):
        self.steps = 0

    def act_batch(self, states, epsilon, rng):
        self.steps += 1
        return rng.integers(0, 4, len(states))


def test_on_game_end_reports_each_game_as_it_ends():
    actor, lengths, ended = _RandomActor(), _Lengths(), []
    scores = evaluate(actor, envs.EvalEnvs("Breakout", 2, max_steps=2_000), epsilon=1.0,
                      seeds=(0, 0), frames=lengths,
                      on_game_end=lambda game, score: ended.append((game, score, actor.steps)))
    # each game once, with its final score, at the step it ended (its frames: reset + steps)
    assert sorted(game for game, _, _ in ended) == [0, 1]
    for game, score, steps in ended:
        assert score == scores[game] and steps == lengths.frames[game] - 1
    assert [steps for _, _, steps in ended] == sorted(steps for _, _, steps in ended)
    assert len({steps for _, _, steps in ended}) > 1  # they did end apart
    assert max(steps for _, _, steps in ended) < 2_000  # by losing, not by the cap
