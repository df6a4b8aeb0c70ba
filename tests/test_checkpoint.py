"""Run folders, the checkpoint format and resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

from atari_dqn.config import Config, ConfigError
from atari_dqn.envs import atari as envs
from atari_dqn.modes import one_process as training
from atari_dqn.run import checkpoint


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
                  threads=1, out_dir=str(tmp_path / "run"), **extra)


def test_a_checkpoint_holds_the_version_2_format(tmp_path):
    config = tiny(tmp_path)
    training.train(config, stop_when=lambda step: step == 40)
    saved = checkpoint.read_checkpoint(config.run_dir)
    assert saved["version"] == checkpoint.CHECKPOINT_VERSION == 2
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

    monkeypatch.setattr(envs, "restore", broken_restore)
    resumed = checkpoint.resume_config(config.out_dir, {})
    assert training.train(resumed).steps == 60
    assert "started fresh games" in capsys.readouterr().out
    assert len((tmp_path / "run" / "rewards.txt").read_text().splitlines()) == 2


def test_resume_config_takes_the_saved_settings_and_the_changeable_flags(tmp_path):
    config = tiny(tmp_path, lr=3e-4)
    training.train(config, stop_when=lambda step: step == 30)
    resumed = checkpoint.resume_config(config.out_dir, {"total_steps": 90, "threads": 1})
    assert resumed == dataclasses.replace(config, total_steps=90, threads=1,
                                          resume=config.out_dir)
    with pytest.raises(ConfigError, match="--lr cannot change when resuming"):
        checkpoint.resume_config(config.out_dir, {"lr": 1e-3})


# --- issue 12: the folder's lock, its tidying, and what --resume refuses ----------------------

def test_a_second_trainer_on_the_folder_is_refused_and_a_killed_ones_lock_is_not_left(tmp_path):
    """Defect 13."""
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from atari_dqn.run.checkpoint import RunLock; RunLock(Path(sys.argv[1])); "
         "print('locked', flush=True); sys.stdin.read()", str(run)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ConfigError, match=f"in use by another trainer \\(pid {holder.pid}\\)"):
            checkpoint.RunLock(run)
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    checkpoint.RunLock(run).close()  # the kernel dropped the dead process's lock


def test_taking_a_folder_removes_temporaries_and_what_is_ahead_of_the_checkpoint(tmp_path):
    """Defects 10 and 11: rewards.txt, models and frames written after the checkpoint, and the
    temporary files of a killed writer."""
    from atari_dqn.run.evaluate import rewards_line

    run = tmp_path
    leftovers = ["replay-000000150.bin.tmp.4242", ".checkpoint.pt.tmp.abc.pt",
                 ".rewards.txt.tmp.x.txt", "replay-000000100.bin", "model_003.pt",
                 "eval_003.gif", "final_model.pt"]  # a resumed run's final model is ahead
    kept = ["replay-000000200.bin", "model_001.pt", "model_002.pt", "eval_002.gif",
            "config.json", "checkpoint.pt"]  # the checkpoint whose progress this is
    for name in leftovers + kept:
        (run / name).write_text("x")
    (run / "eval_003").mkdir()
    (run / "eval_003" / "000000.png").write_text("x")
    (run / "rewards.txt").write_text("three lines\nof which one\nis ahead\n")
    progress = checkpoint.Progress(step=200, evaluations=2,
                                   rewards_lines=[rewards_line(1, 100, 1.0),
                                                  rewards_line(2, 200, 2.0)])
    checkpoint.tidy_run_dir(run, progress, "replay-000000200.bin")
    assert sorted(p.name for p in run.iterdir()) == sorted(kept + ["rewards.txt",
                                                                   "rewards.png"])
    assert (run / "rewards.txt").read_text() == "\n".join(progress.rewards_lines) + "\n"


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path):
    """Defect 12: the folder held only config.json; --out and --resume both refused it."""
    config = tiny(tmp_path)
    checkpoint.create_run_dir(config).close()  # what a run killed before its checkpoint leaves
    (config.run_dir / ".config.json.tmp.123.json").write_text("half")
    resumed = checkpoint.resume_config(config.out_dir, {})
    assert resumed == dataclasses.replace(config, resume=config.out_dir)
    assert training.train(resumed).steps == 60
    straight = tiny(tmp_path / "straight")
    training.train(straight)
    assert ((config.run_dir / "rewards.txt").read_text()
            == (straight.run_dir / "rewards.txt").read_text())
    assert not list(config.run_dir.glob(".*.tmp.*"))


def test_resume_refuses_another_out_folder_and_steps_not_above_the_progress(tmp_path):
    """Defect 14: both were ignored silently."""
    config = tiny(tmp_path)
    training.train(config, stop_when=lambda step: step == 40)
    with pytest.raises(ConfigError, match="--out cannot be given with --resume"):
        checkpoint.resume_config(config.out_dir, {"out_dir": str(tmp_path / "other")})
    checkpoint.resume_config(config.out_dir, {"out_dir": config.out_dir})  # the same: fine
    with pytest.raises(ConfigError, match="has made 40 of its --steps 40 agent steps; give "
                                          "--steps above 40"):
        checkpoint.resume_config(config.out_dir, {"total_steps": 40})
    assert checkpoint.resume_config(config.out_dir, {"total_steps": 41}).total_steps == 41


def test_a_damaged_checkpoint_is_one_clear_error(tmp_path):
    """Defect 7: a missing key was a KeyError traceback; random bytes quoted torch's advice."""
    import os

    import torch

    config = tiny(tmp_path)
    training.train(config, stop_when=lambda step: step == 40)
    path = config.run_dir / checkpoint.CHECKPOINT
    saved = torch.load(path, weights_only=True)
    for key in ("config", "replay", "progress"):
        torch.save({k: v for k, v in saved.items() if k != key}, path)
        with pytest.raises(ConfigError, match=f"damaged \\(its '{key}' entry is missing"):
            checkpoint.resume_config(config.out_dir, {})
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError) as caught:
        checkpoint.resume_config(config.out_dir, {})
    assert "is not a readable checkpoint" in str(caught.value)
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_run_from_before_the_architecture_flags_resumes_with_them_at_their_old_values(
        tmp_path):
    old = dataclasses.asdict(Config(out_dir=str(tmp_path)))
    for name in ("head", "n_quantiles", "network", "augment", "reset_every_steps"):
        del old[name]
    (tmp_path / "config.json").write_text(json.dumps(old))  # stopped before its first checkpoint
    same = {"head": "scalar", "network": "nature", "augment": False, "reset_every_steps": 0}
    resumed = checkpoint.resume_config(str(tmp_path), same)
    assert (resumed.head, resumed.network, resumed.augment) == ("scalar", "nature", False)
    with pytest.raises(ConfigError, match="--head cannot change"):
        checkpoint.resume_config(str(tmp_path), {"head": "quantile"})


