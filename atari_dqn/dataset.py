"""Datasets for offline training: import the DQN Replay Dataset, describe a replay snapshot.

    python -m atari_dqn.dataset import DIR --out data.bin [--suffix N] [--stack 4]
        converts one checkpoint of Dopamine's circular replay buffer (the DQN Replay Dataset,
        Agarwal et al. 2020: DIR is a `replay_logs` folder) into this project's replay snapshot,
        written by the project's own ReplayMemory, so the format is defined in one place (csrc/)
    python -m atari_dqn.dataset info DATA
        transitions, episodes, returns of the complete episodes, action histogram and size on disk
        of a replay-*.bin snapshot, or of a run folder's latest one
    python -m atari_dqn.dataset qvalues DATA MODEL [MODEL ...] [--samples N]
        each trained network's mean Q(s, a) on the data's actions against the data's actual
        discounted returns from those transitions (overestimation made visible; docs/offline.md)

All open their input read-only and never modify it. A missing, truncated, corrupt or foreign
file prints one line, `dataset: error: ...`, and exits with status 2; an import then writes nothing.
qvalues also refuses a snapshot the networks cannot take (no sampleable transition, frames that
are not 84x84, states that are not stacks of 4); info describes it and says so in one line.

Dopamine's files
----------------
A checkpoint N is six gzip'd .npy files (np.save) in DIR:

    $store$_observation_ckpt.N.gz  uint8 (capacity, 84, 84), capacity at most 1,000,000
    $store$_action_ckpt.N.gz       int32 (capacity,), 0 .. 17 (Atari's actions)
    $store$_reward_ckpt.N.gz       float32 (capacity,)
    $store$_terminal_ckpt.N.gz     uint8 (capacity,), 0 or 1
    add_count_ckpt.N.gz            int: entries ever written, padding included
    invalid_range_ckpt.N.gz        int (stack + n,): indices next to the cursor that are not valid

Entry i holds obs[i], the observation action[i] was taken in, and reward[i] and terminal[i] of
that step, so the next observation of entry i is obs[i + 1]. After a terminal (and at the very
start of the buffer) Dopamine writes stack - 1 zero "padding" entries (zero frame, action 0,
reward 0, not terminal) before the next episode's first entry; the terminal step's own next
frame is never stored. The buffer is circular: cursor = add_count % capacity is the next index to
write; once add_count > capacity, the oldest entry is the one at the cursor. In logical order
(oldest first; logical p is index (cursor + p) % capacity), with stack 4 and Dopamine's n-step 1:

    logical  0 1 2 3   4 5 6T      7 8 9     10 ... 40T   41 42 43   44 ... newest-1   newest
    entry    invalid   an episode  padding   episode A    padding    episode B, running  invalid
                       begun earlier
    import   skipped   dropped     skipped   31 steps,    skipped    44 .. newest-1,     skipped
                                             40 terminal             newest-1 truncated

Import rules (the diagram's):
- Entries listed in invalid_range are not imported: the newest n (their next frames are not
  written yet) and the stack oldest (their stacked states reach back across the cursor into
  overwritten data).
- An episode whose first entry is gone (it began before the oldest valid entry) is dropped: its
  states and its return would be wrong. Every imported episode starts at its true first step.
- Padding entries are skipped, and checked to be zero; so is every episode's first entry, which
  must not be (a real Atari frame is never black). A wrong --stack shows up here: too large, and
  a padding entry is an episode's frame; too small (1 included: no padding to skip), and an
  episode begins with a zero entry. Either way the zero run's length L is measured, and the
  error names the stack that wrote it, --stack L + 1.
- A terminal entry is appended with terminated=True and a copy of its own frame as the next
  observation (its discount is 0, so that frame is never bootstrapped from).
- An episode cut without a terminal (at the newest edge: its last entry is invalid) loses that
  last entry, whose next frame does not exist; the entry before it, whose next frame (the
  newest entry's observation) does, is appended with truncated=True.
- Rewards are stored as recorded. The dataset was recorded with Dopamine's preprocessing, not
  this project's: sticky actions (repeat probability 0.25), no episodic life (an episode is a
  whole game), rewards clipped to [-1, 1] by Dopamine's runner, and a terminal also at its
  27,000-step game cap.
- Beside the snapshot, <out>.json (SOURCE_SUFFIX) says where it came from and the protocol its
  games were played under, machado (docs/protocols.md): an offline run on the snapshot is
  evaluated under that protocol (recorded_protocol). The snapshot's own format is unchanged.

Headers first: every .npy header is checked before its data is read (the observations' first),
so no header can make the import allocate what the format does not allow: its declared size must
fit in what its compressed bytes can hold (deflate expands at most MAX_DEFLATE_RATIO times), the
observations must be Dopamine's layout above, and the action, reward and terminal arrays exactly
capacity long (invalid_range at most that).

Streaming: the small arrays are read whole (about 9 bytes per entry); the observations are
decompressed a chunk of rows at a time and appended as they arrive, so the ReplayMemory being
filled is the only copy of the frames. A wrapped buffer is read in two passes over the gzip
stream (from the cursor to the end, then from 0 to the cursor), which keeps oldest-first order.
The memory is saved (atomically) only after every entry was read and checked.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atari_dqn.cli import OneLineParser, run_tool
from atari_dqn.config import PREDATED, PROTOCOL_NAMES, SCREEN_SIZE, STACK
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory, load_snapshot
from atari_dqn.run.files import DiskError, atomic_write_text

PROG = "dataset"
DEFAULT_STACK = STACK  # Dopamine's stack_size for the DQN Replay Dataset, and this project's
FRAME_SHAPE = (SCREEN_SIZE, SCREEN_SIZE)  # Dopamine's Atari frames, and the only ones the networks take
DOPAMINE_CAPACITY = 1_000_000  # entries per checkpoint (Dopamine's replay_capacity): the most imported
ATARI_ACTIONS = 18  # the full Atari action set: a game's actions (its minimal set's) are 0 .. 17 at most
MAX_DEFLATE_RATIO = 1032  # deflate's best compression: a gzip file of n bytes holds at most 1032 n
MAX_ITEM_BYTES = 8  # the widest number Dopamine's small arrays hold (int64, float64)
ROWS_PER_CHUNK = 1024  # observation rows decompressed at a time (7 MB of 84x84 frames)
PROGRESS_EVERY_ROWS = 100_000
NPY_MAGIC_PREFIX = b"\x93NUMPY"
SOURCE_SUFFIX = ".json"  # <snapshot>.json: where an imported snapshot came from (import_dopamine)
# The protocol the DQN Replay Dataset's games were played under: Dopamine's Atari defaults (sticky
# actions, whole games, no no-ops, no FIRE), Machado et al. 2018's (docs/protocols.md).
DQN_REPLAY_PROTOCOL = "machado"

STORE_PREFIX = "$store$_"
ARRAYS = ("observation", "action", "reward", "terminal")  # the buffer's stored arrays
COUNTERS = ("add_count", "invalid_range")  # the buffer's bookkeeping, also .npy


class DatasetError(Exception):
    """A missing, truncated, corrupt or foreign dataset, or an unusable output path."""


# --- Dopamine's files ------------------------------------------------------------------------

def dopamine_path(folder: Path, name: str, suffix: str) -> Path:
    prefix = STORE_PREFIX if name in ARRAYS else ""
    return folder / f"{prefix}{name}_ckpt.{suffix}.gz"


def find_suffix(folder: Path, suffix: str | None) -> str:
    """The checkpoint suffix to import: the given one, or the only one in folder."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    pattern = re.compile(re.escape(f"{STORE_PREFIX}observation_ckpt.") + r"(\d+)\.gz$")
    found = sorted((m.group(1) for p in folder.iterdir() if (m := pattern.match(p.name))), key=int)
    if suffix is None:
        if not found:
            raise DatasetError(f"{folder}: no Dopamine replay checkpoint "
                               f"({STORE_PREFIX}observation_ckpt.N.gz) in this folder")
        if len(found) > 1:
            raise DatasetError(f"{folder} holds checkpoints {', '.join(found)}: choose one with --suffix")
        suffix = found[0]
    for name in ARRAYS + COUNTERS:
        if not dopamine_path(folder, name, suffix).is_file():
            raise DatasetError(f"{dopamine_path(folder, name, suffix)}: missing")
    return suffix


