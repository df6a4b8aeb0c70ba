"""The loop's wiring, below the level of a whole run."""

from __future__ import annotations

import numpy as np
import pytest

from atari_dqn import train as training
from atari_dqn.agent import Agent
from atari_dqn.config import Config, ConfigError


def test_the_state_acted_on_is_the_state_the_memory_returns(tmp_path, monkeypatch):
    acted: list[tuple[np.ndarray, int]] = []
    memories = []
    real_act_batch, real_make_memory = Agent.act_batch, training.make_memory

    def recording_act_batch(self, states, epsilon, rng, **kwargs):
        actions = real_act_batch(self, states, epsilon, rng, **kwargs)
        acted.extend(zip(states.copy(), actions.tolist()))
        return actions

    def keep_memory(config):
        memories.append(real_make_memory(config))
        return memories[0]

    monkeypatch.setattr(Agent, "act_batch", recording_act_batch)
    monkeypatch.setattr(training, "make_memory", keep_memory)
    steps = 600  # several lost lives, so episode starts (padded stacks) are sampled too
    config = Config(total_steps=steps, learning_starts_steps=steps,
                    memory_capacity_transitions=steps, eval_every_steps=steps, eval_episodes=1,
                    eval_max_steps=5, n_step=1, compile=False, out_dir=str(tmp_path / "run"))
    training.train(config)
    memory = memories[0]
    assert len(memory) == steps
    train_acts = acted[:steps]  # the acts after these are the final evaluation's
    batch = memory.sample(512)
    for i, transition in enumerate(batch.ids):
        state, action = train_acts[transition]
        np.testing.assert_array_equal(batch.states[i], state)
        assert batch.actions[i] == action
        if batch.dones[i] == 0.0 and transition + 1 < steps:
            np.testing.assert_array_equal(batch.next_states[i], train_acts[transition + 1][0])
    starts = [s for s, _ in train_acts if all(np.array_equal(s[0], s[k]) for k in range(4))]
    assert len(starts) >= 2, "expected a few episode starts in 600 steps of random play"


def test_pick_device():
    assert training.pick_device("cpu").type == "cpu"
    assert training.pick_device("auto").type in ("cpu", "cuda")


def test_a_config_without_a_known_game_or_a_folder_is_refused_before_anything_is_written(
        tmp_path):
    with pytest.raises(ConfigError, match="unknown Atari game"):
        training.train(Config(env_id="NoSuchGame", out_dir=str(tmp_path / "run")))
    with pytest.raises(ConfigError, match="--out"):
        training.train(Config())
    assert not (tmp_path / "run").exists()
