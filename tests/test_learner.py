"""The learner's schedule: an update at each learning boundary, in turn with acting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atari_dqn.agent import Agent
from atari_dqn.config import Config
from atari_dqn.learner import Updates
from atari_dqn.train import make_memory


def _weights(network):
    return [p.detach().clone() for p in network.parameters()]


def _filled_memory(config):
    memory = make_memory(config)
    rng = np.random.default_rng(0)
    memory.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    for _ in range(64):
        memory.append(int(rng.integers(4)), 1.0, rng.integers(0, 256, (84, 84), dtype=np.uint8),
                      False)
    return memory


@pytest.mark.parametrize("prioritized", [False, True])
def test_an_update_and_its_priorities_are_done_when_start_returns(prioritized):
    config = Config(out_dir="x", batch_size=8, prioritized=prioritized, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    stats = []
    updates = Updates(agent, memory, config, stats.append)
    before = _weights(agent.online)
    updates.start(step=4)
    assert len(stats) == 1 and updates.pending() is None
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(agent.online)))
    if prioritized:  # the sampled transitions have their |TD error| priorities already
        assert memory.max_priority != 1.0
    assert set(agent.state_dict()) == {"online", "target", "optimizer"}


def test_priorities_a_checkpoint_left_pending_are_kept_until_the_next_finish():
    config = Config(out_dir="x", batch_size=8, prioritized=True, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    pending = {"ids": [3, 5], "priorities": [7.0, 0.5]}
    updates = Updates(agent, memory, config, lambda stats: None, pending)
    assert updates.pending() == pending and memory.max_priority == 1.0  # checkpointed again
    updates.finish()
    assert updates.pending() is None
    assert memory.max_priority == pytest.approx(7.0 + memory.eps)
    assert memory.priority(5) == pytest.approx((0.5 + memory.eps) ** memory.alpha)
