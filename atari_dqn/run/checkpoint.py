"""The run folder: its files, the checkpoint format, and resuming from it.

Resume is exact: a checkpoint is taken between two iterations of the loop and holds everything
the next one depends on (networks, optimizer, counters, the epsilon rng, the replay memory with
its rng, and the training games' emulator and wrapper states), so a run stopped and resumed
writes the same rewards.txt as one that ran straight through, for any --envs. Evaluations keep
no state between them (each is seeded from the run's seed and its number), so they need nothing
in the checkpoint.

Files of a run folder:
  config.json               the settings (written once, when the run starts)
  rewards.txt               one line per evaluation (curve.rewards_line), rewritten atomically
  episodes.csv              one line per finished training game, appended (episodes.py)
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

The checkpoint is a registry of parts. A part (Part) is anything of a run with state to keep:
state() gives it, restore(state) takes it back. Each mode's Source gives its registry,
Source.parts(): a mapping from checkpoint key to part, in the order the entries are written (the
online modes' from online_parts, one list for both).
There is one writer, save_checkpoint(run, parts), which saves {"version": CHECKPOINT_VERSION,
key: part.state(), ...}, and one reader, load_checkpoint(run, parts), which reads the checkpoint
(read_checkpoint: every entry checked, older versions migrated), restores each part from its
entry, in the registry's order, and tidies the folder back to it (tidy_run_dir). The parts:

  config              Fixed(the Config as a dict): read before the run is built (resume_config),
                      so restore() takes nothing back
  progress            Progress (progress.py), as a dict of its fields
  agent               Agent (learn/agent.py): its state_dict()
  rng                 Group({"torch": TorchRng(), "act": GeneratorRng(the epsilon rng)});
                      offline: {"torch"} alone
  env                 the training games' snapshots, one per game (one_process.TrainingGames around
                      envs.atari.TrainEnvs; a game that cannot be restored starts afresh); Ape-X and
                      offline: Fixed([]) (the actors' games are not saved; no games)
  replay              ReplayFile: the name of the replay-<step>.bin it writes (below); offline:
                      Fixed("") (the dataset is never copied)
  pending_priorities  updates.PendingPriorities: {"ids", "priorities"} or None; online only
  offline             offline.DatasetRecord: the dataset's path, size_bytes, sha256 and
                      transitions, and the sampler's state under "sampler"; offline only
Offline, progress.step counts gradient updates. Ape-X's rate limiter has no entry: a checkpoint
is taken with every update made, so the limiter starts again from progress.step.

Crash safety: the memory goes first, under a name of its own (ReplayFile.state() writes it while
the writer gathers the states); the checkpoint that names it replaces the old one atomically;
only then are older snapshots deleted (ReplayFile.committed()). A crash at any point leaves a
checkpoint whose memory file exists.

Checkpoint format (CHECKPOINT_VERSION 2), a dict saved with torch.save and read back with
weights_only=True: version, then the entries above: config, progress, agent, rng, env, replay,
and pending_priorities (online) or offline. Progress's game_steps and episodes_bytes
(episodes.csv) are absent from checkpoints from before episodes.csv: such a run starts the file
afresh. A registry must name every entry CHECKPOINT_KEYS requires (save_checkpoint refuses one
that does not); an entry the registry names must be in the checkpoint, but for those of
OPTIONAL_ENTRIES.

Older formats are read through explicit migrations (MIGRATIONS: version n -> n + 1, applied in
turn by migrated(), for read_checkpoint and for saved_network, which gives policy.load a
checkpoint's network and settings), never by guessing at layouts where they are used. Version 1
(up to commit dcfbbb9; tests/data/checkpoint-v1 keeps one) was written over several releases
and holds their forms: progress.game_score (one game, before --envs) for game_scores, env as one
snapshot dict (before --envs) for a list, and an agent "actor" network (--overlap, removed).
migrate_v1 rewrites each into version 2's form. A change to an entry's layout is a new version
and a migration; a new part with an entry of its own is too.
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
from typing import Any, Protocol

import numpy as np
import torch

from atari_dqn.config import RESUME_MAY_CHANGE, Config, ConfigError, flag_of, saved_settings
from atari_dqn.learn.agent import Agent
from atari_dqn.replay import load_snapshot
from atari_dqn.run.curve import rewards_line, write_rewards
from atari_dqn.run.episodes import EPISODES, UNKNOWN_STEPS, tidy_episodes
from atari_dqn.run.files import DiskError, atomic_torch_save, atomic_write_text, writing
from atari_dqn.run.progress import Progress  # also this module's face: checkpoint.Progress

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
# The name ReplayFile gives the replay snapshot a checkpoint names (a file in the run folder).
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
    if not readable_version(version):
        raise ConfigError(f"--resume: {path} was written by an incompatible version")
    for key, kind in CHECKPOINT_KEYS[version].items():
        if not isinstance(checkpoint.get(key), kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"--resume: {path} is damaged (its {key!r} entry is missing or "
                              f"not a {names})")
    checkpoint = migrated(checkpoint)
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise ConfigError(f"--resume: {path} is damaged ({problem})")
    return checkpoint


def readable_version(version: Any) -> bool:
    """Whether this code reads checkpoints of format `version` (through MIGRATIONS)."""
    return isinstance(version, int) and not isinstance(version, bool) \
        and 1 <= version <= CHECKPOINT_VERSION


def migrated(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """checkpoint, of a readable_version, in today's format: MIGRATIONS applied in turn. The
    one path from an old layout to today's, for read_checkpoint and saved_network alike."""
    for old in range(checkpoint["version"], CHECKPOINT_VERSION):
        checkpoint = MIGRATIONS[old](checkpoint)
    return checkpoint


