"""Evaluation games and rendered frames (the rewards.txt format and the curve: curve.py).

Evaluation acts as training does: its frames are stacked by a replay memory (the one stacking
rule, see frame_stacker) and actions are chosen by the actor's act_batch() on a batch of states,
one row per game: all the games of an evaluation play at once (envs.atari.EvalEnvs).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

# the run folder's rewards.txt and learning curve (curve.py), importable from here as before
from atari_dqn.config import FRAME_SKIP, SCREEN_SIZE, STACK, Config
from atari_dqn.envs import atari as envs
from atari_dqn.replay import ReplayMemory
from atari_dqn.run.curve import (X_LABEL, parse_rewards, plot_curve, plot_curves,  # noqa: F401
                                 rewards_line)
from atari_dqn.run.files import atomic_write, writing

GIF_MAX_FRAMES = 4_500           # longer games are subsampled so the GIF stays a few MB
FRAME_MS = 1000 * FRAME_SKIP / 60  # one agent step of play at the emulator's 60 Hz


class NullFrameWriter:
    """Used when not rendering: every call does nothing."""

    def capture(self, game: int, games: envs.EvalEnvs) -> None: ...
    def end_game(self, game: int, score: float) -> None: ...
    def close(self) -> None: ...


class PngFrameWriter:
    """Writes every frame played as <folder>/NNNNNN.png, numbered across the evaluation's games
    game by game (game 0's frames first), and, on close(), the best game as an animated GIF at
    gif_path. The games play side by side, so a frame is first written under its game's own
    number and renamed into that order by close(). A failed write is a DiskError naming the
    file."""

    def __init__(self, folder: Path, gif_path: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of an evaluation cut short
        with writing(folder):
            folder.mkdir(parents=True)
        self.folder, self.gif_path = folder, gif_path
        self.counts: dict[int, int] = {}  # game -> frames written
        self.scores: dict[int, float] = {}

    def _game_frame(self, game: int, index: int) -> Path:
        return self.folder / f"game{game:03d}-{index:06d}.png"

    def capture(self, game: int, games: envs.EvalEnvs) -> None:
        index = self.counts.get(game, 0)
        path = self._game_frame(game, index)
        with writing(path):
            Image.fromarray(games.render(game)).save(path)
        self.counts[game] = index + 1

    def end_game(self, game: int, score: float) -> None:
        self.scores[game] = score

    def close(self) -> None:
        number, best = 0, None  # best: (score, first frame, end frame)
        for game in sorted(self.counts):
            first = number
            for index in range(self.counts[game]):
                path = self.folder / f"{number:06d}.png"
                with writing(path):
                    self._game_frame(game, index).rename(path)
                number += 1
            score = self.scores.get(game, -math.inf)
            if best is None or score > best[0]:
                best = (score, first, number)
        if best is None:
            return
        _, first, end = best
        every = math.ceil((end - first) / GIF_MAX_FRAMES)
        frames: Iterator[Image.Image] = (Image.open(self.folder / f"{i:06d}.png")
                                         for i in range(first, end, every))
        head = next(frames)
        atomic_write(self.gif_path, lambda tmp: head.save(
            tmp, format="GIF", save_all=True, append_images=frames, loop=0,
            duration=round(FRAME_MS * every)))


def evaluation_games(config: Config) -> envs.EvalEnvs:
    """A run's evaluation games, whatever its mode: --eval-episodes games of --env under
    --protocol, each cut after --eval-max-steps agent steps, recording frames with --render."""
    return envs.EvalEnvs(config.env_id, config.eval_episodes,
                         protocol=envs.PROTOCOLS[config.protocol],
                         max_steps=config.eval_max_steps, render=config.render)


def evaluation_seeds(seed: int, index: int) -> tuple[int, int]:
    """(env seed, epsilon seed) of evaluation number index: a pure function of the run's seed,
    so an evaluation carries no state and a resumed run replays it exactly."""
    env_seed, act_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(env_seed), int(act_seed)


class Actor(Protocol):
    """What plays: Agent, or anything that chooses actions the way it does."""

    def act_batch(self, states: np.ndarray, epsilon: float,
                  rng: np.random.Generator) -> np.ndarray: ...


def frame_stacker(streams: int = 1) -> ReplayMemory:
    """A replay memory just large enough to stack the newest state of each of `streams` games
    (stack + 1 transitions per game, every game appended at every step), for a player that
    learns nothing. Training acts on its replay memory's states() and evaluation on this one's,
    so both stack frames by the same rule and the same code: the last STACK frames of the
    episode, padded at its start by repeating its first frame."""
    return ReplayMemory((STACK + 1) * streams, frame_shape=(SCREEN_SIZE, SCREEN_SIZE),
                        stack=STACK, streams=streams)


def ignore_game_end(game: int, score: float) -> None:
    """evaluate()'s default on_game_end: training's evaluations report only the mean."""


def evaluate(actor: Actor, games: envs.EvalEnvs, *, epsilon: float, seeds: tuple[int, int],
             frames: NullFrameWriter | PngFrameWriter = NullFrameWriter(),
             on_game_end: Callable[[int, float], None] = ignore_game_end) -> list[float]:
    """Play every game of `games` once, side by side, with epsilon-greedy actions chosen by one
    act_batch() on all of their states a step; return each game's raw (unclipped) score.
    on_game_end(game, score) is called as each game ends, in the order they end (games ending
    in the same step: by index), so that a caller can report a score before the others end.

    A pure function of the actor and seeds = (env seed, epsilon seed): game i is reset with
    envs.game_seeds(env seed, len(games))[i], and the rng draws for every row at every step,
    also for games already over (their actions are ignored), so that every step acts on one
    batch shape."""
    env_seed, act_seed = seeds
    rng = np.random.default_rng(act_seed)
    stacker = frame_stacker(len(games))
    for game, frame in enumerate(games.reset(env_seed)):
        stacker.start_episode(frame, stream=game)
        frames.capture(game, games)
    scores = np.zeros(len(games))
    while games.playing.any():
        moving = np.flatnonzero(games.playing)
        actions = actor.act_batch(stacker.states(), epsilon, rng)
        result = games.step(actions)
        scores += result.rewards
        # a game that is over stays on its last frame: stored as a new episode of that frame
        stacker.append_batch(actions, result.rewards.astype(np.float32), result.frames,
                             result.terminated, result.truncated,
                             reset_frames=result.reset_frames)
        for game in moving:
            frames.capture(int(game), games)
        for game in np.flatnonzero(result.game_over):
            on_game_end(int(game), float(scores[game]))
    for game, score in enumerate(scores):
        frames.end_game(game, float(score))
    frames.close()
    return scores.tolist()
