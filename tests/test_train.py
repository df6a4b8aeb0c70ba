"""The loop's wiring, and how a run ends on bad settings, a full disk or a non-finite loss."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import main
from atari_dqn.config import Config, ConfigError
from atari_dqn.learn.agent import Agent
from atari_dqn.modes import one_process as training
from atari_dqn.run import lifecycle
from atari_dqn.run.checkpoint import read_checkpoint


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
                    eval_max_steps=5, n_step=1, compile=False, threads=1,
                    out_dir=str(tmp_path / "run"))
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


def test_a_config_without_a_known_game_or_a_folder_is_refused_before_anything_is_written(
        tmp_path):
    with pytest.raises(ConfigError, match="unknown Atari game"):
        training.train(Config(env_id="NoSuchGame", threads=1, out_dir=str(tmp_path / "run")))
    with pytest.raises(ConfigError, match="--out"):
        training.train(Config(threads=1))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module, name", [(training, "evaluation_games"), (lifecycle, "Telemetry")],
                         ids=["evaluation games", "telemetry"])
def test_the_training_games_end_when_a_later_part_cannot_be_made(tmp_path, monkeypatch, module,
                                                                 name):
    closed = []
    real_close = training.envs.TrainEnvs.close

    def recording_close(self):
        closed.append(self)
        real_close(self)

    def cannot_be_made(*args, **kwargs):
        raise OSError("no more processes")

    monkeypatch.setattr(training.envs.TrainEnvs, "close", recording_close)
    monkeypatch.setattr(module, name, cannot_be_made)
    config = Config(total_steps=60, memory_capacity_transitions=200, compile=False, threads=1,
                    out_dir=str(tmp_path / "run"))
    with pytest.raises(OSError, match="no more processes"):
        training.train(config)
    assert len(closed) == 1  # the games were made, then ended: no process left behind


# --- issue 12: errors before and during a run ---------------------------------------------------
FAST = ["--steps", "60", "--learning-starts", "20", "--memory-size", "200", "--batch-size", "4",
        "--target-update", "10", "--eval-every", "30", "--eval-episodes", "1",
        "--eval-max-steps", "20", "--seed", "1", "--threads", "1", "--no-compile"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted FAST run that runs stopped by errors must reproduce once resumed."""
    run = tmp_path_factory.mktemp("runs") / "straight"
    assert main.main([*FAST, "--out", str(run)]) == 0
    return run


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("main.py: error: "), err
    return err


@pytest.mark.parametrize("args, message", [
    (["--memory-size", "6", "--batch-size", "1"], "--memory-size must be at least 4 + --n-step"),
    (["--n-step", "1001"], "--n-step must be at most 1000"),
    (["--seed", "-1"], "--seed must be in"),
    (["--memory-size", "1e10"], "--allow-large-memory"),
    (["--memory-size", "1e19", "--allow-large-memory"], "capacity is too large"),
    (["--eval-max-steps", "6e8"], "--eval-max-steps must be at most"),
    (["--threads", "1e12"], "cores this process may use"),
    (["--prioritized", "--per-alpha", "inf"], "--per-alpha must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--adam-eps", "inf"], "--adam-eps must be a finite number"),
])
def test_bad_values_are_refused_before_the_run_folder_is_made(args, message, tmp_path, capsys):
    """Issue 12, defects 7-9: each used to leave a folder holding only config.json."""
    assert main.main([*FAST, *args, "--out", str(tmp_path / "run")]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_second_trainer_on_a_running_folder_exits_2(straight, tmp_path, capsys):
    from atari_dqn.run.checkpoint import RunLock

    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock(run)  # a trainer at work (this process stands in for it)
    try:
        assert main.main(["--resume", str(straight), "--steps", "90", "--out", str(run)]) == 2
        assert "--out cannot be given with --resume" in one_line_error(capsys)
        (run / "config.json").write_text((straight / "config.json").read_text())
        assert main.main(["--resume", str(run), "--steps", "90"]) == 2
        assert "is in use by another trainer" in one_line_error(capsys)
    finally:
        lock.close()


def test_resuming_a_finished_run_without_more_steps_exits_2(straight, capsys):
    assert main.main(["--resume", str(straight)]) == 2
    assert "give --steps above 60" in one_line_error(capsys)


def _fail_on(monkeypatch, method: str, name_starts: str, after: int = 0) -> None:
    """Path.<method> raises ENOSPC for files whose name starts so, from its (after+1)-th call."""
    real = getattr(Path, method)
    calls = [0]

    def full(self, *args, **kwargs):
        if self.name.startswith(name_starts):
            calls[0] += 1
            if calls[0] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, full)


@pytest.mark.parametrize("method, name, file", [
    ("write_bytes", ".checkpoint.pt", "checkpoint.pt"),  # the second checkpoint
    ("write_text", ".rewards.txt", "rewards.txt"),       # the second evaluation's line
    ("write_bytes", ".model_", "model_002.pt"),
])
def test_a_full_disk_stops_the_run_with_one_line_and_a_resume_catches_up(
        method, name, file, straight, tmp_path, monkeypatch, capsys):
    """Issue 12, defect 10: a RuntimeError traceback, and rewards.txt ahead of the checkpoint."""
    run = tmp_path / "run"
    _fail_on(monkeypatch, method, name, after=1)
    assert main.main([*FAST, "--out", str(run)]) == 2
    err = one_line_error(capsys)
    assert f"cannot write {run / file}: No space left on device" in err
    assert f"--resume {run} continues from its last checkpoint" in err
    assert read_checkpoint(run)["progress"]["step"] == 30  # the first checkpoint, intact
    monkeypatch.undo()  # space is free again
    assert main.main(["--resume", str(run)]) == 0
    assert (run / "rewards.txt").read_text() == (straight / "rewards.txt").read_text()
    for model in ("model_001.pt", "model_002.pt"):
        a, b = (torch.load(r / model, weights_only=True) for r in (run, straight))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(run.glob(".*.tmp.*")) and len(list(run.glob("replay-*.bin"))) == 1


