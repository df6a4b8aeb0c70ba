"""The run folder: its files, the checkpoint format, and resuming from it.

Resume is exact: a checkpoint is taken between two iterations of the loop and holds everything
the next one depends on (networks, optimizer, counters, the epsilon rng, the replay memory with
its rng, and the training games' emulator and wrapper states), so a run stopped and resumed
writes the same rewards.txt as one that ran straight through, for any --envs. Evaluations keep no state between them (each is
seeded from the run's seed and its number), so they need nothing in the checkpoint.

Files of a run folder:
  config.json               the settings (written once, when the run starts)
  rewards.txt               one line per evaluation (curve.rewards_line), rewritten atomically
  episodes.csv              one line per finished training game, appended (atari_dqn/episodes.py)
  rewards.png               the learning curve so far
  model_NNN.pt              the online network's state_dict after evaluation NNN
  checkpoint.pt             everything but the memory, for --resume (atomic)
  replay-<step>.bin         the replay memory the checkpoint names (written before it)
  eval_NNN/, eval_NNN.gif   with --render: every frame of evaluation NNN, and its best game
  tensorboard/              with --tensorboard: TensorBoard scalars
  .lock                     locked (flock) by the trainer working on the folder; holds its pid

Only one trainer works on a folder at a time (RunLock). When a trainer takes a folder it tidies
it (tidy_run_dir): temporary files a killed writer left are removed, and what was written after
the checkpoint (rewards.txt lines, episodes.csv lines, models, frames of later evaluations) is put
back to the checkpoint's progress, so rewards.txt and episodes.csv are never ahead of the
checkpoint.

A folder without checkpoint.pt is tidied back to nothing, so it is taken only where that loses
nothing (left_by_a_killed_trainer):
  - --resume of config.json plus what a trainer killed before its first checkpoint leaves (its
    .lock, temporary files of atomic writes, tensorboard/, episodes.csv) starts from step 0;
    tensorboard/ is kept as it is, episodes.csv starts afresh.
  - --out of a folder that is empty or holds only what a trainer killed while creating it leaves
    (an unlocked .lock, temporary files) makes the new run there.
  - Anything else without a checkpoint (rewards.txt, a model, a replay snapshot: results that no
    checkpoint accounts for, such as every committed reference run, git leaving checkpoints out)
    is refused by both, in one line that says what the folder holds; nothing is changed.
With a checkpoint, its config must agree with config.json on every setting a resume may not
change (a checkpoint copied from another run is refused), and every entry is checked for its type
and range when read (read_checkpoint): a damaged checkpoint is one line, not a traceback.

Checkpoint format (CHECKPOINT_VERSION 2), a dict saved with torch.save and read back with
weights_only=True: version, config (Config as a dict), progress (Progress as a dict), agent
(Agent.state_dict()), rng ({"torch": torch's RNG state, "act": the epsilon rng's state}), env
(TrainEnvs.snapshot(): a list, one snapshot per training game), replay (the snapshot's file name),
pending_priorities (Updates.pending()). An offline run's checkpoint (atari_dqn/offline.py) has
env [] and replay "" (the dataset is never copied) and adds offline: the dataset's path, size
and sha256, and the sampler's state; its progress.step counts gradient updates. Progress's
game_steps and episodes_bytes (episodes.csv) are absent from checkpoints from before episodes.csv:
such a run starts the file afresh.

Older formats are read through explicit migrations (MIGRATIONS: version n -> n + 1, applied in
turn by read_checkpoint), never by guessing at layouts where they are used. Version 1 (up to
commit dcfbbb9; tests/data/checkpoint-v1 keeps one) was written over several releases and holds
their forms: progress.game_score (one game, before --envs) for game_scores, env as one snapshot
dict (before --envs) for a list, and an agent "actor" network (--overlap, removed). migrate_v1
rewrites each into version 2's form.
"""

from __future__ import annotations

