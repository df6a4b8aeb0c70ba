"""The training loop: act, step, store, learn, sync, evaluate; plus checkpoints and resume.

Resume is exact: a checkpoint is taken between two agent steps and holds everything the next
step depends on (networks, optimizer, counters, the epsilon rng, the replay memory with its rng,
and the training env's emulator and wrapper state), so a run stopped and resumed writes the same
rewards.txt as one that ran straight through. Evaluations keep no state between them (each is
seeded from the run's seed and its number), so they need nothing in the checkpoint.

Files of a run folder:
  config.json               the settings (written once, when the run starts)
  rewards.txt               one line per evaluation (evaluate.rewards_line), rewritten atomically
  rewards.png               the learning curve so far
  model_NNN.pt              the online network's state_dict after evaluation NNN
  final_model.pt            the same after the run's last evaluation (at --steps)
  checkpoint.pt             everything but the memory, for --resume (atomic)
  replay-<step>.bin         the replay memory the checkpoint names (written before it)
  eval_NNN/, eval_NNN.gif   with --render: every frame of evaluation NNN, and its best game
  tensorboard/              with --tensorboard: TensorBoard scalars
"""

from __future__ import annotations

import dataclasses
import datetime
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from atari_dqn import env as envs
from atari_dqn.agent import Agent, LearnStats
from atari_dqn.config import RESUME_MAY_CHANGE, Config, ConfigError, flag_of
from atari_dqn.evaluate import (NullFrameWriter, PngFrameWriter, evaluate, evaluation_seeds,
                                plot_curve, rewards_line)
from atari_dqn.files import atomic_torch_save, atomic_write_text
from atari_dqn.schedule import beta, epsilon

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
LOG_EVERY_STEPS = 1_000  # agent steps between TensorBoard points and progress-bar updates
# Agent steps between plain progress lines, printed instead of the bar when the output is not a
# terminal (a run under nohup writing to a log). A multiple of LOG_EVERY_STEPS.
LINE_EVERY_STEPS = 10_000


@dataclass
class Progress:
    """The loop's counters; saved in checkpoints."""
    step: int = 0                      # agent steps taken
    evaluations: int = 0
    rewards_lines: list[str] = field(default_factory=list)
    game_score: float = 0.0            # raw score of the game in progress (all its lives)
    last_game_score: float | None = None
    last_eval_score: float | None = None
    wall_seconds: float = 0.0          # wall-clock time spent in train(), summed over resumes


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    steps: int
    stopped_early: bool          # by a signal or stop_when; a checkpoint was written
    signum: int | None = None    # the signal that stopped the run, if one did


class StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop after the current agent step (and evaluation);
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


def make_memory(config: Config) -> Any:
    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    common = dict(frame_shape=(envs.SCREEN_SIZE, envs.SCREEN_SIZE), stack=envs.STACK,
                  seed=config.seed, n_step=config.n_step, gamma=config.gamma)
    if config.prioritized:
        return PrioritizedReplayMemory(config.memory_capacity_transitions, alpha=config.per_alpha,
                                       **common)
    return ReplayMemory(config.memory_capacity_transitions, **common)


def load_memory(config: Config, path: Path) -> Any:
    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    return (PrioritizedReplayMemory if config.prioritized else ReplayMemory).load(str(path))


# --- run folders and checkpoints ----------------------------------------------------------------

def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"--resume: no resumable run in {run_dir} (no {CHECKPOINT})")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the same problem to the user
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--resume: {path} is not a readable checkpoint ({first_line})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"--resume: {path} was written by an incompatible version")
    return checkpoint


def resume_config(run_dir: str, given: dict[str, Any]) -> Config:
    """The saved run's Config, with the settings a resume may change taken from `given` (the
    flags typed on the command line). Any other flag that differs from the run's is an error."""
    saved = read_checkpoint(Path(run_dir))["config"]
    saved.setdefault("overlap", False)  # runs from before --overlap acted and learned in turn
    # runs from before these flags: a scalar head on the Nature CNN, no augmentation, no resets
    for name, then in (("head", "scalar"), ("n_quantiles", 200), ("network", "nature"),
                       ("augment", False), ("reset_every_steps", 0)):
        saved.setdefault(name, then)
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and saved.get(name) != value:
            raise ConfigError(f"{flag_of(name)} cannot change when resuming: the run has "
                              f"{saved.get(name)!r}, got {value!r}")
    allowed = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    try:
        return Config(**{**saved, **allowed, "resume": run_dir, "out_dir": run_dir})
    except TypeError as e:
        raise ConfigError(f"--resume: the run's config does not fit this version ({e})") from None


