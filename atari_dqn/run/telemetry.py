"""What a person watches while a run trains: the progress bar (or progress lines) and the
TensorBoard scalars, behind a logger that is a null object when TensorBoard is off.

A run's output says what it is doing within seconds of its start, also in a log file: what it
starts (starting_games(), before its games are made), then, when its Telemetry is made, what
comes first (random play up to --learning-starts, the networks' compilation at the first
update), then a line when learning starts, and from there a line per evaluation and (when the
output is not a terminal) per LINE_EVERY_STEPS. Every line is flushed at once (say()): a Python
writing into a file holds its output back in 8 KB blocks, hours of progress lines.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from atari_dqn.config import GAME_START_SECONDS, Config
from atari_dqn.learn.agent import LearnStats

if TYPE_CHECKING:
    from atari_dqn.run.progress import Progress

LOG_EVERY_STEPS = 1_000  # agent steps between TensorBoard points and progress-bar updates
# Agent steps between plain progress lines, printed instead of the bar when the output is not a
# terminal (a run under nohup writing to a log). A multiple of LOG_EVERY_STEPS.
LINE_EVERY_STEPS = 10_000
# What a person waits for at the first update (and the first greedy action) with --compile: the
# Config's --compile doc, measured on the 2-core machine.
COMPILE_NOTE = "the first update waits for torch.compile (about 30 s, seconds once cached)"


def say(text: str) -> None:
    """A line of its own, printed without breaking the bar, and flushed at once."""
    tqdm.write(text)
    sys.stdout.flush()


def starting_games(training: int, evaluation: int, processes: int = 0) -> None:
    """The line before a run makes its games, its slowest start-up step."""
    where = f" in {_count(min(processes, training), 'process', 'processes')}" if processes else ""
    say(f"starting {_count(training, 'training game')}{where} and "
        f"{_count(evaluation, 'evaluation game')} (about {GAME_START_SECONDS:g} s a game)")


class NullLogger:
    def scalar(self, tag: str, value: float, step: int) -> None: ...
    def close(self) -> None: ...


class TensorBoardLogger:
    def __init__(self, folder: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops points an interrupted run wrote after its last checkpoint
        self.writer = SummaryWriter(str(folder), purge_step=start_step or None)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class Telemetry:
    """The progress bar and the (TensorBoard or null) logger."""

    def __init__(self, config: Config, run: Path, start_step: int,
                 clock: Callable[[], float] = time.perf_counter, *, offline: bool = False) -> None:
        # offline (atari_dqn/modes/offline.py): progress counts gradient updates up to --updates
        self.unit = "update" if offline else "agent step"
        total = config.total_updates if offline else config.total_steps
        self.logger = (TensorBoardLogger(run / "tensorboard", start_step) if config.tensorboard
                       else NullLogger())
        self.bar = tqdm(total=total, initial=start_step, unit=self.unit.split()[-1], disable=None,
                        dynamic_ncols=True, smoothing=0.05)
        self.total_steps = total
        self.losses: list[float] = []
        self.q_values: list[float] = []
        # steps/s counts training only: the window (start seconds, start step) leaves out
        # the seconds spent in evaluations and checkpoints, summed in paused_seconds
        self.clock = clock
        self.window = (clock(), start_step)
        self.paused_seconds = 0.0
        # online: the agent step after which learning starts (offline: at once); until then the
        # one-process loop plays at random (epsilon 1), Ape-X's actors with their own epsilons
        self.learning_starts = 0 if offline else config.learning_starts_steps
        self.compile_note = f"; {COMPILE_NOTE}" if config.compile else ""
        self.playing = "the actors' play" if config.actors else "random play"
        if start_step >= self.learning_starts:
            first = f"learning{self.compile_note}"
        elif self.learning_starts < total:
            first = f"{self.playing} until agent step {self.learning_starts}, then learning"
        else:
            first = f"{self.playing} to the end (--learning-starts is not below --steps)"
        say(f"{self.unit} {start_step} of {total}: {first}")

    def learned(self, stats: LearnStats) -> None:
        self.losses.append(stats.loss)
        self.q_values.append(stats.mean_q)

    def evaluated(self, progress: Progress, games: int, seconds: float) -> None:
        """An evaluation (and the checkpoint after it) took `seconds` of wall clock."""
        self.paused_seconds += seconds
        self.logger.scalar("eval/score", progress.last_eval_score, progress.step)
        wall = datetime.timedelta(seconds=round(progress.wall_seconds))
        say(f"evaluation {progress.evaluations}: {self.unit} {progress.step}, mean score "
            f"{progress.last_eval_score:.1f} over {games} games; {wall} of wall clock so far")

    def stepped(self, progress: Progress, eps: float, steps: int = 1,
                extra: dict[str, str] | None = None) -> None:
        """The loop made `steps` agent steps (one per game), up to progress.step. extra: more
        name -> value pairs for the bar and the progress line (a distributed run's rates)."""
        extra = extra or {}
        self.bar.update(steps)
        step = progress.step
        # before the iteration that learns (that of the next `steps` agent steps, past it)
        if step <= self.learning_starts < min(step + steps, self.total_steps):
            say(f"agent step {step}: {self.playing} done, learning starts{self.compile_note}")
        if not crossed(step, steps, LOG_EVERY_STEPS) and step != self.total_steps:
            return
        now = self.clock()
        rate = (step - self.window[1]) / max(now - self.window[0] - self.paused_seconds, 1e-9)
        self.window, self.paused_seconds = (now, step), 0.0
        self.logger.scalar("train/epsilon", eps, step)
        self.logger.scalar("train/steps_per_s", rate, step)
        if self.losses:
            self.logger.scalar("train/loss", float(np.mean(self.losses)), step)
            self.logger.scalar("train/mean_q", float(np.mean(self.q_values)), step)
            self.losses.clear()
            self.q_values.clear()
        self.bar.set_postfix(eps=f"{eps:.3f}", eval=_fmt(progress.last_eval_score),
                             game=_fmt(progress.last_game_score), **extra, refresh=False)
        if self.bar.disable and crossed(step, steps, LINE_EVERY_STEPS):
            if self.unit == "update":
                say(f"update {step} of {self.total_steps}: {rate:.1f} updates/s, last "
                    f"evaluation score {_fmt(progress.last_eval_score)}")
            else:
                more = "".join(f", {name} {value}" for name, value in extra.items())
                say(f"agent step {step} of {self.total_steps}: {rate:.0f} steps/s, epsilon "
                    f"{eps:.3f}, last game score {_fmt(progress.last_game_score)}{more}")

    def message(self, text: str) -> None:
        """A line of its own, printed without breaking the bar, and flushed at once."""
        say(text)

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


def crossed(step: int, steps: int, every: int) -> bool:
    """Whether the agent steps step - steps + 1 .. step hold a multiple of every."""
    return step // every != (step - steps) // every


def _count(n: int, thing: str, things: str = "") -> str:
    return f"{n} {thing if n == 1 else things or thing + 's'}"


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"