import dataclasses
import fcntl
import fnmatch
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atari_dqn.agent import Agent
from atari_dqn.config import RESUME_MAY_CHANGE, Config, ConfigError, flag_of, saved_settings
from atari_dqn.curve import rewards_line, write_rewards
from atari_dqn.episodes import EPISODES, UNKNOWN_STEPS, tidy_episodes
from atari_dqn.files import DiskError, atomic_torch_save, atomic_write_text, writing
from atari_dqn.progress import Progress  # noqa: F401 (part of this module's face: checkpoint.Progress)
from atari_dqn.replay import load_snapshot

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 2
FINAL_MODEL = "final_model.pt"  # the network after the run's last evaluation, at --steps
CONFIG = "config.json"
LOCK = ".lock"
# What a checkpoint of each version must hold, with the type of each entry (checked before
# migrating it).
_V2_KEYS = {"version": int, "config": dict, "progress": dict, "agent": dict, "rng": dict,
            "env": list, "replay": str}
CHECKPOINT_KEYS = {1: {**_V2_KEYS, "env": (list, dict)}, 2: _V2_KEYS}
# Files of an evaluation, numbered NNN: removed on resume when NNN is past the checkpoint's.
EVALUATION_FILE = re.compile(r"^(?:model_|eval_)(\d{3,})(?:\.pt|\.gif)?$")
# Temporary files of atomic writes (files.py) and of replay snapshots (csrc: <path>.tmp.<pid>).
TEMPORARY_GLOBS = (".*.tmp.*", "replay-*.bin.tmp.*")
TENSORBOARD = "tensorboard"
# The name save_checkpoint gives the replay snapshot a checkpoint names (a file in the run folder).
REPLAY_NAME = re.compile(r"^replay-\d+\.bin$")


UPDATE_UNIT = "gradient updates"  # an offline run's step (rewards.png's x axis)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Each entry a checkpoint's progress may hold (Progress's fields): what it must be, and how to
# say so.
PROGRESS_ENTRIES: dict[str, tuple[Any, str]] = {
    "step": (_count, "a whole number >= 0"),
    "evaluations": (_count, "a whole number >= 0"),
    "rewards_lines": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                      "a list of lines"),
    "game_scores": (lambda v: isinstance(v, list) and all(_finite(x) for x in v),
                    "a list of numbers"),
    "game_steps": (lambda v: isinstance(v, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= UNKNOWN_STEPS for x in v),
                   f"a list of whole numbers >= {UNKNOWN_STEPS}"),
    "episodes_bytes": (_count, "a whole number >= 0"),
    "last_game_score": (lambda v: v is None or _finite(v), "a number or None"),
    "last_eval_score": (lambda v: v is None or _finite(v), "a number or None"),
    "wall_seconds": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
    "unit": (lambda v: isinstance(v, str), "a str"),
}
# The Python types of Config's fields as a saved config (config.json, a checkpoint) holds them.
SETTING_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def settings_problem(saved: dict[str, Any]) -> str | None:
    """What is wrong with the types of a saved config's known settings (None: nothing). Unknown
    names are left to Config, which refuses them."""
    for f in dataclasses.fields(Config):
        if f.name in saved:
            value, kinds = saved[f.name], SETTING_TYPES[f.type]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                return f"its setting {f.name!r} is {_short(value)}, not a {f.type}"
    return None


def _tensor_problem(value: Any, name: str, dtypes: tuple[torch.dtype, ...]) -> str | None:
    if not isinstance(value, torch.Tensor) or value.dtype not in dtypes or value.dim() != 1:
        return f"its {name} is not a 1-D tensor of {' or '.join(map(str, dtypes))}"
    return None