def migrate_v1(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: progress.game_score (one game, before --envs) becomes game_scores, env as
    one snapshot dict (before --envs) a list of one, and the agent's "actor" network (of the
    removed --overlap) is dropped. Settings of old runs are config.saved_settings's to read.
    Entries the checkpoint lacks stay absent (saved_network migrates agent and config alone)."""
    new = {**checkpoint, "version": 2}
    if "progress" in checkpoint:
        progress = dict(checkpoint["progress"])
        if "game_score" in progress:
            progress["game_scores"] = [progress.pop("game_score")]
        new["progress"] = progress
    if "agent" in checkpoint:
        new["agent"] = {k: v for k, v in checkpoint["agent"].items() if k != "actor"}
    if isinstance(checkpoint.get("env"), dict):
        new["env"] = [checkpoint["env"]]
    return new


# version n -> the function that rewrites a checkpoint of version n as one of version n + 1
MIGRATIONS = {1: migrate_v1}


def saved_network(loaded: Any) -> tuple[Any, dict[str, Any]] | None:
    """(the online network's state_dict, the run's settings) if `loaded`, what torch.load read
    from a file, is a checkpoint (a dict with agent and config dicts): those two entries,
    migrated to today's format as read_checkpoint migrates a whole checkpoint. None if it is no
    checkpoint (a model file: a plain state_dict). A ConfigError (one line) if it is a
    checkpoint of a format version this code does not read. The state_dict is not checked."""
    if not (isinstance(loaded, dict) and isinstance(loaded.get("agent"), dict)
            and isinstance(loaded.get("config"), dict)):
        return None
    version = loaded.get("version")
    if not readable_version(version):
        raise ConfigError(f"a checkpoint of format version {_short(version)}, which this "
                          f"version does not read (it reads 1 to {CHECKPOINT_VERSION})")
    entries = migrated({key: loaded[key] for key in ("version", "agent", "config")})
    return entries["agent"].get("online"), entries["config"]


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


class Part(Protocol):
    """One part of a run with state a checkpoint keeps. state(): that state, of the types
    torch.load(weights_only=True) reads back (plain types, bytes, tensors); restore(state):
    the part as it was when state() gave it. A part may also have committed(): called once
    the checkpoint holding its state has replaced the last one (ReplayFile's cleanup)."""

    def state(self) -> Any: ...
    def restore(self, state: Any) -> None: ...


class Fixed:
    """An entry this mode fixes: state() is the value given, restore() takes nothing back.
    The config (read and checked before the run was built: resume_config), and the games and
    memory of a mode that keeps none (Ape-X's actors' games: [], an offline run's memory: "")."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def state(self) -> Any:
        return self.value

    def restore(self, state: Any) -> None:
        pass


class Group:
    """Parts under one checkpoint entry, each under its own name: its state is the dict of
    theirs, in the order given (the rng entry: {"torch": ..., "act": ...})."""

    def __init__(self, parts: dict[str, Part]) -> None:
        self.parts = parts

    def state(self) -> dict[str, Any]:
        return {name: part.state() for name, part in self.parts.items()}

    def restore(self, state: dict[str, Any]) -> None:
        for name, part in self.parts.items():
            part.restore(state[name])  # a KeyError: a damaged checkpoint (load_checkpoint)


class TorchRng:
    """torch's global RNG (the networks' initialisation, a reset's perturbation) as a part."""

    def state(self) -> torch.Tensor:
        return torch.get_rng_state()

    def restore(self, state: torch.Tensor) -> None:
        torch.set_rng_state(state)


class GeneratorRng:
    """A numpy Generator (the epsilon-greedy rng) as a part: its bit generator's state."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def restore(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


class ReplayFile:
    """The replay memory as a part: its state is the name of a snapshot in the run folder.

    Crash safety, kept by save_checkpoint's order: state() writes the memory to
    replay-<progress.step>.bin and returns the name, so the file is complete before the
    checkpoint that names it is written; the checkpoint then replaces the last one atomically;
    only then does committed() delete the other snapshots. A crash at any point leaves a
    checkpoint whose memory file exists (and perhaps a newer snapshot, which resuming tidies).
    restore(name) loads that snapshot as .memory, a new memory object."""

    def __init__(self, run: Path, progress: Progress, memory: Any = None, *,
                 prioritized: bool) -> None:
        self.run, self.progress, self.memory, self.prioritized = run, progress, memory, prioritized
        self.name = ""  # the snapshot last written or loaded

    def state(self) -> str:
        name = f"replay-{self.progress.step:09d}.bin"
        with writing(self.run / name):
            self.memory.save(str(self.run / name))
        self.name = name
        return name

    def committed(self) -> None:
        for old in self.run.glob("replay-*.bin"):
            if old.name != self.name:
                with writing(old):
                    old.unlink()

    def restore(self, name: str) -> None:
        try:
            self.memory = load_snapshot(self.run / name, prioritized=self.prioritized)
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(f"--resume: cannot load the replay memory {name} ({e})") from None
        self.name = name


def online_parts(config: Config, progress: Progress, agent: Agent, act_rng: np.random.Generator,
                 env: Part, replay: ReplayFile, pending: Part) -> dict[str, Part]:
    """The registry of an online run (the one-process and Ape-X Sources' parts()): the
    entries of the module's doc, in the order written. env: the training games (Ape-X:
    Fixed([]), its actors' games are not saved); pending: updates.PendingPriorities."""
    return {"config": Fixed(dataclasses.asdict(config)), "progress": progress, "agent": agent,
            "rng": Group({"torch": TorchRng(), "act": GeneratorRng(act_rng)}),
            "env": env, "replay": replay, "pending_priorities": pending}


# Entries a checkpoint may lack, read as None by their part: pending_priorities (not written
# by offline runs, nor perhaps by old releases). Every other entry the registry names must be
# there (those of CHECKPOINT_KEYS are checked by read_checkpoint; offline's here).
OPTIONAL_ENTRIES = ("pending_priorities",)


def save_checkpoint(run: Path, parts: dict[str, Part]) -> None:
    """Write the checkpoint of a registry of parts (checkpoint key -> part; Source.parts()):
    format CHECKPOINT_VERSION, each part's state() under its key, in the registry's order.
    Every part's state is taken (the memory's file written: ReplayFile) before checkpoint.pt
    is replaced atomically, and committed() is called only after that."""
    missing = [key for key in CHECKPOINT_KEYS[CHECKPOINT_VERSION]
               if key != "version" and key not in parts]
    if missing:
        raise ValueError(f"save_checkpoint: no part for {', '.join(missing)}")
    entries = {"version": CHECKPOINT_VERSION}
    for key, part in parts.items():
        entries[key] = part.state()
    atomic_torch_save(run / CHECKPOINT, entries)
    for part in parts.values():
        committed = getattr(part, "committed", None)  # optional: Part's doc
        if committed is not None:
            committed()


def load_checkpoint(run: Path, parts: dict[str, Part]) -> None:
    """Restore every part of a registry from the run's checkpoint (read_checkpoint: checked and
    migrated), in the registry's order, then put the folder back to the checkpoint
    (tidy_run_dir). Anything a part cannot take back is a ConfigError (one line), raised before
    the folder is changed."""
    path = run / CHECKPOINT
    checkpoint = read_checkpoint(run)
    for key in parts:
        if key not in checkpoint and key not in OPTIONAL_ENTRIES:
            raise ConfigError(f"--resume: {path} is damaged (its {key!r} entry is missing)")
    for key, part in parts.items():
        try:
            part.restore(checkpoint.get(key))
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"--resume: {path} is damaged ({first_line})") from None
    tidy_run_dir(run, checkpoint_progress(checkpoint), checkpoint["replay"] or None)


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
