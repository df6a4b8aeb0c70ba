"""The training loop: act, step, store, learn, sync, evaluate.

The parts live elsewhere: the run folder, checkpoints and resume in checkpoint.py, the learner's
schedule in learner.py, the progress bar and TensorBoard in telemetry.py, evaluation games in
evaluate.py, the training games' scores (episodes.csv) in episodes.py, and the games themselves,
played under the run's --protocol, in env.py. Training and evaluation act through the same call,
Agent.act_batch, on states stacked by the replay memory.

One iteration of the loop plays one agent step in each of the --envs games (env.TrainEnvs; the
memory has one stream per game), acting on all of them with one batched forward: --envs agent
steps. Every count (--steps, --train-every, --target-update, --eval-every, --learning-starts,
--reset-every, epsilon, beta) is in agent steps over all games, and the boundaries an iteration
crosses are acted on in step order, so the replay ratio does not depend on --envs; with --envs 1
the loop is the single-game loop, step for step (tests/test_train.py holds it to that).

Everything about the settings and the machine is checked before the run folder is made. Once it
is, a run ends in one of three ways: it finishes; a signal or stop_when stops it after a
checkpoint; or a RunError (one line, raised after the last good state is checkpointed or with the
last checkpoint intact): a disk error, or a non-finite loss.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atari_dqn import env as envs
from atari_dqn.agent import Agent, NonFiniteLoss
from atari_dqn.checkpoint import (Progress, RunLock, create_run_dir, has_checkpoint,
                                  load_checkpoint, record_evaluation, save_checkpoint,
                                  tidy_run_dir)
from atari_dqn.config import Config, ConfigError, RunError
from atari_dqn.episodes import GameLog
from atari_dqn.evaluate import NullFrameWriter, PngFrameWriter, evaluate, evaluation_seeds
from atari_dqn.files import DiskError
from atari_dqn.learner import Updates
from atari_dqn.machine import check_machine
from atari_dqn.schedule import epsilon
from atari_dqn.telemetry import Telemetry, say, starting_games


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


def make_memory(config: Config) -> Any:
    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    common = dict(frame_shape=(envs.SCREEN_SIZE, envs.SCREEN_SIZE), stack=envs.STACK,
                  streams=config.streams, seed=config.seed, n_step=config.n_step, gamma=config.gamma)
    try:
        if config.prioritized:
            return PrioritizedReplayMemory(config.memory_capacity_transitions,
                                           alpha=config.per_alpha, **common)
        return ReplayMemory(config.memory_capacity_transitions, **common)
    except (ValueError, MemoryError) as e:  # the memory's own checks, in case ours missed one
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--memory-size {config.memory_capacity_transitions}: "
                          f"{first_line}") from None


def play_evaluation(agent: Agent, eval_env: Any, config: Config, run: Path,
                    progress: Progress, final: bool | None = None) -> list[float]:
    """Evaluation number progress.evaluations + 1, recorded in the run folder; final (default:
    at --steps) also writes final_model.pt."""
    index = progress.evaluations + 1
    frames = (PngFrameWriter(run / f"eval_{index:03d}", run / f"eval_{index:03d}.gif")
              if config.render else NullFrameWriter())
    scores = evaluate(agent, eval_env, epsilon=config.eval_eps, seeds=evaluation_seeds(config.seed, index), frames=frames)
    if final is None:
        final = progress.step == config.total_steps
    record_evaluation(run, agent, progress, scores, final=final)
    return scores


def train(config: Config, *, stop_when: Callable[[int], bool] = lambda step: False) -> RunResult:
    """Train (or continue) the run config describes. stop_when(agent_steps) -> True stops the
    run after that step as a signal would: checkpoint, then return. Raises ConfigError before
    anything is written, RunError after."""
    device = check_machine(config)
    envs.resolve_env_id(config.env_id)  # an unknown game is a ConfigError
    if not config.out_dir:
        raise ConfigError("--out: no run folder given")
    run = config.run_dir
    fresh = not (config.resume and has_checkpoint(run))
    memory = make_memory(config) if fresh else None  # before the folder: its checks first
    lock = RunLock(run) if config.resume else create_run_dir(config)
    try:
        return _train(config, run, device, memory, stop_when)
    except DiskError as e:
        raise disk_error(e, run, start="step 0") from None
    finally:
        lock.close()


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


def _train(config: Config, run: Path, device: torch.device, memory: Any,
           stop_when: Callable[[int], bool]) -> RunResult:
    """train() on a locked run folder; memory: a new one, or None to load the checkpoint's."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    n = config.envs  # one loop iteration: one agent step in each of n games, n agent steps
    starting_games(n, config.eval_episodes, config.env_processes)
    protocol = envs.PROTOCOLS[config.protocol]
    games = envs.TrainEnvs(config.env_id, n, config.seed, processes=config.env_processes,
                           protocol=protocol)
    eval_env = envs.EvalEnvs(config.env_id, config.eval_episodes, protocol=protocol,
                             max_steps=config.eval_max_steps, render=config.render)
    try:
        agent = Agent(games.action_count, config, device)
        act_rng = np.random.default_rng(config.seed)
        if memory is None:
            say(f"loading the checkpoint of {run}")
            memory, progress, pending = load_checkpoint(run, config, agent, act_rng, games)
        else:
            progress, pending = Progress(game_scores=[0.0] * n, game_steps=[0] * n), None
            tidy_run_dir(run, progress, replay_name=None)  # what a run stopped early left
            for stream, frame in enumerate(games.reset()):
                memory.start_episode(frame, stream=stream)
        episodes = GameLog(run, progress, n)  # after the folder is tidied to the checkpoint
    except BaseException:  # e.g. a damaged checkpoint: the games' processes end with it
        games.close()
        eval_env.close()
        raise
    telemetry = Telemetry(config, run, progress.step)
    updates = Updates(agent, memory, config, telemetry.learned, pending)
    started, wall_before = time.perf_counter(), progress.wall_seconds

    def resets_at(step: int) -> bool:
        """Whether a shrink-and-perturb reset follows agent step `step`."""
        return bool(config.reset_every_steps and step and step % config.reset_every_steps == 0)

    def reset_network(step: int) -> None:
        updates.finish()
        agent.reset(step)

    def checkpoint() -> None:
        progress.wall_seconds = wall_before + time.perf_counter() - started
        save_checkpoint(run, config, agent, memory, act_rng, progress, games, updates.pending())

    with StopOnSignal() as stop:
        try:
            while progress.step < config.total_steps:
                if resets_at(progress.step):
                    # at the top of the iteration after it: after that step's evaluation (which
                    # scores the trained network) and checkpoint (resumed, it resets too)
                    reset_network(progress.step)
                eps = epsilon(progress.step, start=config.eps_start, end=config.eps_end,
                              decay_steps=config.eps_decay_steps,
                              warmup_steps=config.learning_starts_steps)
                # act on exactly the states the memory will return for these transitions
                actions = agent.act_batch(memory.states(), eps, act_rng)
                result = games.step(actions)  # a game whose episode ended is reset in it
                memory.append_batch(actions, envs.learning_rewards(result.rewards),
                                    result.frames, result.terminated, result.truncated,
                                    reset_frames=result.reset_frames)
                first, progress.step = progress.step + 1, progress.step + n
                episodes.step(result.rewards, result.game_over, first)  # scores, episodes.csv
                step = progress.step

                # The boundaries of every agent step of the iteration, in step order, so that
                # the replay ratio and the target period do not depend on n; evaluations fall
                # between iterations (Config checks that --eval-every is a multiple of n).
                for boundary in range(first, step + 1):
                    if (boundary > config.learning_starts_steps
                            and boundary % config.train_every_steps == 0
                            and len(memory) >= config.batch_size):
                        updates.start(boundary)
                    if boundary % config.target_update_steps == 0:
                        updates.finish()
                        agent.sync_target()
                    if boundary < step and resets_at(boundary):
                        reset_network(boundary)  # inside the iteration: at once
                checkpointed = False
                if step % config.eval_every_steps == 0 or step == config.total_steps:
                    updates.finish()
                    paused_at = time.perf_counter()
                    scores = play_evaluation(agent, eval_env, config, run, progress)
                    checkpoint()
                    checkpointed = True
                    telemetry.evaluated(progress, len(scores), time.perf_counter() - paused_at)
                telemetry.stepped(progress, eps, n)

                if stop.signum is not None or stop_when(step):
                    if not checkpointed:
                        checkpoint()
                    telemetry.message(f"stopped at agent step {step}; continue with --resume {run}")
                    return RunResult(run, step, stopped_early=True, signum=stop.signum)
        except NonFiniteLoss as e:
            checkpoint()  # the networks from before the update that failed
            raise non_finite_loss(e, f"agent step {progress.step}", run) from None
        finally:
            telemetry.close()
            episodes.close()
            games.close()
            eval_env.close()
    return RunResult(run, progress.step, stopped_early=False)
