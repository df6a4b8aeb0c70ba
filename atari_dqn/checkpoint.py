"""The run folder: its files, the checkpoint format, and resuming from it.

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
  checkpoint.pt             everything but the memory, for --resume (atomic)
  replay-<step>.bin         the replay memory the checkpoint names (written before it)
  eval_NNN/, eval_NNN.gif   with --render: every frame of evaluation NNN, and its best game
  tensorboard/              with --tensorboard: TensorBoard scalars

Checkpoint format (CHECKPOINT_VERSION 1), a dict saved with torch.save and read back with
weights_only=True: version, config (Config as a dict), progress (Progress as a dict), agent
(Agent.state_dict()), rng ({"torch": torch's RNG state, "act": the epsilon rng's state}), env
(env.snapshot()), replay (the snapshot's file name), pending_priorities (Updates.pending()).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atari_dqn import env as envs
from atari_dqn.agent import Agent
from atari_dqn.config import RESUME_MAY_CHANGE, Config, ConfigError, flag_of
from atari_dqn.evaluate import plot_curve, rewards_line
from atari_dqn.files import atomic_torch_save, atomic_write_text

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1


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


def load_memory(config: Config, path: Path) -> Any:
    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    return (PrioritizedReplayMemory if config.prioritized else ReplayMemory).load(str(path))


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


def record_evaluation(run: Path, agent: Agent, progress: Progress, scores: list[float]) -> None:
    """Evaluation number progress.evaluations + 1 played these scores: count it, append its line
    to rewards.txt, redraw the curve, save the model."""
    index = progress.evaluations + 1
    progress.evaluations = index
    progress.last_eval_score = float(np.mean(scores))
    progress.rewards_lines.append(rewards_line(index, progress.step, progress.last_eval_score))
    atomic_write_text(run / "rewards.txt", "\n".join(progress.rewards_lines) + "\n")
    plot_curve(run / "rewards.txt", run / "rewards.png", title=run.name)
    atomic_torch_save(run / f"model_{index:03d}.pt",
                      {k: v.cpu() for k, v in agent.online.state_dict().items()})
