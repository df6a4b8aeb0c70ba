"""The learner's schedule: updates at learning boundaries, with and without --overlap."""

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
def test_with_overlap_the_actor_is_one_update_behind_until_synced(prioritized):
    config = Config(out_dir="x", batch_size=8, prioritized=prioritized, overlap=True,
                    compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    stats = []
    updates = Updates(agent, memory, config, stats.append)
    try:
        before = _weights(agent.online)
        updates.start(step=4)
        updates.wait()
        assert len(stats) == 1
        assert all(torch.equal(a, b) for a, b in zip(before, _weights(agent.actor)))
        assert any(not torch.equal(a, b) for a, b in zip(before, _weights(agent.online)))
        if prioritized:  # computed, kept for the next boundary (and a checkpoint), not applied
            pending = updates.pending()
            assert len(pending["ids"]) == 8 and memory.max_priority == 1.0
        updates.finish()
        assert updates.pending() is None
        if prioritized:
            assert memory.max_priority != 1.0
        agent.sync_actor()
        assert all(torch.equal(a, b) for a, b in zip(_weights(agent.online),
                                                     _weights(agent.actor)))
    finally:
        updates.close()


def test_without_overlap_the_actor_is_the_online_network_and_updates_finish_at_once():
    config = Config(out_dir="x", batch_size=8, prioritized=True, overlap=False, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    assert agent.actor is agent.online
    memory = _filled_memory(config)
    stats = []
    updates = Updates(agent, memory, config, stats.append)
    updates.start(step=4)
    assert len(stats) == 1 and updates.pending() is None and memory.max_priority != 1.0
    assert "actor" not in agent.state_dict()