def open_npy_stream(path: Path) -> tuple[gzip.GzipFile, tuple[int, ...], np.dtype]:
    """Opens a gzip'd .npy and reads its header only: (stream positioned at the data, shape, dtype).
    Refuses a header that declares more bytes than the file can hold, so nothing is ever sized
    by a header the file contradicts (the callers check the shape against Dopamine's layout)."""
    try:
        f = gzip.open(path, "rb")
        try:
            if f.peek(len(NPY_MAGIC_PREFIX))[:len(NPY_MAGIC_PREFIX)] != NPY_MAGIC_PREFIX:
                raise ValueError("no .npy header")
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, fortran_order, dtype = read_header(f)
            header_bytes = f.tell()
        except BaseException:
            f.close()
            raise
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable gzip'd .npy file ({e})") from None
    if fortran_order:
        f.close()
        raise DatasetError(f"{path}: Fortran-ordered array; Dopamine writes C order")
    if any(n < 0 for n in shape):
        f.close()
        raise DatasetError(f"{path}: its header declares a negative dimension {shape}")
    declared = header_bytes + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    compressed = path.stat().st_size
    if declared > compressed * MAX_DEFLATE_RATIO:
        f.close()
        raise DatasetError(f"{path}: its header declares {dtype} {shape} ({declared:,} bytes), more "
                           f"than its {compressed:,} compressed bytes can hold")
    return f, shape, dtype