def create_run_dir(config: Config) -> Path:
    """A new, empty run folder with config.json; never reuses a folder that has files in it."""
    run = config.run_dir
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise ConfigError(f"--out {run} already exists; choose another folder or --resume it")
    try:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run / "config.json", config.to_json() + "\n")
    except OSError as e:
        raise ConfigError(f"--out {run}: cannot write the run folder ({e.strerror or e})") from None
    return run


def save_checkpoint(run: Path, config: Config, agent: Agent, memory: Any,
                    act_rng: np.random.Generator, progress: Progress, env: Any,
                    pending_priorities: dict[str, list] | None = None) -> None:
    # The memory goes first under a name of its own; the checkpoint that names it replaces the
    # old one atomically; only then is the old memory deleted. A crash at any point leaves a
    # checkpoint whose memory file exists.
    replay_name = f"replay-{progress.step:09d}.bin"
    memory.save(str(run / replay_name))
    atomic_torch_save(run / CHECKPOINT, {
        "version": CHECKPOINT_VERSION,
        "config": dataclasses.asdict(config),
        "progress": dataclasses.asdict(progress),
        "agent": agent.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "act": act_rng.bit_generator.state},
        "env": envs.snapshot(env),
        "replay": replay_name,
        "pending_priorities": pending_priorities,
    })
    for old in run.glob("replay-*.bin"):
        if old.name != replay_name:
            old.unlink()


