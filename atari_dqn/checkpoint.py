"""The run folder: its files, the checkpoint format, and resuming from it.

Resume is exact: a checkpoint is taken between two iterations of the loop and holds everything
the next one depends on (networks, optimizer, counters, the epsilon rng, the replay memory with
its rng, and the training games' emulator and wrapper states), so a run stopped and resumed
writes the same rewards.txt as one that ran straight through, for any --envs. Evaluations keep no state between them (each is
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
  .lock                     locked (flock) by the trainer working on the folder; holds its pid

Only one trainer works on a folder at a time (RunLock). When a trainer takes a folder it tidies
it (tidy_run_dir): temporary files a killed writer left are removed, and what was written after
the checkpoint (rewards.txt lines, models, frames of later evaluations) is put back to the
checkpoint's progress, so rewards.txt is never ahead of the checkpoint. A folder holding only
config.json (a run stopped before its first checkpoint) resumes by starting from step 0.

Checkpoint format (CHECKPOINT_VERSION 1), a dict saved with torch.save and read back with
weights_only=True: version, config (Config as a dict), progress (Progress as a dict), agent
(Agent.state_dict()), rng ({"torch": torch's RNG state, "act": the epsilon rng's state}), env
(TrainEnvs.snapshot(): a list, one snapshot per training game; a single dict in checkpoints
from before --envs, read as a list of one), replay (the snapshot's file name),
pending_priorities (Updates.pending()). An offline run's checkpoint (atari_dqn/offline.py) has
env [] and replay "" (the dataset is never copied) and adds offline: the dataset's path, size
and sha256, and the sampler's state; its progress.step counts gradient updates. Progress's per-game scores (game_scores) were one
game_score before --envs; both load.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atari_dqn.agent import Agent
from atari_dqn.config import RESUME_MAY_CHANGE, Config, ConfigError, flag_of, saved_settings
from atari_dqn.evaluate import X_LABEL, plot_curve, rewards_line
from atari_dqn.files import DiskError, atomic_torch_save, atomic_write_text, writing

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
FINAL_MODEL = "final_model.pt"  # the network after the run's last evaluation, at --steps
CONFIG = "config.json"
LOCK = ".lock"
# What a checkpoint must hold, with the type of each entry.
CHECKPOINT_KEYS = {"version": int, "config": dict, "progress": dict, "agent": dict, "rng": dict,
                   "env": (list, dict), "replay": str}
# Files of an evaluation, numbered NNN: removed on resume when NNN is past the checkpoint's.
EVALUATION_FILE = re.compile(r"^(?:model_|eval_)(\d{3,})(?:\.pt|\.gif)?$")
# Temporary files of atomic writes (files.py) and of replay snapshots (csrc: <path>.tmp.<pid>).
TEMPORARY_GLOBS = (".*.tmp.*", "replay-*.bin.tmp.*")


UPDATE_UNIT = "gradient updates"  # an offline run's step (rewards.png's x axis)


@dataclass
class Progress:
    """The loop's counters; saved in checkpoints."""
    step: int = 0                      # agent steps taken (gradient updates offline: unit)
    evaluations: int = 0
    rewards_lines: list[str] = field(default_factory=list)
    game_scores: list[float] = field(default_factory=list)  # raw score of each training game
    #                                  in progress (all its lives so far), one per --envs game
    last_game_score: float | None = None
    last_eval_score: float | None = None
    wall_seconds: float = 0.0          # wall-clock time spent in train(), summed over resumes
    unit: str = X_LABEL                # what step counts, as rewards.png's x axis names it


def load_memory(config: Config, path: Path) -> Any:
    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    return (PrioritizedReplayMemory if config.prioritized else ReplayMemory).load(str(path))


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"--resume: no resumable run in {run_dir} (no {CHECKPOINT})")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise ConfigError(f"--resume: cannot read {path} ({e.strerror or e})") from None
    except Exception:  # torch's own message would advise weights_only=False: not for a user
        raise ConfigError(f"--resume: {path} is not a readable checkpoint (damaged, or not "
                          f"a checkpoint)") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"--resume: {path} was written by an incompatible version")
    for key, kind in CHECKPOINT_KEYS.items():
        if not isinstance(checkpoint.get(key), kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"--resume: {path} is damaged (its {key!r} entry is missing or "
                              f"not a {names})")
    return checkpoint


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).is_file()


def saved_run(run_dir: Path) -> tuple[dict[str, Any], int]:
    """(the run's saved settings, agent steps it has made): from its checkpoint, or from
    config.json at step 0 for a run stopped before its first checkpoint."""
    if has_checkpoint(run_dir):
        checkpoint = read_checkpoint(run_dir)
        return checkpoint["config"], int(checkpoint["progress"].get("step", 0))
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"--resume: no resumable run in {run_dir} (no {CHECKPOINT} or "
                          f"{CONFIG})")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume: {path} is not a readable run config ({e})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {path} is not a readable run config")
    return saved, 0