def read_small_array(path: Path, kinds: str, shape_ok: Callable[[tuple[int, ...]], bool],
                     expected: str) -> np.ndarray:
    """One whole gzip'd .npy (not for the observations). Its header must declare a dtype of one
    of `kinds` (numpy's letters), at most MAX_ITEM_BYTES wide, and a shape for which shape_ok is
    true, or DatasetError names `expected`: checked before any of the data is read. The stream is
    read to its end, which checks its CRC."""
    f, shape, dtype = open_npy_stream(path)
    with f:
        if dtype.kind not in kinds or dtype.itemsize > MAX_ITEM_BYTES or not shape_ok(shape):
            raise DatasetError(f"{path}: expected {expected}, got {dtype} {shape}")
        size = math.prod(shape) * dtype.itemsize
        try:
            data = f.read(size)
            if len(data) != size:
                raise DatasetError(f"{path}: truncated: the array ends after {len(data):,} of "
                                   f"{size:,} bytes")
            if f.read(1) != b"":
                raise DatasetError(f"{path}: unexpected bytes after the array")
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise DatasetError(f"{path}: corrupt or truncated gzip stream ({e})") from None
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def read_rows(path: Path, frame_shape: tuple[int, int], first: int, stop: int,
              expect_end: bool) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (index, frame) for observation rows first .. stop - 1, decompressing a chunk at a
    time (rows before `first` are decompressed and dropped). With expect_end, checks that the
    array ends at `stop` and the gzip stream is whole (its CRC is checked at its end)."""
    row_bytes = frame_shape[0] * frame_shape[1]
    f, _, _ = open_npy_stream(path)
    with f:
        try:
            index = 0
            while index < stop:
                count = min(ROWS_PER_CHUNK, stop - index)
                data = f.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise DatasetError(f"{path}: truncated: the observations end before row {stop}")
                if index + count > first:
                    rows = np.frombuffer(data, dtype=np.uint8).reshape(count, *frame_shape)
                    for k in range(max(0, first - index), count):
                        yield index + k, rows[k]
                index += count
            if expect_end and f.read(1) != b"":
                raise DatasetError(f"{path}: unexpected bytes after the observation array")
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt or truncated gzip stream ({e})") from None


# --- the plan: which entries become which transitions -----------------------------------------

@dataclass(frozen=True)
class Plan:
    """What an import does, decided from the small arrays alone, in logical (oldest-first) order.

    Logical position p is buffer index (oldest + p) % capacity, p < stored."""

    oldest: int
    stored: int
    padding: frozenset[int]  # positions that must hold zero padding entries
    episodes: list[tuple[int, int]]  # (first, last) positions, inclusive, each imported as one episode

    @property
    def transitions(self) -> int:
        return sum(last - first + 1 for first, last in self.episodes)

    def padding_before(self, p: int) -> int:
        """How many padding positions come just before position p."""
        count = 0
        while p - count - 1 in self.padding:
            count += 1
        return count


def make_plan(terminal: np.ndarray, add_count: int, invalid: set[int], stack: int) -> Plan:
    capacity = len(terminal)
    stored = min(add_count, capacity)
    # Until the buffer wraps, index 0 holds the first episode's padding and the oldest entry;
    # afterwards the oldest entry is the one at the cursor.
    oldest = add_count % capacity if add_count > capacity else 0
    padding: set[int] = set()
    episodes: list[tuple[int, int]] = []
    pad_left = stack - 1 if add_count <= capacity else 0
    run: list[int] = []  # consecutive importable positions of the episode being read

    def close_run() -> None:
        if run:
            episodes.append((run[0], run[-1]))
            run.clear()

    for p in range(stored):
        i = (oldest + p) % capacity
        if pad_left > 0:
            padding.add(p)
            pad_left -= 1
            continue
        if i in invalid:
            close_run()
        else:
            run.append(p)
        if terminal[i]:
            close_run()
            pad_left = stack - 1
    close_run()
    # Only episodes that begin at their true first step: after padding or a terminal, or at the
    # buffer's first entry. A run after invalid entries continues an episode begun earlier.
    def true_start(p: int) -> bool:
        if p == 0:
            return add_count <= capacity
        return p - 1 in padding or bool(terminal[(oldest + p - 1) % capacity])

    episodes = [(first, last) for first, last in episodes if true_start(first)]
    # An episode cut without a terminal needs the next frame of its last entry: the observation
    # after it, if stored (it may be an invalid entry's); otherwise that entry is dropped.
    kept = []
    for first, last in episodes:
        if not terminal[(oldest + last) % capacity] and last + 1 >= stored:
            last -= 1
        if last >= first:
            kept.append((first, last))
    return Plan(oldest, stored, frozenset(padding), kept)


def observation_capacity(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The capacity the observation array's header declares, once it is Dopamine's layout for
    Atari: uint8 (capacity, 84, 84), capacity at most DOPAMINE_CAPACITY."""
    if dtype != np.uint8 or len(shape) != 3 or shape[1:] != FRAME_SHAPE:
        raise DatasetError(f"{path}: expected uint8 frames (capacity, {FRAME_SHAPE[0]}, {FRAME_SHAPE[1]}), "
                           f"got {dtype} {shape}")
    if not 1 <= shape[0] <= DOPAMINE_CAPACITY:
        raise DatasetError(f"{path}: {shape[0]:,} entries; a Dopamine checkpoint holds 1 to "
                           f"{DOPAMINE_CAPACITY:,}")
    return shape[0]