def test_a_full_disk_while_saving_the_replay_memory_or_rendering_exits_2(tmp_path, monkeypatch,
                                                                         capsys):
    from atari_dqn.replay import ReplayMemory

    def full(self, path):
        raise OSError(errno.ENOSPC, f"cannot write '{path}': No space left on device")

    monkeypatch.setattr(ReplayMemory, "save", full)
    assert main.main([*FAST, "--out", str(tmp_path / "a")]) == 2
    assert (f"cannot write {tmp_path / 'a' / 'replay-000000030.bin'}: No space left on device"
            in one_line_error(capsys))
    monkeypatch.undo()
    from PIL import Image

    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if str(fp).endswith("game000-000005.png"):  # renamed 000005.png once the games end
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    assert main.main([*FAST, "--render", "--out", str(tmp_path / "b")]) == 2
    assert (f"cannot write {tmp_path / 'b' / 'eval_001' / 'game000-000005.png'}: No space left "
            f"on device;"
            f" once that is fixed, --resume {tmp_path / 'b'} continues from step 0"
            in one_line_error(capsys))


def test_a_non_finite_loss_stops_the_run_after_checkpointing_the_last_good_state(
        tmp_path, monkeypatch, capsys):
    """Issue 12, defect 6: NaN TD errors crashed inside the memory (prioritized) or trained NaN
    weights silently (uniform)."""
    real_learn = Agent.learn
    updates = [0]

    def learn_nan_at_the_fifth(self, batch, weights=None):
        updates[0] += 1
        if updates[0] == 5:
            batch.rewards[0] = np.nan
        return real_learn(self, batch, weights)

    monkeypatch.setattr(Agent, "learn", learn_nan_at_the_fifth)
    run = tmp_path / "run"
    assert main.main([*FAST, "--prioritized", "--out", str(run)]) == 2
    err = one_line_error(capsys)
    step = 20 + 5 * 4  # learning starts after step 20; one update every 4 steps
    assert f"non-finite loss at agent step {step} (loss nan" in err
    saved = read_checkpoint(run)
    assert saved["progress"]["step"] == step
    assert all(torch.isfinite(v).all() for v in saved["agent"]["online"].values())



def same(a: object, b: object) -> bool:
    """Nested dicts, lists and tensors equal exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def single_game_reference(config: Config) -> tuple[Agent, object]:
    """The training of the loop as it was before --envs, one game, step by step (evaluations
    left out: they change nothing that is learned): its agent and its memory at the end."""
    from atari_dqn.envs import atari as envs
    from atari_dqn.learn.schedule import epsilon

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    env = envs.make_train_env(config.env_id)
    agent = Agent(int(env.action_space.n), config, torch.device("cpu"))
    act_rng = np.random.default_rng(config.seed)
    memory = training.make_memory(config)
    obs, _ = env.reset(seed=config.seed)
    memory.start_episode(obs)
    for step in range(1, config.total_steps + 1):
        eps = epsilon(step - 1, start=config.eps_start, end=config.eps_end,
                      decay_steps=config.eps_decay_steps,
                      warmup_steps=config.learning_starts_steps)
        action = int(agent.act_batch(memory.state()[None], eps, act_rng)[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        memory.append(action, envs.learning_reward(reward), obs, terminated, truncated)
        if terminated or truncated:
            obs, _ = env.reset()
            memory.start_episode(obs)
        if (step > config.learning_starts_steps and step % config.train_every_steps == 0
                and len(memory) >= config.batch_size):
            agent.learn(memory.sample(config.batch_size))
        if step % config.target_update_steps == 0:
            agent.sync_target()
    env.close()
    return agent, memory


def test_one_game_trains_exactly_as_the_single_game_loop_did(tmp_path):
    """--envs 1 (the default) through the batched loop is the single-game loop bit for bit:
    the same network, optimizer state and replay memory (with its sampling rng)."""
    config = Config(total_steps=400, learning_starts_steps=100, memory_capacity_transitions=1000,
                    batch_size=8, target_update_steps=50, eps_decay_steps=100,
                    eval_every_steps=400, eval_episodes=1, eval_max_steps=20, seed=3,
                    threads=1, compile=False, out_dir=str(tmp_path / "run"))
    training.train(config)
    agent, memory = single_game_reference(config)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["agent"]
    for name in ("online", "target"):
        expected = getattr(agent, name).state_dict()
        assert all(torch.equal(saved[name][k], expected[k]) for k in expected), name
    assert same(saved["optimizer"], agent.optimizer.state_dict())
    memory.save(tmp_path / "reference.bin")
    snapshot, = (tmp_path / "run").glob("replay-*.bin")
    assert snapshot.read_bytes() == (tmp_path / "reference.bin").read_bytes()
