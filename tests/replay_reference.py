"""A pure-Python reference model of the replay memory, written for clarity, not speed.

It keeps every episode of every stream whole and answers, for any transition id,
the record the C++ memory must return, and which ids may be sampled right now.
Ids are global over the streams (the n-th append has id n); everything else
(stacking, pending n-step transitions, cut-off episodes) is per stream.
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
    ids: list[int] = field(default_factory=list)  # the transition id of each step

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
    def __init__(self, capacity: int, stack: int, n_step: int = 1, gamma: float = 0.99, streams: int = 1) -> None:
        self.capacity, self.stack, self.n_step, self.gamma = capacity, stack, n_step, gamma
        self.streams: list[list[_Episode]] = [[] for _ in range(streams)]
        self.where: list[tuple[int, int, int]] = []  # id -> (stream, episode index, step)

    @property
    def appended(self) -> int:
        return len(self.where)

    def start_episode(self, frame: np.ndarray, stream: int = 0) -> None:
        episodes = self.streams[stream]
        if episodes and episodes[-1].actions and not episodes[-1].ended:
            episodes[-1].truncated[-1] = True  # cut off by the new episode
        episodes.append(_Episode([frame.copy()]))

    def append(
        self, action: int, reward: float, frame: np.ndarray, terminated: bool, truncated: bool, stream: int = 0
    ) -> None:
        episodes = self.streams[stream]
        episode = episodes[-1]
        self.where.append((stream, len(episodes) - 1, len(episode.actions)))
        episode.ids.append(self.appended - 1)
        episode.actions.append(action)
        episode.rewards.append(np.float32(reward))
        episode.terminated.append(terminated)
        episode.truncated.append(truncated)
        episode.observations.append(frame.copy())

    def episode_open(self, stream: int = 0) -> bool:
        return bool(self.streams[stream]) and not self.streams[stream][-1].ended

    def _stacked(self, episode: _Episode, obs_index: int) -> np.ndarray:
        frames = [episode.observations[max(0, obs_index - back)] for back in range(self.stack - 1, -1, -1)]
        return np.stack(frames)

    def pending_ids(self) -> set[int]:
        """Per stream: the newest min(n_step - 1, steps) transitions of an episode still in progress."""
        pending = set()
        for episodes in self.streams:
            if episodes and not episodes[-1].ended:
                ids = episodes[-1].ids
                pending.update(ids[len(ids) - min(self.n_step - 1, len(ids)):])
        return pending

    def sampleable_ids(self) -> list[int]:
        lo = max(0, self.appended - self.capacity)
        pending = self.pending_ids()
        return [i for i in range(lo, self.appended) if i not in pending]

    def current_state(self, stream: int = 0) -> np.ndarray:
        episode = self.streams[stream][-1]
        return self._stacked(episode, len(episode.observations) - 1)

    def record(self, transition_id: int) -> Record:
        s, e, t = self.where[transition_id]
        episode = self.streams[s][e]
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