def checkpoint_problem(checkpoint: dict[str, Any]) -> str | None:
    """What is wrong with the entries of a checkpoint whose top-level keys have their
    CHECKPOINT_KEYS types (None: nothing). The agent's state is checked by loading it."""
    progress = checkpoint["progress"]
    for name, value in progress.items():
        if name not in PROGRESS_ENTRIES:
            return f"its progress has an unknown entry {_short(name)}"
        ok, what = PROGRESS_ENTRIES[name]
        if not ok(value):
            return f"its progress.{name} is {_short(value)}, not {what}"
    if len(progress.get("rewards_lines", [])) != progress.get("evaluations", 0):
        return (f"its progress has {len(progress.get('rewards_lines', []))} rewards lines for "
                f"{progress.get('evaluations', 0)} evaluations")
    games = len(checkpoint["env"])  # one snapshot per game; 0: offline, or Ape-X's actors'
    scores = progress.get("game_scores", [])
    if games and len(scores) != games:
        return f"its progress has {len(scores)} game scores for {games} games"
    steps = progress.get("game_steps", [])
    if steps and len(steps) != len(scores):
        return f"its progress has {len(steps)} game lengths for {len(scores)} game scores"
    problem = settings_problem(checkpoint["config"])
    if problem:
        return problem.replace("its setting", "its config's setting")
    rng = checkpoint["rng"]
    problem = _tensor_problem(rng.get("torch"), "rng.torch", (torch.uint8,))
    if problem:
        return problem
    if "act" in rng and not isinstance(rng["act"], dict):
        return "its rng.act is not a dict"
    replay = checkpoint["replay"]
    if replay and not REPLAY_NAME.match(replay):
        return f"its replay {_short(replay)} is not a replay-NNN.bin name"
    pending = checkpoint.get("pending_priorities")
    if pending is not None:
        ids, priorities = (pending.get(k) if isinstance(pending, dict) else None
                           for k in ("ids", "priorities"))
        if not (isinstance(ids, list) and isinstance(priorities, list)
                and len(ids) == len(priorities) and all(_count(i) for i in ids)
                and all(_finite(p) and p >= 0 for p in priorities)):
            return "its pending_priorities are not ids with a priority >= 0 each"
    if "offline" in checkpoint:
        offline = checkpoint["offline"]
        sampler = offline.get("sampler", {}) if isinstance(offline, dict) else None
        if not isinstance(sampler, dict):
            return "its offline entry is not a dict with a sampler dict"
        if "td_errors" in sampler:
            td = sampler["td_errors"]
            problem = _tensor_problem(td, "offline sampler's td_errors",
                                      (torch.float32, torch.float64))
            if problem or not bool(torch.isfinite(td).all() and (td >= 0).all()):
                return problem or "its offline sampler's td_errors are not all finite and >= 0"
    return None


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The run's checkpoint, each entry checked for its type and range (checkpoint_problem): a
    ConfigError (one line) if it is missing, unreadable or damaged."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        if os.path.lexists(path):
            raise ConfigError(f"--resume: {path} is not a file, so not a checkpoint")
        raise ConfigError(f"--resume: no resumable run in {run_dir} (no {CHECKPOINT})")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise ConfigError(f"--resume: cannot read {path} ({e.strerror or e})") from None
    except Exception:  # torch's own message would advise weights_only=False: not for a user
        raise ConfigError(f"--resume: {path} is not a readable checkpoint (damaged, or not "
                          f"a checkpoint)") from None
    version = checkpoint.get("version") if isinstance(checkpoint, dict) else None
    if not (isinstance(version, int) and 1 <= version <= CHECKPOINT_VERSION):
        raise ConfigError(f"--resume: {path} was written by an incompatible version")
    for key, kind in CHECKPOINT_KEYS[version].items():
        if not isinstance(checkpoint.get(key), kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"--resume: {path} is damaged (its {key!r} entry is missing or "
                              f"not a {names})")
    for old in range(version, CHECKPOINT_VERSION):
        checkpoint = MIGRATIONS[old](checkpoint)
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise ConfigError(f"--resume: {path} is damaged ({problem})")
    return checkpoint


def migrate_v1(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: progress.game_score (one game, before --envs) becomes game_scores, env as
    one snapshot dict (before --envs) a list of one, and the agent's "actor" network (of the
    removed --overlap) is dropped. Settings of old runs are config.saved_settings's to read."""
    progress, env = dict(checkpoint["progress"]), checkpoint["env"]
    if "game_score" in progress:
        progress["game_scores"] = [progress.pop("game_score")]
    agent = {k: v for k, v in checkpoint["agent"].items() if k != "actor"}
    return {**checkpoint, "version": 2, "progress": progress, "agent": agent,
            "env": [env] if isinstance(env, dict) else env}


# version n -> the function that rewrites a checkpoint of version n as one of version n + 1
MIGRATIONS = {1: migrate_v1}