def test_a_checkpoint_from_before_envs_resumes_as_one_game(tmp_path, capsys):
    """Before --envs a checkpoint held one env snapshot (a dict) and one game_score, and its
    config no envs: such a checkpoint resumes exactly as today's does."""
    import shutil

    import torch

    config = dataclasses.replace(tiny(tmp_path), learning_starts_steps=20, batch_size=8)
    assert training.train(config, stop_when=lambda step: step == 40).steps == 40
    old = tmp_path / "old"
    shutil.copytree(config.run_dir, old)
    saved = torch.load(old / "checkpoint.pt", weights_only=True)
    assert len(saved["env"]) == 1 and len(saved["progress"]["game_scores"]) == 1
    saved["version"] = 1  # forms only version 1 holds (checkpoint.migrate_v1)
    saved["env"] = saved["env"][0]
    saved["progress"]["game_score"] = saved["progress"].pop("game_scores")[0]
    for name in ("envs", "env_processes"):
        del saved["config"][name]
    torch.save(saved, old / "checkpoint.pt")
    for run in (config.run_dir, old):
        assert training.train(checkpoint.resume_config(str(run), {})).steps == 60
        assert "resumed the episode in progress" in capsys.readouterr().out
    assert (old / "rewards.txt").read_text() == (config.run_dir / "rewards.txt").read_text()
    for name in ("model_001.pt", "model_002.pt"):
        a, b = (torch.load(run / name, weights_only=True) for run in (config.run_dir, old))
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_checkpoint_of_a_run_from_before_overlap_was_removed_resumes_in_turn(
        overlap, tmp_path, capsys):
    """--overlap was removed (docs/throughput.md). A run that had the setting (in its config,
    with an "actor" network beside the online one in its agent state, and with --overlap
    priorities left pending by the stop) resumes acting and learning in turn: with
    --no-overlap exactly as today's run, with --overlap after one line on stderr saying so."""
    import shutil

    import torch

    config = dataclasses.replace(tiny(tmp_path), learning_starts_steps=20, batch_size=8,
                                 prioritized=True)
    assert training.train(config, stop_when=lambda step: step == 40).steps == 40
    old = tmp_path / "old"
    shutil.copytree(config.run_dir, old)
    saved = torch.load(old / "checkpoint.pt", weights_only=True)
    saved["version"] = 1  # an "actor" network: only version 1 holds one (checkpoint.migrate_v1)
    saved["config"]["overlap"] = overlap
    saved["agent"]["actor"] = saved["agent"]["online"]
    if overlap:
        saved["pending_priorities"] = {"ids": [10, 11], "priorities": [2.0, 0.5]}
    torch.save(saved, old / "checkpoint.pt")
    settings = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**settings, "overlap": overlap}))
    capsys.readouterr()
    resumed = checkpoint.resume_config(str(old), {})
    notes = capsys.readouterr().err
    if overlap:
        assert notes.count("\n") == 1 and "--overlap" in notes and str(old) in notes
    else:
        assert notes == ""
    assert resumed == dataclasses.replace(config, out_dir=str(old), resume=str(old))
    assert training.train(resumed).steps == 60
    assert "overlap" not in checkpoint.read_checkpoint(old)["config"]
    assert "actor" not in checkpoint.read_checkpoint(old)["agent"]
    if not overlap:
        assert training.train(checkpoint.resume_config(str(config.run_dir), {})).steps == 60
        assert (old / "rewards.txt").read_text() == (config.run_dir / "rewards.txt").read_text()
        for name in ("model_001.pt", "model_002.pt"):
            a, b = (torch.load(run / name, weights_only=True) for run in (config.run_dir, old))
            assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_with_overlap_stopped_before_its_first_checkpoint_resumes_in_turn(
        tmp_path, capsys):
    old = {**dataclasses.asdict(Config(out_dir=str(tmp_path))), "overlap": True}
    (tmp_path / "config.json").write_text(json.dumps(old))
    resumed = checkpoint.resume_config(str(tmp_path), {})
    assert resumed == Config(out_dir=str(tmp_path), resume=str(tmp_path))
    notes = capsys.readouterr().err
    assert notes.count("\n") == 1 and "--overlap" in notes
