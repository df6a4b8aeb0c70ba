"""What a person watches while a run trains: the progress bar (or progress lines) and the
TensorBoard scalars, behind a logger that is a null object when TensorBoard is off."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from atari_dqn.agent import LearnStats
from atari_dqn.config import Config

if TYPE_CHECKING:
    from atari_dqn.checkpoint import Progress

LOG_EVERY_STEPS = 1_000  # agent steps between TensorBoard points and progress-bar updates
# Agent steps between plain progress lines, printed instead of the bar when the output is not a
# terminal (a run under nohup writing to a log). A multiple of LOG_EVERY_STEPS.
LINE_EVERY_STEPS = 10_000


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
        # offline (atari_dqn/offline.py): progress counts gradient updates up to --updates
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

    def learned(self, stats: LearnStats) -> None:
        self.losses.append(stats.loss)
        self.q_values.append(stats.mean_q)

    def evaluated(self, progress: Progress, games: int, seconds: float) -> None:
        """An evaluation (and the checkpoint after it) took `seconds` of wall clock."""
        self.paused_seconds += seconds
        self.logger.scalar("eval/score", progress.last_eval_score, progress.step)
        wall = datetime.timedelta(seconds=round(progress.wall_seconds))
        tqdm.write(f"evaluation {progress.evaluations}: {self.unit} {progress.step}, mean score "
                   f"{progress.last_eval_score:.1f} over {games} games; {wall} of wall clock "
                   f"so far")

    def stepped(self, progress: Progress, eps: float, steps: int = 1,
                extra: dict[str, str] | None = None) -> None:
        """The loop made `steps` agent steps (one per game), up to progress.step. extra: more
        name -> value pairs for the bar and the progress line (a distributed run's rates)."""
        extra = extra or {}
        self.bar.update(steps)
        step = progress.step
        if not _crossed(step, steps, LOG_EVERY_STEPS) and step != self.total_steps:
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
        if self.bar.disable and _crossed(step, steps, LINE_EVERY_STEPS):
            if self.unit == "update":
                tqdm.write(f"update {step} of {self.total_steps}: {rate:.1f} updates/s, last "
                           f"evaluation score {_fmt(progress.last_eval_score)}")
            else:
                more = "".join(f", {name} {value}" for name, value in extra.items())
                tqdm.write(f"agent step {step} of {self.total_steps}: {rate:.0f} steps/s, "
                           f"epsilon {eps:.3f}, last game score "
                           f"{_fmt(progress.last_game_score)}{more}")

    def message(self, text: str) -> None:
        """A line of its own, printed without breaking the bar."""
        tqdm.write(text)

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


def _crossed(step: int, steps: int, every: int) -> bool:
    """Whether the agent steps step - steps + 1 .. step hold a multiple of every."""
    return step // every != (step - steps) // every


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"