def checkpoint_progress(checkpoint: dict[str, Any]) -> Progress:
    """The Progress of a checkpoint read by read_checkpoint."""
    return Progress(**checkpoint["progress"])


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run folder has a checkpoint.pt, readable or not (a folder by that name too:
    read_checkpoint refuses it, where a run without one would start from step 0)."""
    return os.path.lexists(Path(run_dir) / CHECKPOINT)


def left_by_a_killed_trainer(path: Path, *, started: bool) -> bool:
    """Whether path, in a run folder without a checkpoint, is what a trainer killed before its
    first checkpoint may leave, which tidying the folder back to step 0 may lose: its .lock and
    temporary files of atomic writes; once it had started (written config.json), also config.json,
    tensorboard/ and episodes.csv (the games it finished: a run from step 0 plays them again).
    Results (rewards.txt, models, replay snapshots) are not."""
    name = path.name
    if path.is_dir() and not path.is_symlink():
        return started and name == TENSORBOARD
    return (name == LOCK or any(fnmatch.fnmatchcase(name, g) for g in TEMPORARY_GLOBS)
            or (started and name in (CONFIG, EPISODES)))


def _listing(paths: list[Path]) -> str:
    names = [(p.name if p.name.isprintable() else repr(p.name)) + ("/" if p.is_dir() else "")
             for p in paths]
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def results_without_checkpoint(run: Path) -> list[Path]:
    """What a run folder without a checkpoint holds that a run restarted from step 0 would lose
    (empty: it may start from step 0)."""
    return sorted(p for p in run.iterdir() if not left_by_a_killed_trainer(p, started=True))


def no_checkpoint_error(run: Path, results: list[Path]) -> ConfigError:
    return ConfigError(f"--resume: {run} holds {_listing(results)} but no {CHECKPOINT}: the run "
                       f"has no checkpoint to resume from (only a run stopped before its first "
                       f"checkpoint, a folder of {CONFIG} alone, starts again from step 0); "
                       f"nothing was changed")


def _read_run_config(run: Path) -> dict[str, Any]:
    path = run / CONFIG
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume: {path} is not a readable run config ({e})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {path} is not a readable run config (not a JSON object)")
    problem = settings_problem(saved)
    if problem:
        raise ConfigError(f"--resume: {path} is not a readable run config ({problem})")
    return saved


def _label(name: str) -> str:
    return next((f.metadata["flag"] for f in dataclasses.fields(Config) if f.name == name),
                "") or name


def check_same_run(run: Path, checkpointed: dict[str, Any], started: dict[str, Any]) -> None:
    """The checkpoint's settings (checkpointed) against config.json's (started): every setting a
    resume may not change must agree, or the checkpoint is another run's."""
    a, b = saved_settings(checkpointed), saved_settings(started)
    for name in sorted(a.keys() & b.keys()):
        if name not in RESUME_MAY_CHANGE and a[name] != b[name]:
            raise ConfigError(f"--resume: {run / CHECKPOINT} is not the checkpoint of the run in "
                              f"{run / CONFIG}: its {_label(name)} is {_short(a[name])}, the "
                              f"run's {_short(b[name])} (copied from another run?); nothing was "
                              f"changed")


