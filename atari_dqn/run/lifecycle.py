"""One run lifecycle, written once, for every mode: one process, Ape-X and offline.

A run, whatever feeds it, goes through the same stages:

  prepare(config)        the machine and the game checked; nothing written yet; whether the run
                         is fresh or continues a checkpoint
  run_source(config, start, make_source, stop_when)  the rest, the same for every mode:
    run_folder(config)   the folder made (--out) or taken (--resume) and locked (RunLock) for the
                         with block; a DiskError inside it becomes the run's one-line RunError,
                         saying where --resume will continue
    make_source(run)     the mode builds its Source in the locked folder (loading the checkpoint
                         or tidying the folder for a fresh start)
    Run(...).loop()      iterate until the source's total: after each iteration, the evaluation
                         schedule (every --eval-every steps and at the end: evaluate, record,
                         checkpoint), the progress line, and the stop policy (a signal or
                         stop_when before the end: checkpoint, then return); a non-finite loss
                         checkpoints the last good state and ends the run with one line (the NaN
                         policy)

What differs between modes is a Source: where transitions come from and what a step counts.

  Source.agent, .eval_env, .progress  the learner, the evaluation games, the counters

  Source.total              the step the run ends at (agent steps; offline: updates)
  Source.start(telemetry)   once, before the first iteration: where learning stats go; starts
                            what must not run before the loop (Ape-X's actors)
  Source.iterate(progress, stop)  one iteration of the mode's loop body, advancing
                            progress.step: act, store, learn, sync (one process: one agent step
                            in each game); store the actors' chunks and learn at the rate
                            limiter's pace up to the next evaluation, or until stop() asks
                            (Ape-X); sample and learn (offline: one update)
  Source.stepped(progress)  after the iteration (and its evaluation): the progress line
  Source.settle()           before an evaluation: nothing left in flight (pending priorities)
  Source.parts()            the mode's checkpoint registry: checkpoint key -> part, each with
                            state()/restore(); called when a checkpoint is written and by the
                            mode itself to resume; no side effects: iterate() returns (or
                            raises) with every part at rest (Ape-X drops its batch sampled
                            ahead before it returns)
  Source.failed_at(progress)  where a non-finite loss happened, in the mode's words
  Source.close()            its games, actors or sampler end (always called)

Checkpoints (checkpoint.py, format version 2) are a registry of parts: Run.checkpoint brings
progress.wall_seconds up to date and writes every part's state() under its key with the one
writer (checkpoint.save_checkpoint); a Source built to resume restores its parts with the one
reader (checkpoint.load_checkpoint), which checks the checkpoint, migrates an older format
version (checkpoint.MIGRATIONS) and tidies the folder back to it. checkpoint.py's doc lists
the parts by key, and what each mode gives under each.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from atari_dqn.config import Config, ConfigError, RunError
from atari_dqn.envs import atari as envs
from atari_dqn.learn.agent import Agent, NonFiniteLoss
from atari_dqn.run.checkpoint import (Part, RunLock, create_run_dir, has_checkpoint,
                                      record_evaluation, save_checkpoint)
from atari_dqn.run.evaluate import NullFrameWriter, PngFrameWriter, evaluate, evaluation_seeds
from atari_dqn.run.files import DiskError
from atari_dqn.run.machine import check_machine
from atari_dqn.run.progress import Progress
from atari_dqn.run.telemetry import Telemetry


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    steps: int
    stopped_early: bool          # by a signal or stop_when; a checkpoint was written
    signum: int | None = None    # the signal that stopped the run, if one did


class StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop after the current iteration (and evaluation);
    a second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        try:
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: signals stay as they are
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def disk_error(error: DiskError, run: Path, start: str) -> RunError:
    """The one line a run ends with on a disk error: where --resume will continue (start: what
    a run with no checkpoint yet starts from)."""
    since = "its last checkpoint" if has_checkpoint(run) else start
    return RunError(f"{error}; once that is fixed, --resume {run} continues from {since}")


def non_finite_loss(error: NonFiniteLoss, at: str, run: Path) -> RunError:
    """The one line a run ends with when an update's loss is not finite (at: where), after the
    last good state was checkpointed."""
    return RunError(f"non-finite loss at {at} ({error}); stopped before that update, with a "
                    f"checkpoint of the last good state in {run}; a lower --lr (in a new run) "
                    f"may help")


def play_evaluation(agent: Agent, eval_env: Any, config: Config, run: Path,
                    progress: Progress, final: bool) -> list[float]:
    """Evaluation number progress.evaluations + 1, recorded in the run folder; final (the run's
    last) also writes final_model.pt."""
    index = progress.evaluations + 1
    frames = (PngFrameWriter(run / f"eval_{index:03d}", run / f"eval_{index:03d}.gif")
              if config.render else NullFrameWriter())
    scores = evaluate(agent, eval_env, epsilon=config.eval_eps,
                      seeds=evaluation_seeds(config.seed, index), frames=frames)
    record_evaluation(run, agent, progress, scores, final=final)
    return scores


def prepare(config: Config, machine: Config | None = None) -> tuple[torch.device, bool]:
    """Check what a run needs before its folder is made (ConfigErrors): the machine (for
    `machine`, default config), the game, and that a run folder is named. Returns the device,
    and whether the run starts fresh (not a --resume of a folder with a checkpoint)."""
    device = check_machine(machine or config)
    envs.resolve_env_id(config.env_id)  # an unknown game is a ConfigError
    if not config.out_dir:
        raise ConfigError("--out: no run folder given")
    return device, not (config.resume and has_checkpoint(config.run_dir))


def run_source(config: Config, start: str, make_source: Callable[[Path], Source],
               stop_when: Callable[[int], bool]) -> RunResult:
    """The lifecycle around the Source that make_source(run) builds in the locked run folder
    (start: where a run with no checkpoint starts from, for the disk-error line)."""
    with run_folder(config, start=start) as run:
        seed_torch(config)
        source = make_source(run)
        try:
            telemetry = Telemetry(config, run, source.progress.step, offline=bool(config.offline))
            return Run(config, run, source, telemetry).loop(stop_when)
        finally:
            source.close()  # however the run ends, its games, processes or actors end with it


@contextmanager
def run_folder(config: Config, start: str) -> Iterator[Path]:
    """The run folder, made (--out) or taken (--resume) and locked while the with block runs; a
    DiskError in it becomes the run's RunError (start: where a run with no checkpoint yet
    starts from, such as "step 0")."""
    run = config.run_dir
    lock = RunLock(run) if config.resume else create_run_dir(config)
    try:
        yield run
    except DiskError as e:
        raise disk_error(e, run, start=start) from None
    finally:
        lock.close()


def seed_torch(config: Config) -> None:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)


class StopRequest:
    """Whether the run is asked to stop: by a signal, or by stop_when(step). Once asked, it
    stays asked (a mode that checks it mid-iteration, Ape-X, then drains and returns)."""

    def __init__(self, signals: StopOnSignal, stop_when: Callable[[int], bool]) -> None:
        self.signals, self.stop_when, self.asked = signals, stop_when, False

    def __call__(self, step: int) -> bool:
        self.asked = self.asked or self.signals.signum is not None or self.stop_when(step)
        return self.asked


class Source(Protocol):
    """Where a mode's transitions come from and what it counts (the module's doc)."""
    total: int
    agent: Agent
    eval_env: Any
    progress: Progress

    def start(self, telemetry: Telemetry) -> None: ...
    def iterate(self, progress: Progress, stop: StopRequest) -> None: ...
    def stepped(self, progress: Progress) -> None: ...
    def settle(self) -> None: ...
    def parts(self) -> dict[str, Part]: ...
    def failed_at(self, progress: Progress) -> str: ...
    def close(self) -> None: ...


class Run:
    """The loop around a Source in a locked run folder: evaluations, checkpoints, progress,
    stopping. It closes the telemetry when the loop ends, however it ends (run_source, which
    made the source, closes that)."""

    def __init__(self, config: Config, run: Path, source: Source, telemetry: Telemetry) -> None:
        self.config, self.run, self.source, self.telemetry = config, run, source, telemetry
        self.agent, self.eval_env, self.progress = source.agent, source.eval_env, source.progress
        self.started, self.wall_before = time.perf_counter(), self.progress.wall_seconds

    def checkpoint(self) -> None:
        self.progress.wall_seconds = self.wall_before + time.perf_counter() - self.started
        save_checkpoint(self.run, self.source.parts())

    def evaluate(self) -> None:
        """Evaluation, its record and the checkpoint after it."""
        self.source.settle()
        paused_at = time.perf_counter()
        scores = play_evaluation(self.agent, self.eval_env, self.config, self.run, self.progress,
                                 final=self.progress.step == self.source.total)
        self.checkpoint()
        self.telemetry.evaluated(self.progress, len(scores), time.perf_counter() - paused_at)

    def loop(self, stop_when: Callable[[int], bool]) -> RunResult:
        source, progress, every = self.source, self.progress, self.config.eval_every_steps
        with StopOnSignal() as signals:
            stop = StopRequest(signals, stop_when)
            try:
                source.start(self.telemetry)
                while progress.step < source.total:
                    before = progress.step
                    source.iterate(progress, stop)
                    step = progress.step
                    due = step > before and (step % every == 0 or step == source.total)
                    if due:
                        self.evaluate()
                    source.stepped(progress)
                    if step < source.total and stop(step):
                        if not due:
                            self.checkpoint()
                        self.telemetry.message(f"stopped at {self.telemetry.unit} {step}; "
                                               f"continue with --resume {self.run}")
                        return RunResult(self.run, step, stopped_early=True,
                                         signum=signals.signum)
            except NonFiniteLoss as e:
                self.checkpoint()  # the networks from before the update that failed
                raise non_finite_loss(e, source.failed_at(progress), self.run) from None
            finally:
                self.telemetry.close()
        return RunResult(self.run, progress.step, stopped_early=False)