def load_checkpoint(run: Path, config: Config, agent: Agent, act_rng: np.random.Generator,
                    env: Any) -> tuple[Any, Progress, dict[str, list] | None]:
    checkpoint = read_checkpoint(run)
    agent.load_state_dict(checkpoint["agent"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    act_rng.bit_generator.state = checkpoint["rng"]["act"]
    try:
        memory = load_memory(config, run / checkpoint["replay"])
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"--resume: cannot load the replay memory {checkpoint['replay']} "
                          f"({e})") from None
    progress = Progress(**checkpoint["progress"])
    try:
        envs.restore(env, checkpoint["env"])
        print(f"resumed {run} at agent step {progress.step}: resumed the episode in progress")
    except Exception as e:  # e.g. an ALE whose state format changed
        obs, _ = env.reset(seed=config.seed + progress.step)
        memory.start_episode(obs)
        progress.game_score = 0.0
        print(f"resumed {run} at agent step {progress.step}: started a fresh episode "
              f"(the saved one could not be restored: {e})")
    return memory, progress, checkpoint.get("pending_priorities")


# --- the loop ---------------------------------------------------------------------------------

class Telemetry:
    """The progress bar and the (TensorBoard or null) logger: what a person watches."""

    def __init__(self, config: Config, run: Path, start_step: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.logger = (TensorBoardLogger(run / "tensorboard", start_step) if config.tensorboard
                       else NullLogger())
        self.bar = tqdm(total=config.total_steps, initial=start_step, unit="step", disable=None,
                        dynamic_ncols=True, smoothing=0.05)
        self.total_steps = config.total_steps
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
        tqdm.write(f"evaluation {progress.evaluations}: agent step {progress.step}, mean score "
                   f"{progress.last_eval_score:.1f} over {games} games; {wall} of wall clock "
                   f"so far")

    def stepped(self, progress: Progress, eps: float) -> None:
        self.bar.update(1)
        step = progress.step
        if step % LOG_EVERY_STEPS and step != self.total_steps:
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
                             game=_fmt(progress.last_game_score), refresh=False)
        if self.bar.disable and step % LINE_EVERY_STEPS == 0:
            tqdm.write(f"agent step {step} of {self.total_steps}: {rate:.0f} steps/s, epsilon "
                       f"{eps:.3f}, last game score {_fmt(progress.last_game_score)}")

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"


ACTOR_THREADS = 1  # torch threads of the loop's thread while a learner thread runs


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.ones(1 << 16).sum()  # a parallel op fixes this thread's count before others change it


class Updates:
    """Gradient updates, each on a batch sampled at a learning boundary (every train_every agent
    steps). start() samples on the loop's thread and runs the update; with prioritized replay the
    sampled transitions then get their new |TD error| priorities.

    With config.overlap the update runs on a worker thread while the loop acts the next
    train_every steps with the actor network (the weights from before the update), and finish()
    waits for it. Everything that touches the memory (sample, append, update_priorities) happens
    on the loop's thread at fixed agent steps, and the actor is synced only after finish(), so a
    seeded run is the same whatever the threads' timing. Without overlap, start() does it all.

    A stop between two boundaries only wait()s: the new priorities are kept (and checkpointed
    as pending()) and applied where the uninterrupted run applies them, so that the transitions
    appended meanwhile get the same max priority in both.
    """

    def __init__(self, agent: Agent, memory: Any, config: Config,
                 on_stats: Callable[[LearnStats], None],
                 pending: dict[str, list] | None = None) -> None:
        self.agent, self.memory, self.config, self.on_stats = agent, memory, config, on_stats
        self.pool = None
        if config.overlap:
            # torch's thread count is per thread (OpenMP): the learner gets config.threads, the
            # loop's thread one, as a batch-1 forward gains nothing from a second thread that
            # would only spin on the learner's cores (docs/throughput.md).
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="learner",
                                           initializer=_set_threads, initargs=(config.threads,))
            self.pool.submit(torch.get_num_threads).result()  # start it before the next line
            torch.set_num_threads(ACTOR_THREADS)
        self.in_flight: tuple[np.ndarray, Future[LearnStats]] | None = None
        self.priorities = (None if pending is None else
                           (np.array(pending["ids"], np.int64),
                            np.array(pending["priorities"], np.float32)))

    def start(self, step: int) -> None:
        self.finish()
        config = self.config
        if config.prioritized:
            batch = self.memory.sample(config.batch_size, beta(
                step, start=config.per_beta_start, total_steps=config.total_steps))
        else:
            batch = self.memory.sample(config.batch_size)
        if self.pool is None:
            self.in_flight = (batch.ids, Future())
            self.in_flight[1].set_result(self.agent.learn(batch, batch.weights))
            self.finish()
        else:
            self.in_flight = (batch.ids, self.pool.submit(self.agent.learn, batch, batch.weights))

    def wait(self) -> None:
        """Wait for the update in flight, if any: then the online network is up to date."""
        if self.in_flight is None:
            return
        ids, future = self.in_flight
        self.in_flight = None
        stats = future.result()
        self.on_stats(stats)
        if self.config.prioritized:
            self.priorities = (ids, stats.td_errors)

    def finish(self) -> None:
        """wait(), then apply the update's priorities."""
        self.wait()
        if self.priorities is not None:
            self.memory.update_priorities(*self.priorities)
            self.priorities = None

    def pending(self) -> dict[str, list] | None:
        """Priorities computed but not yet applied (after wait()), for a checkpoint."""
        if self.priorities is None:
            return None
        ids, priorities = self.priorities
        return {"ids": ids.tolist(), "priorities": priorities.tolist()}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def evaluate_and_record(agent: Agent, eval_env: Any, config: Config, run: Path,
                        progress: Progress) -> list[float]:
    """Evaluation number progress.evaluations + 1: play, append to rewards.txt, redraw the
    curve, save the model."""
    index = progress.evaluations + 1
    frames = (PngFrameWriter(run / f"eval_{index:03d}", run / f"eval_{index:03d}.gif")
              if config.render else NullFrameWriter())
    scores = evaluate(agent, eval_env, games=config.eval_episodes, epsilon=config.eval_eps,
                      seeds=evaluation_seeds(config.seed, index), frames=frames)
    progress.evaluations = index
    progress.last_eval_score = float(np.mean(scores))
    progress.rewards_lines.append(rewards_line(index, progress.step, progress.last_eval_score))
    atomic_write_text(run / "rewards.txt", "\n".join(progress.rewards_lines) + "\n")
    plot_curve(run / "rewards.txt", run / "rewards.png", title=run.name)
    model = {k: v.cpu() for k, v in agent.online.state_dict().items()}
    atomic_torch_save(run / f"model_{index:03d}.pt", model)
    if progress.step == config.total_steps:  # a plain state_dict, as atari_dqn.policy loads it
        atomic_torch_save(run / "final_model.pt", model)
    return scores


