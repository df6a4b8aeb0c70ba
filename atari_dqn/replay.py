"""The Python face of the C++ replay memory (csrc/, built as atari_dqn._replay).

Each 84x84 observation is stored once; stacked states are assembled in C++ at
sample time into freshly allocated numpy arrays with the GIL released. This
module checks argument types and shapes with clear messages and wraps a sample
in a typed `Batch`. The contract (names and meaning) is public:

    mem = ReplayMemory(capacity, frame_shape=(84, 84), stack=4, seed=0, streams=1)
    mem.start_episode(frame, stream=0)             # observation after reset
    mem.append(action, reward, frame, terminated, truncated=False, stream=0)
    mem.append_batch(actions, rewards, frames, terminated, truncated, reset_frames=None)  # row i: stream i
    mem.state(stream=0); mem.states()              # newest stacked state of one / every stream
    len(mem)                                       # sampleable transitions
    b = mem.sample(batch_size)                     # Batch
    PrioritizedReplayMemory(..., alpha=0.6, eps=1e-6).sample(batch_size, beta)
    mem.update_priorities(ids, priorities)         # priorities = |TD error|
    mem.save(path); ReplayMemory.load(path)

Stacking rule: the state of a transition is the last `stack` observations of
its episode up to the one the action was taken in, padded by repeating the
episode's first observation. Capacity counts transitions: the memory holds the
newest `capacity` of them, every one with all its frames.

Extensions: `n_step`/`gamma` give n-step returns computed in C++ at sample time
(`Batch.discounts` is gamma**k, 0 after a terminal); `state()` is the stacked
state of the newest observation, assembled by the same code as `sample`.

Streams: a memory fed by N envs at once has `streams=N`; each stream keeps its
own episodes (a state never reaches into another stream), ids stay global (the
n-th append over all streams has id n) and capacity counts the transitions of
all streams together. `streams=1` is the single-env memory, unchanged.
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass

import numpy as np

from atari_dqn import _replay

__all__ = ["Batch", "ReplayMemory", "PrioritizedReplayMemory", "load_snapshot"]


@dataclass(frozen=True, slots=True)
class Batch:
    """One sampled minibatch; every array has batch_size rows."""

    states: np.ndarray  # (B, stack, H, W) uint8: the state the action was taken in
    actions: np.ndarray  # (B,) int64
    rewards: np.ndarray  # (B,) float32: the reward (n_step=1) or discounted n-step return
    next_states: np.ndarray  # (B, stack, H, W) uint8: the state n steps later (true last state if truncated)
    dones: np.ndarray  # (B,) float32: 1.0 only when the episode terminated within the n steps
    discounts: np.ndarray  # (B,) float32: gamma**k for the k steps spanned, 0.0 after a terminal
    ids: np.ndarray  # (B,) int64: transition ids (the n-th append has id n)
    weights: np.ndarray | None = None  # (B,) float32 importance weights (PrioritizedReplayMemory), max <= 1


# append_batch takes arrays as they are, without converting (no silent copy):
# every one must have exactly this dtype and be C-contiguous.
_BATCH_DTYPES = {
    "actions": np.dtype(np.int64),
    "rewards": np.dtype(np.float32),
    "frames": np.dtype(np.uint8),
    "terminated": np.dtype(np.bool_),
    "truncated": np.dtype(np.bool_),
    "reset_frames": np.dtype(np.uint8),
}


def _check_frame(frame: object, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy uint8 array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise TypeError(f"frame must have dtype uint8, got {frame.dtype}")
    if frame.shape != shape:
        raise ValueError(f"frame must have shape {shape}, got {frame.shape}")
    # The store copies the frame in anyway; a strided view only needs one more pass.
    return frame if frame.flags.c_contiguous else np.ascontiguousarray(frame)


def _check_batch_array(value: object, name: str) -> None:
    dtype = _BATCH_DTYPES[name]
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy {dtype} array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {value.dtype} (convert it with .astype)")
    if not value.flags.c_contiguous:
        raise TypeError(f"{name} must be C-contiguous (np.ascontiguousarray)")


def _check_int(value: object, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _check_size(value: object, name: str) -> int:
    """An integer the C++ core takes as int64 (it checks the meaningful range itself)."""
    value = _check_int(value, name)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} is too large: {value}")
    return value


def _check_flag(value: object, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def _check_seed(value: object, name: str = "seed") -> int:
    seed = _check_int(value, name)
    if not 0 <= seed < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return seed


# How each kind of core option is checked before it reaches C++. The options themselves, in
# order, with their kinds and defaults, are declared once in csrc/replay_memory.h and listed by
# the core as _replay.MEMORY_OPTIONS; the core checks the meaningful ranges itself.
_CHECK_OPTION = {
    "int64": _check_size,
    "uint64": _check_seed,
    "float64": lambda value, name: float(value),
    "bool": lambda value, name: bool(value),
}


def _check_reward(value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"reward must be a real number, got {type(value).__name__}")
    return float(value)


class ReplayMemory:
    """Uniform replay over the newest `capacity` transitions."""

    _PRIORITIZED = False

    def __init__(
        self,
        capacity: int,
        *,
        frame_shape: tuple[int, int] = (84, 84),
        stack: int = 4,
        seed: int = 0,
        n_step: int = 1,
        gamma: float = 0.99,
        streams: int = 1,
    ) -> None:
        # A uniform memory has no alpha or eps; its snapshots have always held 0 and 1.
        self._core = self._make_core(
            capacity, frame_shape, stack=stack, seed=seed, n_step=n_step, gamma=gamma, alpha=0.0, eps=1.0,
            streams=streams,
        )

    @classmethod
    def _make_core(cls, capacity, frame_shape, **options) -> _replay.Memory:
        """Checks every option (each by its kind in _replay.MEMORY_OPTIONS) and builds the core."""
        if len(tuple(frame_shape)) != 2:
            raise ValueError(f"frame_shape must be (height, width), got {frame_shape!r}")
        height, width = (_check_size(v, "frame_shape") for v in frame_shape)
        options.update(capacity=capacity, height=height, width=width, prioritized=cls._PRIORITIZED)
        checked = {name: _CHECK_OPTION[kind](options[name], name) for name, kind, _ in _replay.MEMORY_OPTIONS}
        return _replay.Memory(**checked)

    # -- writing -----------------------------------------------------------------
    # The hot calls go straight to C++, whose argument conversion refuses (TypeError)
    # anything that is not exactly the right type (a bool flag, a float or int reward,
    # a C-contiguous uint8 frame, an int stream), without copying. Only then do the
    # Python checks run: to name the bad argument, or to accept what they allow beyond
    # that (0/1 flags, numpy scalars, a strided view). The fast path accepts a subset.
    def start_episode(self, frame: np.ndarray, stream: int = 0) -> None:
        """Begins an episode on a stream with the observation after reset (cuts off one in progress)."""
        try:
            self._core.start_episode(frame, stream)
        except TypeError:
            self._core.start_episode(_check_frame(frame, self.frame_shape), _check_size(stream, "stream"))

    def append(
        self, action: int, reward: float, frame: np.ndarray, terminated: bool, truncated: bool = False, stream: int = 0
    ) -> None:
        """Stores one env step of a stream: the action taken, the reward got, the observation it led to."""
        try:
            self._core.append(action, reward, frame, terminated, truncated, stream)
        except TypeError:
            self._core.append(
                _check_int(action, "action"),
                _check_reward(reward),
                _check_frame(frame, self.frame_shape),
                _check_flag(terminated, "terminated"),
                _check_flag(truncated, "truncated"),
                _check_size(stream, "stream"),
            )

    def append_batch(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        frames: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        reset_frames: np.ndarray | None = None,
    ) -> None:
        """Stores one env step of every stream at once; row i is stream i (N = streams rows).

        actions (N,) int64, rewards (N,) float32, frames (N, H, W) uint8, terminated and
        truncated (N,) bool; every array C-contiguous and of exactly that dtype (a
        TypeError otherwise, never a silent copy). The same as, for i in 0..N-1 in
        order, append(actions[i], ..., stream=i) followed, when reset_frames (N, H, W)
        uint8 is given and row i ended its episode, by start_episode(reset_frames[i],
        stream=i): rows that did not end ignore their reset frame. So row i gets id
        appended + i. Every row is checked before any is stored: a bad row raises and
        stores nothing. Runs in C++ with the GIL released.
        """
        try:
            self._core.append_batch(actions, rewards, frames, terminated, truncated, reset_frames)
        except TypeError:
            arrays = {"actions": actions, "rewards": rewards, "frames": frames, "terminated": terminated,
                      "truncated": truncated}
            if reset_frames is not None:
                arrays["reset_frames"] = reset_frames
            for name, value in arrays.items():
                _check_batch_array(value, name)
            raise

    # -- reading -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._core)

    def state(self, stream: int = 0) -> np.ndarray:
        """The (stack, H, W) uint8 state of a stream's newest observation: what the agent acts on next."""
        return self._core.state(_check_size(stream, "stream"))

    def states(self) -> np.ndarray:
        """The (streams, stack, H, W) uint8 states of every stream's newest observation (batched acting)."""
        return self._core.states()

    def sample(self, batch_size: int) -> Batch:
        """Uniformly samples batch_size transitions (with replacement)."""
        return self._sample(batch_size, 0.0)

    def _sample(self, batch_size: int, beta: float) -> Batch:
        states, actions, rewards, next_states, dones, discounts, ids, weights = self._core.sample(
            _check_int(batch_size, "batch_size"), float(beta)
        )
        return Batch(states, actions, rewards, next_states, dones, discounts, ids, weights)

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Writes a checksummed snapshot atomically (temporary file, fsync, rename)."""
        self._core.save(os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayMemory":
        """Reads a snapshot written by save() of this kind (load_snapshot); the RNG continues
        where it was saved."""
        return load_snapshot(path, prioritized=cls._PRIORITIZED)

    # -- introspection -------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._core.capacity

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self._core.height, self._core.width)

    @property
    def streams(self) -> int:
        """Independent episode streams (envs) feeding the memory."""
        return self._core.streams

    @property
    def stack(self) -> int:
        return self._core.stack

    @property
    def n_step(self) -> int:
        return self._core.n_step

    @property
    def gamma(self) -> float:
        return self._core.gamma

    @property
    def appended(self) -> int:
        """Transitions appended over the memory's life (the next id)."""
        return self._core.appended

    @property
    def nbytes(self) -> int:
        """Bytes the memory has allocated (frame chunks plus per-transition arrays)."""
        return self._core.bytes_allocated()

    def reseed(self, seed: int) -> None:
        self._core.reseed(_check_seed(seed))

    def check_invariants(self) -> None:
        """Raises RuntimeError if any internal invariant is broken (for tests)."""
        self._core.check_invariants()

    def export_log(self) -> dict[str, np.ndarray]:
        """The live transitions in id order, as a copy (for dataset tools, not for learning).

        Keys, each an array with one entry per live transition (min(appended, capacity)):
        ids int64; actions int32; rewards float32 (as appended); terminated, truncated and
        episode_start bool; streams uint16 (the stream each was appended on). episode_start
        marks the first step of an episode: the one after a terminal or truncation on the same
        stream, or, for the oldest live transition of a stream, one whose episode began with it
        (its stacked state has no earlier frame; with stack 1 the memory cannot tell, and it
        counts as a start only while no transition has left the memory).
        """
        return self._core.export_log()