def saved_run(run_dir: Path) -> tuple[dict[str, Any], int]:
    """(the run's saved settings, the steps it has made): from its checkpoint, which must agree
    with config.json; or from config.json at step 0 for a run stopped before its first checkpoint
    (results_without_checkpoint empty). Anything else is a ConfigError, before anything is
    changed."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"--resume: no resumable run in {run} "
                          f"({'not a folder' if run.exists() else 'no such folder'})")
    if has_checkpoint(run):
        checkpoint = read_checkpoint(run)
        if os.path.lexists(run / CONFIG):  # a run has one; without it, the checkpoint alone
            check_same_run(run, checkpoint["config"], _read_run_config(run))
        return checkpoint["config"], checkpoint["progress"].get("step", 0)
    contents = sorted(run.iterdir())
    if not os.path.lexists(run / CONFIG):
        if all(left_by_a_killed_trainer(p, started=False) for p in contents):
            what = (f"it holds only {_listing(contents)}, left by a trainer killed while "
                    f"creating it" if contents else "it is empty")
            raise ConfigError(f"--resume: no resumable run in {run} ({what}); start a new run "
                              f"in it with --out {run}")
        raise ConfigError(f"--resume: no resumable run in {run} (no {CHECKPOINT} or {CONFIG}; "
                          f"it holds {_listing(contents)})")
    results = results_without_checkpoint(run)
    if results:
        raise no_checkpoint_error(run, results)
    return _read_run_config(run), 0


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


def check_new_run_dir(run: Path) -> None:
    """A ConfigError unless --out may make a new run in run: it does not exist, or is a folder
    that is empty or holds only what a trainer killed while creating a run folder leaves (an
    unlocked .lock, temporary files). The error says whether --resume can continue what is
    there."""
    if not os.path.lexists(run):
        return
    if not run.is_dir():
        raise ConfigError(f"--out {run} already exists and is not a folder; choose another "
                          f"folder")
    contents = sorted(run.iterdir())
    if all(left_by_a_killed_trainer(p, started=False) for p in contents):
        return
    if has_checkpoint(run) or (os.path.lexists(run / CONFIG)
                               and not results_without_checkpoint(run)):
        raise ConfigError(f"--out {run} already exists and holds a run; continue it with "
                          f"--resume {run}, or choose another folder")
    raise ConfigError(f"--out {run} already exists and holds {_listing(contents)}, with no "
                      f"{CHECKPOINT} to continue from; choose another folder")


def create_run_dir(config: Config) -> RunLock:
    """A new run folder with config.json, locked; never reuses a folder that holds anything but
    what a trainer killed while creating one leaves (check_new_run_dir). If it cannot be written,
    nothing is left behind that was not there (an existing folder keeps what it held)."""
    run = config.run_dir
    check_new_run_dir(run)
    existed, lock_existed = run.exists(), os.path.lexists(run / LOCK)
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {run}: cannot write the run folder ({e.strerror or e})") from None
    lock = None
    try:
        lock = RunLock(run)  # a ConfigError if another trainer holds the folder
        check_new_run_dir(run)  # again, locked: another trainer may have made its run here
        atomic_write_text(run / CONFIG, config.to_json() + "\n")
    except DiskError as e:
        if lock is not None:
            if not lock_existed:
                (run / LOCK).unlink(missing_ok=True)
            lock.close()
        if not existed and not any(run.iterdir()):
            run.rmdir()
        raise ConfigError(f"--out {run}: cannot write the run folder ({e.cause})") from None
    except ConfigError:
        if lock is not None:
            lock.close()
        raise
    return lock


def tidy_run_dir(run: Path, progress: Progress, replay_name: str | None) -> None:
    """Put the folder back to the checkpoint's state (progress, whose memory is replay_name):
    remove temporary files, replay snapshots other than replay_name, final_model.pt, and models
    and frames of evaluations past progress.evaluations; rewrite rewards.txt and rewards.png
    from progress; cut episodes.csv back to progress.episodes_bytes (tidy_episodes).
    Without a checkpoint (a run starting from step 0) that would delete every result, so a
    folder holding any (results_without_checkpoint) is a ConfigError, and nothing is changed.
    Call only while holding the folder's RunLock."""
    if not has_checkpoint(run):
        results = results_without_checkpoint(run)
        if results:
            raise no_checkpoint_error(run, results)
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
    write_rewards(run, progress.rewards_lines, progress.unit)
    tidy_episodes(run, progress)


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
        if not isinstance(checkpoint.get("offline"), dict):
            raise TypeError("its 'offline' entry is missing or not a dict")
        agent.load_state_dict(checkpoint["agent"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        progress = checkpoint_progress(checkpoint)
        offline = checkpoint["offline"]
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
        progress = checkpoint_progress(checkpoint)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--resume: {run / CHECKPOINT} is damaged ({first_line})") from None
    try:
        memory = load_snapshot(run / checkpoint["replay"], prioritized=config.prioritized)
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"--resume: cannot load the replay memory {checkpoint['replay']} "
                          f"({e})") from None
    tidy_run_dir(run, progress, checkpoint["replay"])
    snaps = checkpoint["env"]
    if games is None:  # Ape-X actors (distributed.py): they start fresh games themselves
        progress.game_scores, progress.game_steps = [0.0] * config.streams, [0] * config.streams
        print(f"resumed {run} at agent step {progress.step}: the actors start fresh games")
        return memory, progress, checkpoint.get("pending_priorities")
    try:
        games.restore(snaps)
        print(f"resumed {run} at agent step {progress.step}: resumed the episode in progress")
    except Exception as e:  # e.g. an ALE whose state format changed
        for stream, frame in enumerate(games.reset()):
            memory.start_episode(frame, stream=stream)
        progress.game_scores, progress.game_steps = [0.0] * len(games), [0] * len(games)
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
    write_rewards(run, progress.rewards_lines, progress.unit)
    model = {k: v.cpu() for k, v in agent.online.state_dict().items()}
    atomic_torch_save(run / f"model_{index:03d}.pt", model)
    if final:
        atomic_torch_save(run / FINAL_MODEL, model)
