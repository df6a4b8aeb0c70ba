from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atari_dqn import env as envs
from atari_dqn.agent import Agent
from atari_dqn.config import Config
from atari_dqn.evaluate import (PngFrameWriter, evaluate, evaluation_seeds, parse_rewards,
                                plot_curve, rewards_line)
from atari_dqn.replay import ReplayMemory


@pytest.fixture(scope="module")
def agent() -> Agent:
    torch.manual_seed(0)
    return Agent(4, Config(out_dir="x"), torch.device("cpu"))


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
    env = envs.make_eval_env("Breakout", max_steps=60)
    run = lambda: evaluate(agent, env, games=2, epsilon=0.5, seeds=(1, 2))  # noqa: E731
    first = run()
    assert len(first) == 2 and run() == first


def test_frame_writer_writes_every_frame_and_the_best_game_as_gif(agent, tmp_path):
    env = envs.make_eval_env("Breakout", max_steps=40, render=True)
    frames = PngFrameWriter(tmp_path / "eval_001", tmp_path / "eval_001.gif")
    scores = evaluate(agent, env, games=2, epsilon=1.0, seeds=(0, 0), frames=frames)
    pngs = sorted((tmp_path / "eval_001").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(len(pngs))]
    best, first, end = frames.best
    assert best == max(scores) and end - first > 1
    gif = Image.open(tmp_path / "eval_001.gif")
    # pillow may merge identical neighbouring frames into one longer frame
    assert 1 < gif.n_frames <= end - first


def test_eval_stacking_is_the_replay_memory_stacking():
    """Evaluation stacks frames with gymnasium's wrapper, training with the memory: same rule."""
    env = envs.make_eval_env("Breakout", max_steps=1_000)
    memory = ReplayMemory(100)
    stacked, _ = env.reset(seed=4)
    memory.start_episode(np.ascontiguousarray(stacked[-1]))
    rng = np.random.default_rng(0)
    for _ in range(6):
        np.testing.assert_array_equal(stacked, memory.state())
        action = int(rng.integers(4))
        stacked, reward, terminated, truncated, _ = env.step(action)
        memory.append(action, reward, np.ascontiguousarray(stacked[-1]), terminated, truncated)
    np.testing.assert_array_equal(stacked, memory.state())
