"""A pure-Python reference model of the replay memory, written for clarity, not speed.

It keeps every episode whole and answers, for any transition id, the record the
C++ memory must return, and which ids may be sampled right now.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Episode:
    observations: list[np.ndarray]
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    first_id: int = 0

    @property
    def ended(self) -> bool:
        return bool(self.actions) and (self.terminated[-1] or self.truncated[-1])


@dataclass(frozen=True)
class Record:
    state: np.ndarray
    action: int
    reward: np.float32
    next_state: np.ndarray
    done: np.float32
    discount: np.float32


class ReferenceMemory:
    def __init__(self, capacity: int, stack: int, n_step: int = 1, gamma: float = 0.99) -> None:
        self.capacity, self.stack, self.n_step, self.gamma = capacity, stack, n_step, gamma
        self.episodes: list[_Episode] = []
        self.where: list[tuple[int, int]] = []  # id -> (episode index, step)

    @property
    def appended(self) -> int:
        return len(self.where)

    def start_episode(self, frame: np.ndarray) -> None:
        if self.episodes and self.episodes[-1].actions and not self.episodes[-1].ended:
            self.episodes[-1].truncated[-1] = True  # cut off by the new episode
        self.episodes.append(_Episode([frame.copy()], first_id=self.appended))

    def append(self, action: int, reward: float, frame: np.ndarray, terminated: bool, truncated: bool) -> None:
        episode = self.episodes[-1]
        self.where.append((len(self.episodes) - 1, len(episode.actions)))
        episode.actions.append(action)
        episode.rewards.append(np.float32(reward))
        episode.terminated.append(terminated)
        episode.truncated.append(truncated)
        episode.observations.append(frame.copy())

    def _stacked(self, episode: _Episode, obs_index: int) -> np.ndarray:
        frames = [episode.observations[max(0, obs_index - back)] for back in range(self.stack - 1, -1, -1)]
        return np.stack(frames)

    def pending(self) -> int:
        if not self.episodes or self.episodes[-1].ended:
            return 0
        return min(self.n_step - 1, len(self.episodes[-1].actions))

    def sampleable_ids(self) -> range:
        lo = max(0, self.appended - self.capacity)
        return range(lo, max(lo, self.appended - self.pending()))

    def current_state(self) -> np.ndarray:
        episode = self.episodes[-1]
        return self._stacked(episode, len(episode.observations) - 1)

    def record(self, transition_id: int) -> Record:
        e, t = self.where[transition_id]
        episode = self.episodes[e]
        ret, discount, last, terminated = 0.0, 1.0, t, False
        for k in range(self.n_step):
            last = t + k
            ret += discount * float(episode.rewards[last])
            discount *= self.gamma
            if episode.terminated[last]:
                terminated = True
                break
            if episode.truncated[last]:
                break
        return Record(
            state=self._stacked(episode, t),
            action=episode.actions[t],
            reward=np.float32(ret),
            next_state=self._stacked(episode, last + 1),
            done=np.float32(1.0 if terminated else 0.0),
            discount=np.float32(0.0 if terminated else discount),
        )
