"""Run folders, the checkpoint format and resume."""

from __future__ import annotations

import dataclasses

import pytest

from atari_dqn import checkpoint
from atari_dqn import train as training
from atari_dqn.config import Config, ConfigError


def test_create_run_dir_refuses_a_folder_with_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "something").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        checkpoint.create_run_dir(Config(out_dir=str(run)))


def test_create_run_dir_accepts_an_empty_folder_and_writes_the_config(tmp_path):
    config = Config(out_dir=str(tmp_path), lr=3e-4)
    checkpoint.create_run_dir(config)
    assert Config.from_json((tmp_path / "config.json").read_text()) == config


def tiny(tmp_path, **extra) -> Config:
    return Config(total_steps=60, learning_starts_steps=60, memory_capacity_transitions=100,
                  eval_every_steps=30, eval_episodes=1, eval_max_steps=5, compile=False,
                  out_dir=str(tmp_path / "run"), **extra)


def test_a_checkpoint_holds_the_version_1_format(tmp_path):
    config = tiny(tmp_path)
    training.train(config, stop_when=lambda step: step == 40)
    saved = checkpoint.read_checkpoint(config.run_dir)
    assert saved["version"] == checkpoint.CHECKPOINT_VERSION == 1
    assert set(saved) == {"version", "config", "progress", "agent", "rng", "env", "replay",
                          "pending_priorities"}
    assert saved["config"] == dataclasses.asdict(config)
    assert saved["progress"]["step"] == 40 and saved["progress"]["evaluations"] == 1
    assert (config.run_dir / saved["replay"]).is_file()


def test_resume_starts_a_fresh_episode_when_the_saved_one_cannot_be_restored(
        tmp_path, monkeypatch, capsys):
    config = tiny(tmp_path)
    assert training.train(config, stop_when=lambda step: step == 40).steps == 40

    def broken_restore(env, snap):
        raise RuntimeError("emulator state from another version")

    monkeypatch.setattr(checkpoint.envs, "restore", broken_restore)
    resumed = checkpoint.resume_config(config.out_dir, {})
    assert training.train(resumed).steps == 60
    assert "started a fresh episode" in capsys.readouterr().out
    assert len((tmp_path / "run" / "rewards.txt").read_text().splitlines()) == 2


def test_resume_config_takes_the_saved_settings_and_the_changeable_flags(tmp_path):
    config = tiny(tmp_path, lr=3e-4)
    training.train(config, stop_when=lambda step: step == 30)
    resumed = checkpoint.resume_config(config.out_dir, {"total_steps": 90, "threads": 1})
    assert resumed == dataclasses.replace(config, total_steps=90, threads=1,
                                          resume=config.out_dir)
    with pytest.raises(ConfigError, match="--lr cannot change when resuming"):
        checkpoint.resume_config(config.out_dir, {"lr": 1e-3})