def train(config: Config, *, stop_when: Callable[[int], bool] = lambda step: False) -> RunResult:
    """Train (or continue) the run config describes. stop_when(agent_steps) -> True stops the
    run after that step as a signal would: checkpoint, then return."""
    device = pick_device(config.device)
    run = config.run_dir if config.resume else create_run_dir(config)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    env = envs.make_train_env(config.env_id)
    eval_env = envs.make_eval_env(config.env_id, max_steps=config.eval_max_steps,
                                  render=config.render)
    agent = Agent(int(env.action_space.n), config, device)
    act_rng = np.random.default_rng(config.seed)
    if config.resume:
        memory, progress, pending = load_checkpoint(run, config, agent, act_rng, env)
    else:
        memory, progress, pending = make_memory(config), Progress(), None
        obs, _ = env.reset(seed=config.seed)
        memory.start_episode(obs)
    telemetry = Telemetry(config, run, progress.step)
    updates = Updates(agent, memory, config, telemetry.learned, pending)
    started, wall_before = time.perf_counter(), progress.wall_seconds

    def count_wall_clock() -> None:  # before progress is printed or saved
        progress.wall_seconds = wall_before + time.perf_counter() - started

    with StopOnSignal() as stop:
        try:
            while progress.step < config.total_steps:
                if (config.reset_every_steps and progress.step
                        and progress.step % config.reset_every_steps == 0):
                    # at the top of the step after a multiple: after that step's evaluation
                    # (which scores the trained network) and checkpoint (resumed, it resets too)
                    updates.finish()
                    agent.reset(progress.step)
                    agent.sync_actor()
                eps = epsilon(progress.step, start=config.eps_start, end=config.eps_end,
                              decay_steps=config.eps_decay_steps,
                              warmup_steps=config.learning_starts_steps)
                # act on exactly the state the memory will return for this transition; with
                # overlap, while the update started at the last learning boundary runs
                action = agent.act(memory.state(), eps, act_rng, actor=True)
                obs, reward, terminated, truncated, info = env.step(action)
                memory.append(action, envs.learning_reward(reward), obs, terminated, truncated)
                progress.game_score += float(reward)
                if terminated or truncated:  # a lost life or the end of the game
                    if info["game_over"]:
                        progress.last_game_score, progress.game_score = progress.game_score, 0.0
                    obs, _ = env.reset()
                    memory.start_episode(obs)
                progress.step += 1
                step = progress.step

                if (step > config.learning_starts_steps and step % config.train_every_steps == 0
                        and len(memory) >= config.batch_size):
                    updates.finish()
                    agent.sync_actor()
                    updates.start(step)
                if step % config.target_update_steps == 0:
                    updates.finish()
                    agent.sync_target()
                checkpointed = False
                if step % config.eval_every_steps == 0 or step == config.total_steps:
                    updates.finish()
                    paused_at = time.perf_counter()
                    scores = evaluate_and_record(agent, eval_env, config, run, progress)
                    count_wall_clock()
                    save_checkpoint(run, config, agent, memory, act_rng, progress, env,
                                    updates.pending())
                    checkpointed = True
                    telemetry.evaluated(progress, len(scores), time.perf_counter() - paused_at)
                telemetry.stepped(progress, eps)

                if stop.signum is not None or stop_when(step):
                    updates.wait()  # the actor keeps its older weights: they are saved too
                    count_wall_clock()
                    if not checkpointed:
                        save_checkpoint(run, config, agent, memory, act_rng, progress, env,
                                        updates.pending())
                    tqdm.write(f"stopped at agent step {step}; continue with --resume {run}")
                    return RunResult(run, step, stopped_early=True, signum=stop.signum)
        finally:
            updates.close()
            telemetry.close()
            env.close()
            eval_env.close()
    return RunResult(run, progress.step, stopped_early=False)