def resume_config(run_dir: str, given: dict[str, Any]) -> Config:
    """The saved run's Config, with the settings a resume may change taken from `given` (the
    flags typed on the command line). Any other flag that differs from the run's is an error,
    and so are --out naming another folder and --steps not above the steps already made."""
    saved, steps_made = saved_run(Path(run_dir))
    if saved.get("overlap"):
        print(f"note: {run_dir} was made with --overlap, which was removed (docs/throughput.md); "
              f"it goes on acting and learning in turn, not exactly as the overlapped run would "
              f"have", file=sys.stderr)
    saved = saved_settings(saved)  # runs from before --head, --network, ...: what they did then
    if given.get("offline") and not saved["offline"]:
        raise ConfigError(f"--offline cannot be given when resuming {run_dir}: it trains online")
    out = given.get("out_dir")
    if out and Path(out).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"--out cannot be given with --resume: the run goes on in {run_dir}")
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and saved.get(name) != value:
            raise ConfigError(f"{flag_of(name)} cannot change when resuming: the run has "
                              f"{saved.get(name)!r}, got {value!r}")
    allowed = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    try:
        config = Config(**{**saved, **allowed, "resume": run_dir, "out_dir": run_dir})
    except TypeError as e:
        raise ConfigError(f"--resume: the run's config does not fit this version ({e})") from None
    if config.offline and config.total_updates <= steps_made:
        raise ConfigError(f"--resume: the run has made {steps_made} of its --updates "
                          f"{config.total_updates} updates; give --updates above {steps_made} "
                          f"to train longer")
    if not config.offline and config.total_steps <= steps_made:
        raise ConfigError(f"--resume: the run has made {steps_made} of its --steps "
                          f"{config.total_steps} agent steps; give --steps above {steps_made} "
                          f"to train longer")
    return config


class RunLock:
    """An exclusive flock on <run>/.lock while this object is open. Only one trainer works on a
    run folder at a time; the kernel drops the lock when its process dies, however it dies, so a
    killed trainer never blocks a resume."""

    def __init__(self, run: Path) -> None:
        path = Path(run) / LOCK
        with writing(path):
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise ConfigError(f"{run} is in use by another trainer (pid {holder}); wait for it "
                              f"to stop, or choose another folder") from None
        with writing(path):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the flock
            self.fd = -1


def create_run_dir(config: Config) -> RunLock:
    """A new run folder with config.json, locked; never reuses a folder that has files in it.
    If it cannot be written, no folder is left behind (an existing empty one stays empty)."""
    run = config.run_dir
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise ConfigError(f"--out {run} already exists; choose another folder or --resume it")
    existed = run.exists()
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {run}: cannot write the run folder ({e.strerror or e})") from None
    lock = None
    try:
        lock = RunLock(run)  # a ConfigError if another trainer took the new folder first
        atomic_write_text(run / CONFIG, config.to_json() + "\n")
    except DiskError as e:
        if lock is not None:
            (run / LOCK).unlink(missing_ok=True)
            lock.close()
        if not existed and not any(run.iterdir()):
            run.rmdir()
        raise ConfigError(f"--out {run}: cannot write the run folder ({e.cause})") from None
    return lock


def tidy_run_dir(run: Path, progress: Progress, replay_name: str | None) -> None:
    """Put the folder back to the checkpoint's state (progress, whose memory is replay_name):
    remove temporary files, replay snapshots other than replay_name, final_model.pt, and models
    and frames of evaluations past progress.evaluations; rewrite rewards.txt and rewards.png from progress.
    Call only while holding the folder's RunLock."""
    for pattern in TEMPORARY_GLOBS:
        for path in run.glob(pattern):
            with writing(path):
                path.unlink(missing_ok=True)
    for path in run.glob("replay-*.bin"):
        if path.name != replay_name:
            with writing(path):
                path.unlink(missing_ok=True)
    with writing(run / FINAL_MODEL):  # a resumed run trains on: its final model is still ahead
        (run / FINAL_MODEL).unlink(missing_ok=True)
    for path in run.iterdir():
        match = EVALUATION_FILE.match(path.name)
        if match and int(match.group(1)) > progress.evaluations:
            with writing(path):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    write_rewards(run, progress)


def write_rewards(run: Path, progress: Progress) -> None:
    """rewards.txt and the curve, from progress.rewards_lines (none: neither file)."""
    if not progress.rewards_lines:
        for name in ("rewards.txt", "rewards.png"):
            with writing(run / name):
                (run / name).unlink(missing_ok=True)
        return
    atomic_write_text(run / "rewards.txt", "\n".join(progress.rewards_lines) + "\n")
    plot_curve(run / "rewards.txt", run / "rewards.png", title=run.name, x_label=progress.unit)