def read_arrays(folder: Path, suffix: str, capacity: int) -> dict[str, np.ndarray]:
    """The small arrays, each header checked against Dopamine's layout before its data is read
    (so at most about 9 bytes per entry are ever allocated for them)."""
    entries = lambda shape: shape == (capacity,)  # noqa: E731
    spec = {  # name: dtype kinds, shape test, what is expected
        "action": ("iu", entries, f"{capacity} integer actions"),
        "reward": ("f", entries, f"{capacity} float rewards"),
        "terminal": ("iub", entries, f"{capacity} integer terminal flags"),
        "add_count": ("iu", lambda shape: shape in ((), (1,)), "one integer"),
        # Dopamine starts invalid_range as float zeros and writes integers from the first entry on.
        "invalid_range": ("iuf", lambda shape: len(shape) == 1 and shape[0] <= capacity,
                          f"at most {capacity} indices"),
    }
    return {name: read_small_array(dopamine_path(folder, name, suffix), *spec[name]) for name in spec}


def check_values(folder: Path, suffix: str, arrays: dict[str, np.ndarray],
                 capacity: int) -> tuple[int, set[int]]:
    """Checks the small arrays' values against Dopamine's layout: (add_count, invalid indices)."""
    where = lambda name: dopamine_path(folder, name, suffix)  # noqa: E731
    action = arrays["action"]
    if len(action) and (action.min() < 0 or action.max() >= ATARI_ACTIONS):
        raise DatasetError(f"{where('action')}: actions {int(action.min())} to {int(action.max())}; "
                           f"an Atari game's are 0 to {ATARI_ACTIONS - 1}")
    if not np.all(np.isfinite(arrays["reward"])):
        raise DatasetError(f"{where('reward')}: rewards that are not finite")
    if not np.all((arrays["terminal"] == 0) | (arrays["terminal"] == 1)):
        raise DatasetError(f"{where('terminal')}: terminal flags other than 0 and 1")
    add_count = int(arrays["add_count"].reshape(()))
    if add_count < 0:
        raise DatasetError(f"{where('add_count')}: expected an integer >= 0, got {add_count}")
    invalid = arrays["invalid_range"]
    if not np.all(invalid == np.round(invalid)) or np.any(invalid < 0) or np.any(invalid >= capacity):
        raise DatasetError(f"{where('invalid_range')}: expected indices in [0, {capacity})")
    return add_count, {int(v) for v in invalid}


# --- import --------------------------------------------------------------------------------------

def import_dopamine(folder: Path, out: Path, suffix: str | None = None, stack: int = DEFAULT_STACK,
                    report=print) -> ReplayMemory:
    """Converts Dopamine replay checkpoint `suffix` in folder into a snapshot at out; returns the
    memory (already saved). Raises DatasetError before writing anything if the input is bad."""
    if stack < 1:
        raise DatasetError(f"--stack must be >= 1, got {stack}")
    if out.exists():
        raise DatasetError(f"--out {out}: exists; remove it or choose another name")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise DatasetError(f"--out {out}: its folder does not exist or is not writable")
    folder = Path(folder)
    suffix = find_suffix(folder, suffix)
    obs_path = dopamine_path(folder, "observation", suffix)
    stream, obs_shape, obs_dtype = open_npy_stream(obs_path)
    stream.close()
    capacity = observation_capacity(obs_path, obs_shape, obs_dtype)
    arrays = read_arrays(folder, suffix, capacity)
    add_count, invalid = check_values(folder, suffix, arrays, capacity)
    plan = make_plan(arrays["terminal"], add_count, invalid, stack)
    minimum = stack + 1  # the memory's smallest capacity with n_step 1
    if plan.transitions < minimum:
        raise DatasetError(f"{folder} checkpoint {suffix}: only {plan.transitions} valid transitions "
                           f"(add_count {add_count}); at least {minimum} are needed")
    memory = fill_memory(folder, suffix, arrays, capacity, plan, stack, report)
    write_snapshot(memory, out, folder, suffix, stack)
    return memory