class PrioritizedReplayMemory(ReplayMemory):
    """Proportional prioritized replay (Schaul et al. 2016) over a Fenwick tree.

    P(i) = p_i^alpha / sum_j p_j^alpha with p = |TD error| + eps; a batch takes one
    draw in each of batch_size equal segments of the total; new transitions get
    the largest p seen so far (1.0 at first); weights are (N P(i))^-beta divided
    by the largest weight over the whole memory.

    Every stored p^alpha lies in [eps^alpha, max_leaf], max_leaf = DBL_MAX / (2 capacity),
    so the total is finite and positive: eps and alpha whose eps^alpha underflows are
    refused at construction, and a priority whose (p + eps)^alpha exceeds max_leaf is
    refused by update_priorities (ValueError, nothing changed).
    """

    _PRIORITIZED = True

    def __init__(
        self,
        capacity: int,
        *,
        frame_shape: tuple[int, int] = (84, 84),
        stack: int = 4,
        alpha: float = 0.6,
        eps: float = 1e-6,
        seed: int = 0,
        n_step: int = 1,
        gamma: float = 0.99,
        streams: int = 1,
    ) -> None:
        self._core = self._make_core(
            capacity, frame_shape, stack=stack, seed=seed, n_step=n_step, gamma=gamma, alpha=alpha, eps=eps,
            streams=streams,
        )

    def sample(self, batch_size: int, beta: float) -> Batch:  # type: ignore[override]
        """Samples batch_size transitions in proportion to priority, with importance weights."""
        return self._sample(batch_size, beta)

    def update_priorities(self, ids: np.ndarray, priorities: np.ndarray) -> None:
        """Sets p = |TD error| + eps for sampled ids; ids overwritten since they were sampled are ignored."""
        ids = np.asarray(ids)
        priorities = np.asarray(priorities)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be an integer array, got dtype {ids.dtype}")
        if priorities.dtype.kind not in "fiu":
            raise TypeError(f"priorities must be a float array, got dtype {priorities.dtype}")
        if ids.ndim != 1 or priorities.shape != ids.shape:
            raise ValueError(
                f"ids and priorities must be 1-D and of the same length, got shapes {ids.shape} and {priorities.shape}"
            )
        self._core.update_priorities(
            np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(priorities, dtype=np.float64)
        )

    def priority(self, transition_id: int) -> float:
        """The stored p^alpha of a transition still in the memory (0.0 while not yet sampleable)."""
        return self._core.priority_of(_check_int(transition_id, "transition_id"))

    @property
    def alpha(self) -> float:
        return self._core.alpha

    @property
    def eps(self) -> float:
        return self._core.eps

    @property
    def max_priority(self) -> float:
        """The largest p = |TD error| + eps seen so far (1.0 at first)."""
        return self._core.max_priority


def load_snapshot(path: str | os.PathLike, prioritized: bool | None = None) -> ReplayMemory:
    """The one reader of snapshots: a PrioritizedReplayMemory if it was saved by one, else a
    ReplayMemory. prioritized: the kind expected (None: either); another is a ValueError."""
    core = _replay.Memory.load(os.fspath(path))
    if prioritized is not None and core.prioritized != prioritized:
        kind = "PrioritizedReplayMemory" if core.prioritized else "ReplayMemory"
        raise ValueError(f"{os.fspath(path)!r} holds a {kind}; load it with {kind}.load")
    kind = PrioritizedReplayMemory if core.prioritized else ReplayMemory
    memory = kind.__new__(kind)
    memory._core = core
    return memory
