"""The loop's wiring and the run-folder rules, below the level of a whole run."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import torch
import pytest

from atari_dqn import train as training
from atari_dqn.agent import Agent
from atari_dqn.config import Config, ConfigError
from atari_dqn.files import atomic_write, atomic_write_text


def test_the_state_acted_on_is_the_state_the_memory_returns(tmp_path, monkeypatch):
    acted: list[tuple[np.ndarray, int]] = []
    memories = []
    real_act, real_make_memory = Agent.act, training.make_memory

    def recording_act(self, state, epsilon, rng, **kwargs):
        action = real_act(self, state, epsilon, rng, **kwargs)
        acted.append((state.copy(), action))
        return action

    def keep_memory(config):
        memories.append(real_make_memory(config))
        return memories[0]

    monkeypatch.setattr(Agent, "act", recording_act)
    monkeypatch.setattr(training, "make_memory", keep_memory)
    steps = 600  # several lost lives, so episode starts (padded stacks) are sampled too
    config = Config(total_steps=steps, learning_starts_steps=steps,
                    memory_capacity_transitions=steps, eval_every_steps=steps, eval_episodes=1,
                    eval_max_steps=5, n_step=1, out_dir=str(tmp_path / "run"))
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


def test_create_run_dir_refuses_a_folder_with_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "something").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        training.create_run_dir(Config(out_dir=str(run)))


def test_create_run_dir_accepts_an_empty_folder_and_writes_the_config(tmp_path):
    config = Config(out_dir=str(tmp_path), lr=3e-4)
    training.create_run_dir(config)
    assert Config.from_json((tmp_path / "config.json").read_text()) == config


def test_pick_device():
    assert training.pick_device("cpu").type == "cpu"
    assert training.pick_device("auto").type in ("cpu", "cuda")


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "rewards.txt"
    atomic_write_text(path, "old\n")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rewards.txt"]


def test_resume_starts_a_fresh_episode_when_the_saved_one_cannot_be_restored(
        tmp_path, monkeypatch, capsys):
    config = Config(total_steps=60, learning_starts_steps=60, memory_capacity_transitions=100,
                    eval_every_steps=30, eval_episodes=1, eval_max_steps=5,
                    out_dir=str(tmp_path / "run"))
    assert training.train(config, stop_when=lambda step: step == 40).steps == 40

    def broken_restore(env, snap):
        raise RuntimeError("emulator state from another version")

    monkeypatch.setattr(training.envs, "restore", broken_restore)
    resumed = training.resume_config(config.out_dir, {})
    assert training.train(resumed).steps == 60
    assert "started a fresh episode" in capsys.readouterr().out
    assert len((tmp_path / "run" / "rewards.txt").read_text().splitlines()) == 2


def _weights(network):
    return [p.detach().clone() for p in network.parameters()]


def _filled_memory(config):
    memory = training.make_memory(config)
    rng = np.random.default_rng(0)
    memory.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    for _ in range(64):
        memory.append(int(rng.integers(4)), 1.0, rng.integers(0, 256, (84, 84), dtype=np.uint8),
                      False)
    return memory


@pytest.mark.parametrize("prioritized", [False, True])
def test_with_overlap_the_actor_is_one_update_behind_until_synced(prioritized):
    config = Config(out_dir="x", batch_size=8, prioritized=prioritized, overlap=True)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    stats = []
    updates = training.Updates(agent, memory, config, stats.append)
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
    config = Config(out_dir="x", batch_size=8, prioritized=True, overlap=False)
    agent = Agent(4, config, torch.device("cpu"))
    assert agent.actor is agent.online
    memory = _filled_memory(config)
    stats = []
    updates = training.Updates(agent, memory, config, stats.append)
    updates.start(step=4)
    assert len(stats) == 1 and updates.pending() is None and memory.max_priority != 1.0
    assert "actor" not in agent.state_dict()


def test_steps_per_second_leave_out_evaluation_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training, "LOG_EVERY_STEPS", 100)
    monkeypatch.setattr(training, "LINE_EVERY_STEPS", 100)
    now = [0.0]  # a fake clock: 50 agent steps per second of training
    config = Config(total_steps=300, out_dir=str(tmp_path / "run"))
    telemetry = training.Telemetry(config, tmp_path, 0, clock=lambda: now[0])
    progress = training.Progress()
    for step in range(1, 201):
        now[0] += 0.02
        progress.step = step
        if step == 100:  # an evaluation and its checkpoint take 30 s
            now[0] += 30.0
            progress.evaluations, progress.last_eval_score = 1, 2.0
            telemetry.evaluated(progress, 10, seconds=30.0)
        telemetry.stepped(progress, 0.5)
    telemetry.close()
    out = capsys.readouterr().out  # not a terminal: lines, not the bar
    assert "evaluation 1: agent step 100, mean score 2.0 over 10 games" in out
    rates = re.findall(r"^agent step (\d+) of 300: (\d+) steps/s", out, re.MULTILINE)
    assert rates == [("100", "50"), ("200", "50")]


def test_a_run_from_before_the_architecture_flags_resumes_with_them_at_their_old_values(
        tmp_path):
    old = dataclasses.asdict(Config(out_dir=str(tmp_path)))
    for name in ("head", "n_quantiles", "network", "augment", "reset_every_steps"):
        del old[name]
    torch.save({"version": training.CHECKPOINT_VERSION, "config": old}, tmp_path / "checkpoint.pt")
    same = {"head": "scalar", "network": "nature", "augment": False, "reset_every_steps": 0}
    resumed = training.resume_config(str(tmp_path), same)
    assert (resumed.head, resumed.network, resumed.augment) == ("scalar", "nature", False)
    with pytest.raises(ConfigError, match="--head cannot change"):
        training.resume_config(str(tmp_path), {"head": "quantile"})