def fill_memory(folder: Path, suffix: str, arrays: dict[str, np.ndarray], capacity: int,
                plan: Plan, stack: int, report) -> ReplayMemory:
    """A new memory holding the plan's transitions: the observations streamed oldest first and
    appended with the small arrays' actions, rewards and terminals (the import rules above). A
    padding entry that is not zero, or an episode that begins with a zero entry (a wrong
    --stack), is a DatasetError; so are observations that leave a transition without its next
    frame. Nothing is written."""
    obs_path = dopamine_path(folder, "observation", suffix)
    action, reward, terminal = arrays["action"], arrays["reward"], arrays["terminal"]
    memory = ReplayMemory(plan.transitions, frame_shape=FRAME_SHAPE, stack=stack)
    starts = {first: last for first, last in plan.episodes}
    current_last = -1  # last position of the episode being appended (-1 before the first)
    pending = -1  # a non-terminal position waiting for its next frame, the row after it
    rows = logical_rows(obs_path, FRAME_SHAPE, plan, capacity)
    for p, frame in rows:
        if p % PROGRESS_EVERY_ROWS == PROGRESS_EVERY_ROWS - 1:
            report(f"read {p + 1:,} of {plan.stored:,} entries")
        i = (plan.oldest + p) % capacity
        if pending >= 0:
            j = (plan.oldest + pending) % capacity
            memory.append(int(action[j]), float(reward[j]), frame, False,
                          truncated=pending == current_last)
            pending = -1
        if p in plan.padding:
            # Not zero: the padding is shorter than stack - 1 entries.
            if not is_zero_entry(action[i], reward[i], terminal[i], frame):
                zeros = plan.padding_before(p)
                raise DatasetError(f"{folder} checkpoint {suffix}: entry {i} should be zero "
                                   f"padding (--stack {stack} pads with {stack - 1} entries), but "
                                   f"the padding before it is {zeros} entries long: "
                                   f"{stack_hint(zeros, True)}")
            continue
        if p in starts:
            # An episode's first frame is never black: a zero entry there is more padding.
            if is_zero_entry(action[i], reward[i], terminal[i], frame):
                length, whole = zero_run(plan.padding_before(p), rows, plan, action, reward,
                                         terminal, capacity)
                raise DatasetError(f"{folder} checkpoint {suffix}: the padding before entry {i} is "
                                   f"longer than --stack {stack} pads ({stack - 1} entries): "
                                   f"{stack_hint(length, whole)}")
            memory.start_episode(frame)
            current_last = starts[p]
        if p > current_last:
            continue  # between episodes: an invalid entry, or the frame after a cut episode
        if terminal[i]:  # its next frame is not stored; its own stands in (discount 0)
            memory.append(int(action[i]), float(reward[i]), frame, True)
        else:
            pending = p
    if memory.appended != plan.transitions:  # every planned transition found its next frame
        raise DatasetError(f"{obs_path}: the observations do not match the other arrays")
    return memory


def write_snapshot(memory: ReplayMemory, out: Path, folder: Path, suffix: str,
                   stack: int) -> None:
    """Saves the imported memory at out, and beside it <out>.json: where it came from and the
    protocol its games were played under. A failure to write either is a DatasetError; without
    its .json, the snapshot is removed."""
    try:
        memory.save(out)
    except OSError as e:
        raise DatasetError(f"--out {out}: cannot write ({e.strerror or e})") from None
    source = {"source": "DQN Replay Dataset (Agarwal et al. 2020), Dopamine's replay buffer",
              "folder": str(folder.resolve()), "checkpoint": suffix, "stack": stack,
              "protocol": DQN_REPLAY_PROTOCOL}
    try:
        atomic_write_text(source_path(out), json.dumps(source, indent=2) + "\n")
    except DiskError as e:  # the snapshot alone would be evaluated under the wrong protocol
        out.unlink(missing_ok=True)
        raise DatasetError(f"--out {out}: cannot write {source_path(out).name} ({e.cause})") \
            from None


def source_path(snapshot: Path) -> Path:
    """<snapshot>.json, the file that says where an imported snapshot came from."""
    return snapshot.with_name(snapshot.name + SOURCE_SUFFIX)


def recorded_protocol(snapshot: Path) -> tuple[str | None, str]:
    """(the protocol a snapshot's games were played under, the file that says so): from
    <snapshot>.json (written by import), else from the config.json beside it (the run that saved
    it; a run from before --protocol played deepmind); (None, "") where neither is there. A file
    that says something else than a protocol name is a DatasetError."""
    for path, default in ((source_path(snapshot), None),
                          (snapshot.parent / "config.json", PREDATED["protocol"])):
        if not path.is_file():
            continue
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: unreadable ({e})") from None
        name = saved.get("protocol", default) if isinstance(saved, dict) else None
        if name not in PROTOCOL_NAMES:
            raise DatasetError(f"{path}: its protocol is {name!r}, not one of "
                               f"{', '.join(PROTOCOL_NAMES)}")
        return name, str(path)
    return None, ""


def is_zero_entry(action, reward, terminal, frame: np.ndarray) -> bool:
    """Dopamine's padding: a zero frame, action 0, reward 0, not terminal. (A real Atari frame is
    never all black, so a zero entry where an episode should begin means a wrong --stack.)"""
    return action == 0 and reward == 0 and terminal == 0 and not frame.any()


def zero_run(zeros: int, rows: Iterator[tuple[int, np.ndarray]], plan: Plan, action, reward,
             terminal, capacity: int) -> tuple[int, bool]:
    """The length of a run of zero entries: the `zeros` before the entry just read, that one, and
    those after it, read on from `rows`. (length, True), or (length, False) if the run reaches the
    newest entry, so that it may be longer."""
    length = zeros + 1
    for p, frame in rows:
        i = (plan.oldest + p) % capacity
        if not is_zero_entry(action[i], reward[i], terminal[i], frame):
            return length, True
        length += 1
    return length, False


def stack_hint(padding: int, whole: bool) -> str:
    """What a padding run of this length says about the stack the data was written with."""
    if not whole:
        return f"the data looks written with a stack of at least {padding + 1}"
    return f"the data looks written with stack {padding + 1}: use --stack {padding + 1}"


