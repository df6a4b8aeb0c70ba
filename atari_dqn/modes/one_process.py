"""The one-process mode: act, step, store, learn, sync (the lifecycle evaluates).

This module is the one-process mode: a Source (OneProcess) for the one lifecycle in
run/lifecycle.py, which owns the folder, the evaluation schedule, checkpoints, signals and the stop
and NaN policies. The parts live elsewhere: the run folder, checkpoints and resume in
run/checkpoint.py, the learner's schedule in run/updates.py, the progress bar and TensorBoard in
run/telemetry.py, evaluation games in run/evaluate.py, the training games' scores (episodes.csv) in
run/episodes.py, and the games themselves, played under the run's --protocol, in envs/atari.py.
Training and evaluation act through the same call, Agent.act_batch, on states stacked by the replay
memory.

One iteration of the loop plays one agent step in each of the --envs games (envs.TrainEnvs; the
memory has one stream per game), acting on all of them with one batched forward: --envs agent steps.
Every count (--steps, --train-every, --target-update, --eval-every, --learning-starts,
--reset-every, epsilon, beta) is in agent steps over all games, and the boundaries an iteration
crosses are acted on in step order, so the replay ratio does not depend on --envs; with --envs 1 the
loop is the single-game loop, step for step (tests/test_train.py holds it to that).

Everything about the settings and the machine is checked before the run folder is made. Once it
is, a run ends in one of three ways: it finishes; a signal or stop_when stops it after a
checkpoint; or a RunError (one line, raised after the last good state is checkpointed or with the
last checkpoint intact): a disk error, or a non-finite loss.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.config import Config
from atari_dqn.envs import atari as envs
from atari_dqn.learn.agent import Agent
from atari_dqn.learn.schedule import epsilon
from atari_dqn.modes.memory import make_memory
from atari_dqn.run.checkpoint import (Part, Progress, ReplayFile, load_checkpoint, online_parts,
                                      tidy_run_dir)
from atari_dqn.run.episodes import GameLog
from atari_dqn.run.evaluate import evaluation_games
from atari_dqn.run.lifecycle import RunResult, StopRequest, prepare, run_source
from atari_dqn.run.telemetry import Telemetry, say, starting_games
from atari_dqn.run.updates import PendingPriorities, Updates


def train(config: Config, *, stop_when: Callable[[int], bool] = lambda step: False) -> RunResult:
    """Train (or continue) the run config describes. stop_when(agent_steps) -> True stops the
    run after that step as a signal would: checkpoint, then return. Raises ConfigError before
    anything is written, RunError after."""
    device, fresh = prepare(config)
    memory = make_memory(config) if fresh else None  # before the folder: its checks first

    def source(run: Path) -> OneProcess:
        starting_games(config.envs, config.eval_episodes, config.env_processes)
        return OneProcess(config, run, device, memory)
    return run_source(config, "step 0", source, stop_when)


class TrainingGames:
    """The training games as a part of the checkpoint (envs.TrainEnvs's state()/restore()), but
    a saved game that cannot be restored (an ALE whose state format changed) is no damaged
    checkpoint: restore() keeps the error (.failure), and the run starts fresh games."""

    def __init__(self, games: envs.TrainEnvs) -> None:
        self.games, self.failure = games, None

    def state(self) -> list[dict[str, Any]]:
        return self.games.state()

    def restore(self, snaps: list[dict[str, Any]]) -> None:
        try:
            self.games.restore(snaps)
        except Exception as e:  # e.g. an ALE whose state format changed
            self.failure = e


class OneProcess:
    """The one-process Source: --envs games in this process (envs.TrainEnvs), acting through the
    agent into the replay memory, learning at the learning boundaries. One iteration: one agent
    step in each game, --envs agent steps."""

    def __init__(self, config: Config, run: Any, device: Any, memory: Any) -> None:
        """memory: a new one, or None to load the checkpoint's."""
        self.config, self.run = config, run
        self.total = config.total_steps
        protocol = envs.PROTOCOLS[config.protocol]
        with ExitStack() as made:  # what is made below ends if a later step fails
            self.games = envs.TrainEnvs(config.env_id, config.envs, config.seed,
                                        processes=config.env_processes, protocol=protocol)
            made.callback(self.games.close)
            self.eval_env = evaluation_games(config)
            made.callback(self.eval_env.close)
            self.agent = Agent(self.games.action_count, config, device)
            self.act_rng = np.random.default_rng(config.seed)
            n = config.envs
            self.progress = Progress(game_scores=[0.0] * n, game_steps=[0] * n)
            self.pending = PendingPriorities()
            self.training_games = TrainingGames(self.games)
            self.replay = ReplayFile(run, self.progress, memory, prioritized=config.prioritized)
            if memory is None:
                self.resume()  # e.g. a damaged checkpoint raises here
            else:
                self.fresh_start()
            self.memory = self.replay.memory  # the one memory from here on (restore makes it)
            self.episodes = GameLog(run, self.progress, config.envs)  # after the folder is tidied
            made.pop_all()  # all made: from here on close() ends them

    def parts(self) -> dict[str, Part]:
        """The checkpoint's registry (run/checkpoint.py): key -> part, in the order written."""
        return online_parts(self.config, self.progress, self.agent, self.act_rng,
                            self.training_games, self.replay, self.pending)

    def fresh_start(self) -> None:
        tidy_run_dir(self.run, self.progress, replay_name=None)  # what a run stopped early left
        self.new_games()

    def new_games(self) -> None:
        """Every game reset: its first frame starts its stream's episode, its score from 0."""
        for stream, frame in enumerate(self.games.reset()):
            self.replay.memory.start_episode(frame, stream=stream)
        n = len(self.games)
        self.progress.game_scores, self.progress.game_steps = [0.0] * n, [0] * n

    def resume(self) -> None:
        """Every part from the checkpoint; fresh games where the saved ones cannot be restored."""
        say(f"loading the checkpoint of {self.run}")
        load_checkpoint(self.run, self.parts())
        at = f"resumed {self.run} at agent step {self.progress.step}"
        failure = self.training_games.failure
        if failure is None:
            print(f"{at}: resumed the episode in progress")
            return
        self.new_games()
        print(f"{at}: started fresh games (the saved ones could not be restored: {failure})")

    def start(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.updates = Updates(self.agent, self.memory, self.config, telemetry.learned,
                               self.pending)

    def resets_at(self, step: int) -> bool:
        """Whether a shrink-and-perturb reset follows agent step `step`."""
        every = self.config.reset_every_steps
        return bool(every and step and step % every == 0)

    def reset_network(self, step: int) -> None:
        self.updates.finish()
        self.agent.reset(step)

    def epsilon(self, progress: Progress) -> float:
        c = self.config
        return epsilon(progress.step, start=c.eps_start, end=c.eps_end,
                       decay_steps=c.eps_decay_steps, warmup_steps=c.learning_starts_steps)

    def stepped(self, progress: Progress) -> None:
        self.telemetry.stepped(progress, self.epsilon(progress), self.config.envs)

    def iterate(self, progress: Progress, stop: StopRequest) -> None:
        """Act, step, store, then each agent step's learning boundaries."""
        if self.resets_at(progress.step):
            # at the top of the iteration after it: after that step's evaluation (which
            # scores the trained network) and checkpoint (resumed, it resets too)
            self.reset_network(progress.step)
        # act on exactly the states the memory will return for these transitions
        actions = self.agent.act_batch(self.memory.states(), self.epsilon(progress), self.act_rng)
        result = self.games.step(actions)  # a game whose episode ended is reset in it
        self.memory.append_batch(actions, envs.learning_rewards(result.rewards), result.frames,
                                 result.terminated, result.truncated,
                                 reset_frames=result.reset_frames)
        first, progress.step = progress.step + 1, progress.step + self.config.envs
        self.episodes.step(result.rewards, result.game_over, first)  # scores, episodes.csv
        self.boundaries(first, progress.step)

    def boundaries(self, first: int, step: int) -> None:
        """The boundaries of agent steps first..step, in step order, so that the replay ratio
        and the target period do not depend on --envs; evaluations fall between iterations
        (Config checks that --eval-every is a multiple of --envs)."""
        c = self.config
        for boundary in range(first, step + 1):
            if (boundary > c.learning_starts_steps and boundary % c.train_every_steps == 0
                    and len(self.memory) >= c.batch_size):
                self.updates.start(boundary)
            if boundary % c.target_update_steps == 0:
                self.updates.finish()
                self.agent.sync_target()
            if boundary < step and self.resets_at(boundary):
                self.reset_network(boundary)  # inside the iteration: at once

    def settle(self) -> None:
        self.updates.finish()

    def failed_at(self, progress: Progress) -> str:
        return f"agent step {progress.step}"

    def close(self) -> None:
        self.episodes.close()
        self.games.close()
        self.eval_env.close()
