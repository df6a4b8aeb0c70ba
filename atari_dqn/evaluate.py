"""Evaluation games, the rewards.txt line format, the learning curve and rendered frames.

Evaluation acts as training does: its frames are stacked by a replay memory (the one stacking
rule, see frame_stacker) and actions are chosen by the actor's act_batch() on a batch of states.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from atari_dqn.config import FRAME_SKIP, SCREEN_SIZE, STACK  # noqa: E402
from atari_dqn.files import atomic_write, writing  # noqa: E402
from atari_dqn.replay import ReplayMemory  # noqa: E402

GIF_MAX_FRAMES = 4_500           # longer games are subsampled so the GIF stays a few MB
FRAME_MS = 1000 * FRAME_SKIP / 60  # one agent step of play at the emulator's 60 Hz


def rewards_line(index: int, step: int, score: float) -> str:
    """The established rewards.txt format: evaluation number, agent steps trained, mean score."""
    return f"{index:3d} {step:8d} {score:.1f}"


def parse_rewards(text: str) -> list[tuple[int, int, float]]:
    rows = []
    for line in text.splitlines():
        index, step, score = line.split()
        rows.append((int(index), int(step), float(score)))
    return rows


def plot_curve(rewards_txt: Path, png: Path, title: str) -> None:
    """The learning curve of one run."""
    plot_curves({title: rewards_txt}, png, title=title)


def plot_curves(runs: dict[str, Path], png: Path, title: str) -> None:
    """Learning curves of several runs (label -> rewards.txt) in one figure."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, rewards_txt in runs.items():
        rows = parse_rewards(rewards_txt.read_text())
        ax.plot([r[1] for r in rows], [r[2] for r in rows], marker="o", label=label)
    ax.set_xlabel(f"agent steps (x{FRAME_SKIP} emulator frames)")
    ax.set_ylabel("mean evaluation score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


class NullFrameWriter:
    """Used when not rendering: every call does nothing."""

    def begin_game(self) -> None: ...
    def capture(self, env: gym.Env) -> None: ...
    def end_game(self, score: float) -> None: ...
    def close(self) -> None: ...


class PngFrameWriter:
    """Writes every frame played as <folder>/NNNNNN.png (numbered across the evaluation's games)
    and, on close(), the best game as an animated GIF at gif_path. A failed write is a
    DiskError naming the file."""

    def __init__(self, folder: Path, gif_path: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of an evaluation cut short
        with writing(folder):
            folder.mkdir(parents=True)
        self.folder, self.gif_path = folder, gif_path
        self.count = 0
        self.game_start = 0
        self.best: tuple[float, int, int] | None = None  # score, first frame, end frame

    def begin_game(self) -> None:
        self.game_start = self.count

    def capture(self, env: gym.Env) -> None:
        path = self.folder / f"{self.count:06d}.png"
        with writing(path):
            Image.fromarray(env.render()).save(path)
        self.count += 1

    def end_game(self, score: float) -> None:
        if self.best is None or score > self.best[0]:
            self.best = (score, self.game_start, self.count)

    def close(self) -> None:
        if self.best is None:
            return
        _, first, end = self.best
        every = math.ceil((end - first) / GIF_MAX_FRAMES)
        frames: Iterator[Image.Image] = (Image.open(self.folder / f"{i:06d}.png")
                                         for i in range(first, end, every))
        head = next(frames)
        atomic_write(self.gif_path, lambda tmp: head.save(
            tmp, format="GIF", save_all=True, append_images=frames, loop=0,
            duration=round(FRAME_MS * every)))


def evaluation_seeds(seed: int, index: int) -> tuple[int, int]:
    """(env seed, epsilon seed) of evaluation number index: a pure function of the run's seed,
    so an evaluation carries no state and a resumed run replays it exactly."""
    env_seed, act_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(env_seed), int(act_seed)


class Actor(Protocol):
    """What plays: Agent, or anything that chooses actions the way it does."""

    def act_batch(self, states: np.ndarray, epsilon: float,
                  rng: np.random.Generator) -> np.ndarray: ...


def frame_stacker() -> ReplayMemory:
    """A replay memory just large enough to stack one state (stack + n_step transitions), for a
    player that learns nothing. Training acts on its replay memory's state() and evaluation on
    this one's, so both stack frames by the same rule and the same code: the last STACK frames of
    the episode, padded at its start by repeating its first frame."""
    return ReplayMemory(STACK + 1, frame_shape=(SCREEN_SIZE, SCREEN_SIZE), stack=STACK)


def evaluate(actor: Actor, env: gym.Env, *, games: int, epsilon: float, seeds: tuple[int, int],
             frames: NullFrameWriter | PngFrameWriter = NullFrameWriter()) -> list[float]:
    """Play whole games with epsilon-greedy actions; return each game's raw (unclipped) score."""
    env_seed, act_seed = seeds
    rng = np.random.default_rng(act_seed)
    stacker = frame_stacker()
    scores = []
    for game in range(games):
        obs, _ = env.reset(seed=env_seed if game == 0 else None)
        stacker.start_episode(obs)
        frames.begin_game()
        frames.capture(env)
        score, over = 0.0, False
        while not over:
            action = int(actor.act_batch(stacker.state()[None], epsilon, rng)[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            score += float(reward)
            over = terminated or truncated
            stacker.append(action, float(reward), obs, terminated, truncated)
            frames.capture(env)
        frames.end_game(score)
        scores.append(score)
    frames.close()
    return scores