def logical_rows(path: Path, frame_shape: tuple[int, int], plan: Plan,
                 capacity: int) -> Iterator[tuple[int, np.ndarray]]:
    """(logical position, frame) for every stored entry, oldest first; a wrapped buffer is read
    in two passes. The first pass always runs to the end of the array, which checks the whole
    stream (its CRC) before anything is saved."""
    end = plan.oldest + plan.stored
    for index, frame in read_rows(path, frame_shape, plan.oldest, capacity, expect_end=True):
        if index >= end:
            continue  # past the newest entry of a buffer not yet full: read only for the check
        yield index - plan.oldest, frame
    if end > capacity:
        for index, frame in read_rows(path, frame_shape, 0, end - capacity, expect_end=False):
            yield capacity - plan.oldest + index, frame


# --- info ----------------------------------------------------------------------------------------

def snapshot_path(data: Path) -> Path:
    """DATA itself, or a run folder's latest replay-<step>.bin."""
    if data.is_dir():
        snapshots = sorted(data.glob("replay-*.bin"), key=lambda p: (len(p.name), p.name))
        if not snapshots:
            raise DatasetError(f"{data}: no replay-*.bin snapshot in this folder")
        return snapshots[-1]
    if not data.is_file():
        raise DatasetError(f"{data}: no such file or folder")
    return data


@dataclass(frozen=True)
class Episodes:
    complete: list[tuple[int, int]]  # (first, last) index into the log: start to terminal
    cut: list[tuple[int, int]]  # start to a truncation (a time limit, or an import's edge)
    partial: int  # episodes at the edges: begun before the oldest transition, or still in progress
    begun_before: int  # 1 if the oldest episode's start is no longer in the memory
    in_progress: int  # 1 if the newest episode has not ended


def split_episodes(log: dict[str, np.ndarray]) -> Episodes:
    ended = log["terminated"] | log["truncated"]
    starts = np.flatnonzero(log["episode_start"] | np.concatenate(([True], ended[:-1])))
    complete, cut = [], []
    partial = begun_before = in_progress = 0
    for k, first in enumerate(starts):
        last = (starts[k + 1] if k + 1 < len(starts) else len(ended)) - 1
        started, finished = bool(log["episode_start"][first]), bool(ended[last])
        begun_before += not started
        in_progress += not finished
        if not (started and finished):
            partial += 1
        elif log["terminated"][last]:
            complete.append((int(first), int(last)))
        else:
            cut.append((int(first), int(last)))
    return Episodes(complete, cut, partial, begun_before, in_progress)