def save_checkpoint(run: Path, config: Config, agent: Agent, memory: Any,
                    act_rng: np.random.Generator, progress: Progress, games: Any,
                    pending_priorities: dict[str, list] | None = None) -> None:
    # The memory goes first under a name of its own; the checkpoint that names it replaces the
    # old one atomically; only then is the old memory deleted. A crash at any point leaves a
    # checkpoint whose memory file exists.
    replay_name = f"replay-{progress.step:09d}.bin"
    with writing(run / replay_name):
        memory.save(str(run / replay_name))
    atomic_torch_save(run / CHECKPOINT, {
        "version": CHECKPOINT_VERSION,
        "config": dataclasses.asdict(config),
        "progress": dataclasses.asdict(progress),
        "agent": agent.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "act": act_rng.bit_generator.state},
        "env": [] if games is None else games.snapshot(),  # None: Ape-X actors' games
        "replay": replay_name,
        "pending_priorities": pending_priorities,
    })
    for old in run.glob("replay-*.bin"):
        if old.name != replay_name:
            with writing(old):
                old.unlink()


def save_offline_checkpoint(run: Path, config: Config, agent: Agent, progress: Progress,
                            offline: dict[str, Any]) -> None:
    """An offline run's checkpoint: no memory and no games; `offline` records the dataset and
    the sampler's state (atari_dqn/offline.py)."""
    atomic_torch_save(run / CHECKPOINT, {
        "version": CHECKPOINT_VERSION,
        "config": dataclasses.asdict(config),
        "progress": dataclasses.asdict(progress),
        "agent": agent.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "env": [],
        "replay": "",
        "offline": offline,
    })


def load_offline_checkpoint(run: Path, agent: Agent) -> tuple[Progress, dict[str, Any]]:
    """Load an offline run's checkpoint into agent; return its progress and its offline entry."""
    checkpoint = read_checkpoint(run)
    try:
        agent.load_state_dict(checkpoint["agent"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        progress = Progress(**checkpoint["progress"])
        offline = checkpoint["offline"]
        if not isinstance(offline, dict):
            raise TypeError("its 'offline' entry is not a dict")
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--resume: {run / CHECKPOINT} is damaged ({first_line})") from None
    tidy_run_dir(run, progress, replay_name=None)
    return progress, offline


def load_checkpoint(run: Path, config: Config, agent: Agent, act_rng: np.random.Generator,
                    games: Any) -> tuple[Any, Progress, dict[str, list] | None]:
    """Load the run's checkpoint into agent, act_rng and games (env.TrainEnvs; None for a
    distributed run, whose actors start fresh games); return the memory, the progress and the
    pending priorities."""
    checkpoint = read_checkpoint(run)
    try:
        agent.load_state_dict(checkpoint["agent"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        act_rng.bit_generator.state = checkpoint["rng"]["act"]
        saved = dict(checkpoint["progress"])
        if "game_score" in saved:  # a checkpoint from before --envs: one game
            saved["game_scores"] = [saved.pop("game_score")]
        progress = Progress(**saved)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--resume: {run / CHECKPOINT} is damaged ({first_line})") from None
    try:
        memory = load_memory(config, run / checkpoint["replay"])
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"--resume: cannot load the replay memory {checkpoint['replay']} "
                          f"({e})") from None
    tidy_run_dir(run, progress, checkpoint["replay"])
    snaps = checkpoint["env"]
    if games is None:  # Ape-X actors (distributed.py): they start fresh games themselves
        progress.game_scores = [0.0] * config.streams
        print(f"resumed {run} at agent step {progress.step}: the actors start fresh games")
        return memory, progress, checkpoint.get("pending_priorities")
    try:
        games.restore([snaps] if isinstance(snaps, dict) else snaps)
        print(f"resumed {run} at agent step {progress.step}: resumed the episode in progress")
    except Exception as e:  # e.g. an ALE whose state format changed
        for stream, frame in enumerate(games.reset()):
            memory.start_episode(frame, stream=stream)
        progress.game_scores = [0.0] * len(games)
        print(f"resumed {run} at agent step {progress.step}: started fresh games "
              f"(the saved ones could not be restored: {e})")
    return memory, progress, checkpoint.get("pending_priorities")


def record_evaluation(run: Path, agent: Agent, progress: Progress, scores: list[float], *,
                      final: bool = False) -> None:
    """Evaluation number progress.evaluations + 1 played these scores: count it, append its line
    to rewards.txt, redraw the curve, save the model (and, for the run's last evaluation, the
    same weights as final_model.pt: a plain state_dict, as atari_dqn.policy loads it)."""
    index = progress.evaluations + 1
    progress.evaluations = index
    progress.last_eval_score = float(np.mean(scores))
    progress.rewards_lines.append(rewards_line(index, progress.step, progress.last_eval_score))
    write_rewards(run, progress)
    model = {k: v.cpu() for k, v in agent.online.state_dict().items()}
    atomic_torch_save(run / f"model_{index:03d}.pt", model)
    if final:
        atomic_torch_save(run / FINAL_MODEL, model)
