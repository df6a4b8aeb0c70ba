"""Offline training: learn from a saved replay memory, with no environment but evaluation.

    python main.py --offline DATA --loss {dqn,cql,bc} --updates N ...

DATA is a replay snapshot (replay-*.bin, or an imported DQN Replay Dataset) or a run folder,
meaning its latest snapshot. The loop is one_process.py's without acting: sample, learn, sync the
target, evaluate. Every count is in gradient updates: --updates, --eval-every, --target-update;
rewards.txt's second column is the update count (docs/offline.md).

The dataset is read, never written: it is loaded into a memory in RAM (the file is opened
read-only) and a run keeps no copy of it. config.json records its path, size in bytes, sha256
and transitions; a checkpoint records the same, and resume reopens the file and refuses it if its
checksum changed. The snapshot fixes n-step and gamma (the memory computes n-step returns from
them at sample time): they are taken from it, and --n-step or --gamma given with other values
is an error. So does the protocol its games were played under (docs/protocols.md), which the
evaluation games then use: an imported DQN Replay Dataset's is machado (its <snapshot>.json, which
the import writes), a run's snapshot's is its run's (the config.json beside it); --protocol
given with another is an error. A snapshot with neither file beside it (a replay-*.bin copied
away from its run) is played under --protocol (default deepmind).

Sampling. Update u (counted from 1) samples its batch with the memory's RNG reseeded from
(--seed, seeds.OFFLINE_SAMPLE, u), so a batch is a pure function of the seed and the update count: a
run stopped anywhere and resumed samples what the uninterrupted run samples. A uniform snapshot
is sampled uniformly. A prioritized snapshot's stored priorities (the online run's stale TD
errors) are replaced by equal ones at the start, which samples it uniformly; with --prioritized
they then follow the |TD errors| of this run's updates (new priorities: 1.0, as a fresh
memory's). --prioritized needs a prioritized snapshot: a uniform memory has no priority tree and
this project cannot rebuild one from a snapshot without a second copy of its frames, so it is
refused with a message (record the data with --prioritized).

Sample-ahead (off: SAMPLE_AHEAD): without --prioritized the next update's batch does not depend
on this one, so a worker thread could sample it (C++ sample releases the GIL) while this update
runs. Measured with bench/offline.py it bought nothing (a batch of 32 samples in well under a
millisecond against an update of tens of milliseconds on a CPU; docs/offline.md), so updates
sample in turn; the thread stays as an option for the bench and for faster learners (a GPU).
With --prioritized the next batch depends on this update's priorities: always in turn.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atari_dqn import seeds
from atari_dqn.config import Config, ConfigError, flag_of
from atari_dqn.dataset import DatasetError, recorded_protocol, snapshot_path
from atari_dqn.envs import atari as envs
from atari_dqn.learn.agent import Agent
from atari_dqn.learn.schedule import beta
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory, load_snapshot
from atari_dqn.run.checkpoint import (UPDATE_UNIT, Fixed, Group, Part, Progress, TorchRng,
                                      load_checkpoint, tidy_run_dir)
from atari_dqn.run.evaluate import evaluation_games
from atari_dqn.run.lifecycle import RunResult, StopRequest, prepare, run_source
from atari_dqn.run.machine import GB, available_ram_bytes
from atari_dqn.run.telemetry import Telemetry

HASH_CHUNK_BYTES = 1 << 20
SAMPLE_AHEAD = False  # sample the next batch on a worker thread: measured, no gain on a CPU
INITIAL_PRIORITY = 1.0  # a fresh prioritized memory's max priority: every transition starts there


@dataclass(frozen=True)
class Dataset:
    """What config.json and the checkpoint record of the dataset."""
    path: Path
    size_bytes: int
    sha256: str
    transitions: int  # sampleable transitions


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex), read in chunks: never the whole file in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def open_dataset(data: str, batch_size: int,
                 allow_large_memory: bool = False) -> tuple[ReplayMemory, Dataset]:
    """Load DATA (a snapshot, or a run folder's latest) read-only; a ConfigError (one line) if it
    is missing, truncated, corrupt, foreign, or does not fit this project's networks."""
    try:
        path = snapshot_path(Path(data)).resolve()
    except DatasetError as e:
        raise ConfigError(f"--offline {e}") from None
    size = path.stat().st_size
    if size > available_ram_bytes() and not allow_large_memory:
        raise ConfigError(f"--offline {path}: {size / GB:.1f} GB does not fit in the "
                          f"{available_ram_bytes() / GB:.1f} GB of RAM available; "
                          f"--allow-large-memory to try anyway")
    try:
        memory = load_snapshot(path)
    except (OSError, ValueError, RuntimeError, MemoryError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--offline {path}: {first_line}") from None
    if memory.frame_shape != (envs.SCREEN_SIZE, envs.SCREEN_SIZE) or memory.stack != envs.STACK:
        raise ConfigError(f"--offline {path}: holds {memory.frame_shape[0]}x"
                          f"{memory.frame_shape[1]} frames stacked by {memory.stack}; the "
                          f"networks take {envs.SCREEN_SIZE}x{envs.SCREEN_SIZE} stacked by "
                          f"{envs.STACK}")
    if len(memory) < batch_size:
        raise ConfigError(f"--offline {path}: {len(memory)} sampleable transitions, fewer than "
                          f"--batch-size {batch_size}")
    return memory, Dataset(path, size, sha256_of(path), len(memory))


def with_dataset(config: Config, memory: ReplayMemory, dataset: Dataset,
                 given: dict[str, Any]) -> Config:
    """config with the snapshot's n-step, gamma, size and protocol (where a file beside it
    records one: recorded_protocol) and the dataset's record; a ConfigError if --n-step, --gamma
    or --protocol was given with another value than the snapshot's."""
    for name, fixed in (("n_step", memory.n_step), ("gamma", memory.gamma)):
        if name in given and given[name] != fixed:
            raise ConfigError(f"{flag_of(name)} {given[name]!r}: the snapshot {dataset.path} "
                              f"was built with {flag_of(name)} {fixed!r}, which fixes its "
                              f"returns; leave {flag_of(name)} out to take it")
    try:
        protocol, source = recorded_protocol(dataset.path)
    except DatasetError as e:
        raise ConfigError(f"--offline {e}") from None
    if protocol and given.get("protocol", protocol) != protocol:
        raise ConfigError(f"--protocol {given['protocol']}: the snapshot {dataset.path} was "
                          f"played under --protocol {protocol} ({source} says so), and its "
                          f"evaluations are too; leave --protocol out to take it")
    return dataclasses.replace(
        config, protocol=protocol or config.protocol, n_step=memory.n_step, gamma=memory.gamma,
        memory_capacity_transitions=memory.capacity, offline=str(dataset.path),
        offline_bytes=dataset.size_bytes, offline_sha256=dataset.sha256,
        offline_transitions=dataset.transitions)


class Sampler:
    """Batches of the dataset, one per update, each a pure function of (seed, update), sampled
    one update ahead on a worker thread when the next batch does not depend on this update's
    priorities. With a prioritized memory it keeps every transition's last |TD error| (for the
    checkpoint: restore() sets the same priorities again)."""

    def __init__(self, memory: ReplayMemory, config: Config, ahead: bool | None = None) -> None:
        ahead = SAMPLE_AHEAD if ahead is None else ahead
        self.memory, self.config = memory, config
        self.prioritized = isinstance(memory, PrioritizedReplayMemory)
        self.td: np.ndarray | None = None
        if self.prioritized:
            self.ids = memory.export_log()["ids"]
            self.td = np.full(len(self.ids), INITIAL_PRIORITY, np.float32)
            memory.update_priorities(self.ids, self.td)  # equal: uniform until updates differ
        # the next batch depends on this update only through the priorities of --prioritized
        self.pool = (ThreadPoolExecutor(1, thread_name_prefix="sampler")
                     if ahead and not config.prioritized else None)
        self.next: tuple[int, Future[Any]] | None = None

    def _sample(self, update: int) -> Any:
        seed = np.random.SeedSequence([self.config.seed, seeds.OFFLINE_SAMPLE, update])
        self.memory.reseed(int(seed.generate_state(1, np.uint64)[0]))
        if self.prioritized:  # equal priorities without --prioritized: a uniform draw
            b = beta(update, start=self.config.per_beta_start,
                     total_steps=self.config.total_updates) if self.config.prioritized else 0.0
            return self.memory.sample(self.config.batch_size, b)
        return self.memory.sample(self.config.batch_size)

    def sample(self, update: int) -> Any:
        """The batch of update number `update` (from 1)."""
        if self.pool is None:
            return self._sample(update)
        if self.next is None or self.next[0] != update:
            self.wait()
            self.next = (update, self.pool.submit(self._sample, update))
        batch = self.next[1].result()
        if update < self.config.total_updates:
            self.next = (update + 1, self.pool.submit(self._sample, update + 1))
        return batch

    def learned(self, batch: Any, td_errors: np.ndarray) -> None:
        """The update on batch is done: with --prioritized, its transitions' new priorities."""
        if self.config.prioritized:
            self.memory.update_priorities(batch.ids, td_errors)
            self.td[batch.ids - self.ids[0]] = td_errors

    def state(self) -> dict[str, Any]:
        return {} if self.td is None else {"td_errors": torch.from_numpy(self.td.copy())}

    def restore(self, state: dict[str, Any]) -> None:
        if self.td is not None and "td_errors" in state:
            td = state["td_errors"].numpy()
            if td.shape != self.td.shape:
                raise ConfigError("--resume: the checkpoint's priorities do not fit the dataset")
            self.td = td.astype(np.float32)
            self.memory.update_priorities(self.ids, self.td)

    def wait(self) -> None:
        if self.next is not None:
            self.next[1].result()
            self.next = None

    def close(self) -> None:
        self.wait()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def train_offline(config: Config, given: dict[str, Any] | None = None, *,
                  stop_when: Callable[[int], bool] = lambda update: False) -> RunResult:
    """Train (or continue) the offline run config describes; given: the flags typed (to tell a
    --n-step or --gamma given from a default). stop_when(updates) -> True stops as a signal
    would. Raises ConfigError before anything is written (the dataset is checked first), RunError
    after. RunResult.steps counts updates."""
    given = given or {}
    device, fresh = prepare(config, machine=dataclasses.replace(config, allow_large_memory=True))
    memory, dataset = open_dataset(config.offline, config.batch_size, config.allow_large_memory)
    config = checked_dataset(config, memory, dataset, given, fresh)
    eval_env = evaluation_games(config)
    try:
        check_actions(config, memory, dataset, eval_env.action_count)
        return run_source(config, "update 0", lambda run: OfflineSource(
            config, run, device, memory, eval_env, fresh), stop_when)
    finally:
        eval_env.close()


def checked_dataset(config: Config, memory: ReplayMemory, dataset: Dataset,
                    given: dict[str, Any], fresh: bool) -> Config:
    """config with the dataset's record (a new run) or path (a resumed one: the same file,
    perhaps elsewhere); a ConfigError if it is not the run's dataset, cannot be sampled as asked,
    or lies in the run folder."""
    run = config.run_dir
    if config.offline_sha256 and ((dataset.sha256, dataset.size_bytes)
                                  != (config.offline_sha256, config.offline_bytes)):
        raise ConfigError(f"--resume: {dataset.path} is not the dataset the run trained on "
                          f"(sha256 {dataset.sha256[:12]}..., {dataset.size_bytes} bytes; the "
                          f"run's: {config.offline_sha256[:12]}..., {config.offline_bytes} bytes)")
    if fresh:
        config = with_dataset(config, memory, dataset, given)
    else:  # the same file, perhaps at another path (--offline given with --resume)
        config = dataclasses.replace(config, offline=str(dataset.path))
    if config.prioritized and not isinstance(memory, PrioritizedReplayMemory):
        raise ConfigError(f"--prioritized: {dataset.path} is a uniform memory, without the "
                          f"priority tree prioritized sampling needs; train without "
                          f"--prioritized, or record the data with --prioritized")
    if Path(run).resolve() in dataset.path.parents:
        raise ConfigError(f"--offline {dataset.path} lies in the run folder {run}, which a run "
                          f"tidies: keep the dataset elsewhere")
    return config


def check_actions(config: Config, memory: ReplayMemory, dataset: Dataset, count: int) -> None:
    """A ConfigError if the dataset holds an action the game (count actions) does not have."""
    actions = memory.export_log()["actions"]
    if len(actions) and int(actions.max()) >= count:
        raise ConfigError(f"--offline {dataset.path}: holds action {int(actions.max())}, but "
                          f"{config.env_id} has {count} actions; is --env the game the data "
                          f"was recorded on?")


class DatasetRecord:
    """The offline entry of a checkpoint, a part of it: the dataset's record (path, size_bytes,
    sha256, transitions: config.json's, which resume checks the file against before the run is
    built) and the sampler's state under "sampler". restore() gives the sampler its state back;
    the record is the run's config's already."""

    def __init__(self, record: dict[str, Any], sampler: Sampler) -> None:
        self.record, self.sampler = record, sampler

    def state(self) -> dict[str, Any]:
        return {**self.record, "sampler": self.sampler.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.sampler.restore(state.get("sampler", {}))


class OfflineSource:
    """The offline Source: one iteration is one gradient update on a batch of the dataset
    (Sampler); progress.step counts updates."""

    def __init__(self, config: Config, run: Path, device: torch.device, memory: ReplayMemory,
                 eval_env: Any, fresh: bool) -> None:
        """eval_env: the evaluation games, train_offline's to close."""
        self.config, self.run, self.total = config, run, config.total_updates
        self.eval_env = eval_env
        self.agent = Agent(eval_env.action_count, config, device)
        self.sampler = Sampler(memory, config)
        self.dataset = DatasetRecord(
            {"path": config.offline, "size_bytes": config.offline_bytes,
             "sha256": config.offline_sha256, "transitions": config.offline_transitions},
            self.sampler)
        self.progress = Progress(unit=UPDATE_UNIT)
        if fresh:
            tidy_run_dir(run, self.progress, replay_name=None)  # what a run stopped early left
        else:
            load_checkpoint(run, self.parts())
            print(f"resumed {run} at update {self.progress.step}")

    def parts(self) -> dict[str, Part]:
        """The checkpoint's registry (run/checkpoint.py): key -> part, in the order written. No
        games, no memory (the dataset is never copied: env [], replay ""), no acting rng."""
        return {"config": Fixed(dataclasses.asdict(self.config)), "progress": self.progress,
                "agent": self.agent, "rng": Group({"torch": TorchRng()}), "env": Fixed([]),
                "replay": Fixed(""), "offline": self.dataset}

    def iterate(self, progress: Progress, stop: StopRequest) -> None:
        """Sample, learn, sync the target."""
        update = progress.step + 1
        batch = self.sampler.sample(update)
        stats = self.agent.learn(batch, batch.weights if self.config.prioritized else None)
        self.telemetry.learned(stats)
        self.sampler.learned(batch, stats.td_errors)
        progress.step = update
        if update % self.config.target_update_steps == 0:
            self.agent.sync_target()

    def start(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def stepped(self, progress: Progress) -> None:
        self.telemetry.stepped(progress, self.config.eval_eps)  # no acting but evaluation

    def settle(self) -> None:
        pass  # nothing in flight between updates

    def failed_at(self, progress: Progress) -> str:
        return f"update {progress.step + 1}"

    def close(self) -> None:
        self.sampler.close()