def action_histogram(actions: np.ndarray) -> str:
    """Each action's count and share, from np.unique: never an array as long as the largest
    action (an old snapshot may hold any int32). Actions 0 .. the largest are all listed, unused
    ones as 0, when they are an Atari game's; otherwise only those that occur."""
    values, counts = np.unique(actions, return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    atari = 0 <= values[0] and values[-1] < ATARI_ACTIONS
    shown = range(values[-1] + 1) if atari else values.tolist()
    line = "actions: " + ", ".join(f"{a}: {found.get(a, 0):,} ({found.get(a, 0) / len(actions):.1%})"
                                   for a in shown)
    return line if atari else line + f" (not all in 0 to {ATARI_ACTIONS - 1}: not an Atari game's)"


def unusable(memory: ReplayMemory) -> str | None:
    """Why this project's networks, which take (STACK, 84, 84) states, cannot learn from or be
    measured on this memory; None if they can."""
    if len(memory) == 0:
        return "no sampleable transition"
    if memory.frame_shape != FRAME_SHAPE or memory.stack != STACK:
        return (f"{memory.frame_shape[0]}x{memory.frame_shape[1]} frames stacked by {memory.stack}; "
                f"the networks take {FRAME_SHAPE[0]}x{FRAME_SHAPE[1]} stacked by {STACK}")
    return None


def describe(data: Path) -> list[str]:
    path = snapshot_path(Path(data))
    try:
        memory = load_snapshot(path)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: {e}") from None
    log = memory.export_log()
    count = len(log["ids"])
    kind = "prioritized" if isinstance(memory, PrioritizedReplayMemory) else "uniform"
    lines = [f"{path}: {memory.frame_shape[0]}x{memory.frame_shape[1]} frames, stack {memory.stack}, "
             f"n-step {memory.n_step}, gamma {memory.gamma:g}, {kind}, capacity {memory.capacity:,}",
             f"transitions: {count:,} (ids {log['ids'][0]:,} to {log['ids'][-1]:,}), "
             f"{len(memory):,} sampleable" if count else "transitions: 0"]
    if count:
        # Episodes are contiguous within a stream (a memory fed by several envs interleaves them).
        parts = [{key: values[log["streams"] == stream] for key, values in log.items()}
                 for stream in np.unique(log["streams"])]
        split = [(part, split_episodes(part)) for part in parts]
        complete = sum(len(eps.complete) for _, eps in split)
        cut = sum(len(eps.cut) for _, eps in split)
        partial = sum(eps.partial for _, eps in split)
        begun_before = sum(eps.begun_before for _, eps in split)
        in_progress = sum(eps.in_progress for _, eps in split)
        lines.append(f"episodes: {complete:,} complete (start to terminal), {cut:,} "
                     f"cut short (truncated), {partial} partial at the edges ({begun_before} begun "
                     f"before the oldest transition, {in_progress} still in progress)")
        returns = np.array([part["rewards"][a:b + 1].sum(dtype=np.float64) for part, eps in split
                            for a, b in eps.complete])
        lengths = np.array([b - a + 1 for _, eps in split for a, b in eps.complete])
        if len(returns):
            lines.append(f"returns of the {len(returns):,} complete episodes (summed stored rewards): "
                         f"mean {returns.mean():.2f}, std {returns.std():.2f}, min {returns.min():g}, "
                         f"max {returns.max():g}; mean length {lengths.mean():.1f} transitions")
        else:
            lines.append("returns: no complete episode")
        values = np.unique(log["rewards"])
        shown = ", ".join(f"{v:g}" for v in values[:10]) + (", ..." if len(values) > 10 else "")
        clipped = bool(np.all(np.isin(values, (-1.0, 0.0, 1.0))))
        lines.append(f"stored reward values: {shown}" + (" (all in {-1, 0, 1}: clipped)" if clipped else ""))
        lines.append(action_histogram(log["actions"]))
    problem = unusable(memory)
    if problem:
        lines.append(f"not usable by qvalues or --offline: {problem}")
    size = path.stat().st_size
    lines.append(f"size on disk: {size:,} bytes ({size / 1e9:.2f} GB)")
    protocol, where = recorded_protocol(path)
    if protocol:
        lines.append(f"protocol: {protocol} (from {where})")
    lines.append("note: returns sum the rewards the snapshot stores. A training run's snapshot stores "
                 "rewards clipped to their sign and, under --protocol deepmind, ends an episode at "
                 "every lost life, so its episodes are lives and its returns are not game scores; an "
                 "imported DQN Replay Dataset stores Dopamine's rewards (clipped to [-1, 1]) and its "
                 "episodes are whole games.")
    return lines


# --- Q-values against returns ---------------------------------------------------------------------

def discounted_returns(log: dict[str, np.ndarray], gamma: float) -> np.ndarray:
    """Per transition of export_log(): sum_k gamma^k r_(t+k) to the end of its episode, where
    that episode ends with a terminal inside the data; NaN where it does not (cut by a
    truncation, or still in progress), as the true return is then unknown. float64."""
    returns = np.full(len(log["ids"]), np.nan)
    for stream in np.unique(log["streams"]):
        rows = np.flatnonzero(log["streams"] == stream)
        following = np.nan  # the return from the next transition of the stream's episode
        for row in rows[::-1]:
            if log["terminated"][row]:
                following = 0.0
            elif log["truncated"][row]:
                following = np.nan
            following = float(log["rewards"][row]) + gamma * following
            returns[row] = following
            if log["episode_start"][row]:
                following = np.nan  # the transition before it ends an earlier episode
    return returns


@dataclass(frozen=True)
class QAgainstReturns:
    transitions: int     # sampled transitions whose return is known
    mean_q: float        # mean Q(s, a_data) of the network over them
    mean_max_q: float    # mean max_a Q(s, a): the value the greedy policy claims there
    mean_return: float   # mean discounted return over them (the memory's gamma, stored rewards)
    gap_stderr: float    # standard error of mean_q - mean_return over the sampled transitions
                         # (the sampling noise of this measurement only, not a seed's spread)

    def verdict(self) -> str:
        """Whether Q(s, a_data) exceeds the returns by more than the sampling noise (2 SE)."""
        gap = self.mean_q - self.mean_return
        if abs(gap) <= 2 * self.gap_stderr:
            return "within 2 standard errors of the returns"
        return "overestimates" if gap > 0 else "underestimates"


def q_against_returns(memory: ReplayMemory, network, samples: int, batch_size: int = 256,
                      seed: int = 0) -> QAgainstReturns:
    """Sample `samples` transitions uniformly (with replacement) and compare the network's
    Q(s, a_data) and max_a Q(s, a) with their actual discounted returns (per agent step,
    memory.gamma). network: uint8 (B, stack, 84, 84) -> (B, A) Q-values (atari_dqn.policy.load).
    The memory's RNG is reseeded with `seed`; a prioritized memory is sampled with equal
    priorities."""
    import torch

    if len(memory) == 0:
        raise DatasetError("no sampleable transition")
    log = memory.export_log()
    returns = discounted_returns(log, memory.gamma)
    if isinstance(memory, PrioritizedReplayMemory):
        memory.update_priorities(log["ids"], np.ones(len(log["ids"])))
    memory.reseed(seed)
    q_data, q_max, known_returns = [], [], []  # per kept transition, batch by batch
    device = next(network.parameters()).device
    for start in range(0, samples, batch_size):
        size = min(batch_size, samples - start)
        batch = (memory.sample(size, 0.0) if isinstance(memory, PrioritizedReplayMemory)
                 else memory.sample(size))
        known = returns[np.searchsorted(log["ids"], batch.ids)]
        keep = ~np.isnan(known)
        if not keep.any():
            continue
        with torch.inference_mode():
            q = network(torch.from_numpy(batch.states[keep]).to(device))
            chosen = q.gather(1, torch.from_numpy(batch.actions[keep]).to(device)[:, None])
        q_data.append(chosen[:, 0].double().cpu().numpy())
        q_max.append(q.max(dim=1).values.double().cpu().numpy())
        known_returns.append(known[keep])
    if not q_data:
        raise DatasetError("no sampled transition belongs to an episode that ends in the data")
    q_data, q_max, known_returns = map(np.concatenate, (q_data, q_max, known_returns))
    gap = q_data - known_returns
    count = len(gap)
    stderr = float(gap.std(ddof=1) / np.sqrt(count)) if count > 1 else math.inf
    return QAgainstReturns(count, float(q_data.mean()), float(q_max.mean()),
                           float(known_returns.mean()), stderr)


def refuse_behaviour_cloning(model: Path) -> None:
    """A --loss bc network outputs action logits, not Q-values: comparing them with returns
    would mean nothing. The run's config.json (beside the model) says which loss made it."""
    from atari_dqn.policy import PolicyLoadError, model_file

    try:
        config = model_file(model).parent / "config.json"
    except PolicyLoadError as e:
        raise DatasetError(str(e)) from None
    try:
        loss = json.loads(config.read_text()).get("loss") if config.is_file() else None
    except (OSError, ValueError, AttributeError):
        loss = None  # policy.load() reports an unreadable config.json in its own words
    if loss == "bc":
        raise DatasetError(f"{model}: a --loss bc model outputs action logits, not Q-values")


def input_channels(network) -> int | None:
    """The frames per state a network takes: its first convolution's input channels."""
    import torch

    conv = next((m for m in network.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return None if conv is None else conv.in_channels


def describe_q_values(data: Path, models: list[Path], samples: int) -> list[str]:
    """The report of q_against_returns() for each model, on one load of the data: every model
    is checked (loadable, not bc, enough actions) before the first is measured."""
    from atari_dqn.policy import PolicyLoadError, load

    path = snapshot_path(Path(data))
    networks = []
    for model in models:
        refuse_behaviour_cloning(model)
        try:
            networks.append(load(model))
        except PolicyLoadError as e:
            raise DatasetError(str(e)) from None
    try:
        memory = load_snapshot(path)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: {e}") from None
    problem = unusable(memory)
    if problem:
        raise DatasetError(f"{path}: {problem}")
    actions = memory.export_log()["actions"]
    lines = []
    for model, network in zip(models, networks):
        channels = input_channels(network)
        if channels is not None and channels != memory.stack:
            raise DatasetError(f"{path} holds states of {memory.stack} stacked frames; {model} "
                               f"takes {channels}")
        if int(actions.min()) < 0 or int(actions.max()) >= network.n_actions:
            raise DatasetError(f"{path} holds actions {int(actions.min())} to {int(actions.max())}; "
                               f"{model} has {network.n_actions}: another game's data?")
    for model, network in zip(models, networks):
        result = q_against_returns(memory, network, samples)
        lines += [f"{path}, model {model}: {result.transitions:,} sampled transitions of "
                  f"episodes that end in the data (gamma {memory.gamma:g} per agent step)",
                  f"mean Q(s, a_data): {result.mean_q:.3f}",
                  f"mean max_a Q(s, a): {result.mean_max_q:.3f} (the greedy action's)",
                  f"mean discounted return: {result.mean_return:.3f} (the stored rewards)",
                  f"Q - return: {result.mean_q - result.mean_return:+.3f} "
                  f"± {result.gap_stderr:.3f} (standard error over the sampled transitions): "
                  f"{result.verdict()}"]
    return lines


# --- command line --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    imp = sub.add_parser("import", help="convert a DQN Replay Dataset checkpoint into a replay snapshot")
    imp.add_argument("folder", type=Path, metavar="DIR", help="folder of Dopamine replay checkpoint files")
    imp.add_argument("--out", type=Path, required=True, help="the snapshot to write (must not exist)")
    imp.add_argument("--suffix", help="checkpoint number N in *_ckpt.N.gz (default: the only one)")
    imp.add_argument("--stack", type=int, default=DEFAULT_STACK,
                     help="frames per state: Dopamine's stack_size (its zero padding is stack - 1 "
                          "entries) and the memory's")
    info = sub.add_parser("info", help="describe a replay snapshot")
    info.add_argument("data", type=Path, metavar="DATA", help="a replay-*.bin file, or a run folder")
    qv = sub.add_parser("qvalues", help="models' mean Q on the data's actions against the "
                                        "data's discounted returns")
    qv.add_argument("data", type=Path, metavar="DATA", help="a replay-*.bin file, or a run folder")
    qv.add_argument("model", type=Path, nargs="+", metavar="MODEL",
                    help="model files or run folders (not --loss bc runs); the data is loaded once "
                         "and each model sees the same sampled transitions")
    qv.add_argument("--samples", type=int, default=10_000,
                    help="transitions sampled (with replacement), uniformly")
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            memory = import_dopamine(args.folder, args.out, args.suffix, args.stack)
            print(f"wrote {args.out}: {memory.appended:,} transitions "
                  f"({args.out.stat().st_size:,} bytes)")
        elif args.command == "qvalues":
            if args.samples < 1:
                raise DatasetError(f"--samples must be at least 1, got {args.samples}")
            print("\n".join(describe_q_values(args.data, args.model, args.samples)))
        else:
            print("\n".join(describe(args.data)))
    except DatasetError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_tool(main)
