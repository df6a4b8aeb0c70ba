"""--resume and --out never lose a run: a folder with results but no checkpoint, a damaged
checkpoint, another run's checkpoint, a checkpoint.pt that is a folder, and a folder holding only
a .lock are each one line and exit status 2 from main.py, with every file left byte for byte."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import main
from atari_dqn.config import Config, ConfigError
from atari_dqn.modes import one_process as training
from atari_dqn.run import checkpoint

ROOT = Path(__file__).resolve().parents[1]
# Every committed reference run: results (rewards.txt, models, curves) and no checkpoint.pt.
REFERENCE_RUNS = sorted(p.parent for p in (ROOT / "rewards").rglob("config.json"))


def contents(folder: Path) -> dict[str, bytes | None]:
    """Every file (hidden ones too) and folder under folder: its bytes, or None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def refused(argv: list[str], capsys) -> str:
    """main.py's one-line error for argv (status 2, no traceback)."""
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("main.py: error: "), err
    return err


def tiny(folder: Path, **extra) -> Config:
    return Config(total_steps=60, learning_starts_steps=60, memory_capacity_transitions=100,
                  eval_every_steps=30, eval_episodes=1, eval_max_steps=5, compile=False,
                  threads=1, out_dir=str(folder), **extra)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A tiny run stopped at agent step 40 of 60, after its first evaluation (at 30)."""
    config = tiny(tmp_path_factory.mktemp("stopped") / "run")
    assert training.train(config, stop_when=lambda step: step == 40).steps == 40
    return config.run_dir


@pytest.fixture
def run(stopped, tmp_path) -> Path:
    """A copy of the stopped run, for a test to change."""
    return Path(shutil.copytree(stopped, tmp_path / "run"))


# --- a folder with results but no checkpoint ------------------------------------------------

@pytest.mark.parametrize("reference", REFERENCE_RUNS,
                         ids=[str(p.relative_to(ROOT / "rewards")) for p in REFERENCE_RUNS])
def test_a_reference_run_without_its_checkpoint_is_refused_by_resume_and_out(
        reference, tmp_path, capsys):
    """Defect 1: --resume took it for a run stopped before its first checkpoint, started from
    step 0 and tidied its rewards.txt, final_model.pt and rewards.png away."""
    copy = Path(shutil.copytree(reference, tmp_path / "run"))
    before = contents(copy)
    offline = json.loads((copy / "config.json").read_text()).get("offline")
    more = ["--updates", "3"] if offline else ["--steps", "100"]
    err = refused(["--resume", str(copy), *more], capsys)
    assert "no checkpoint to resume from" in err and "rewards.txt" in err
    assert contents(copy) == before
    with pytest.raises(ConfigError, match="already exists") as caught:
        checkpoint.create_run_dir(tiny(copy))
    assert "--resume" not in str(caught.value)  # which could not continue it either
    assert contents(copy) == before


def test_an_offline_run_without_its_checkpoint_is_refused(tmp_path, capsys):
    """Defect 1's offline twin: --resume RUN --updates 3 was accepted and wiped the run."""
    from tests.test_offline import make_dataset

    data = make_dataset(tmp_path / "data.bin")
    run = tmp_path / "run"
    assert main.main(["--offline", str(data), "--updates", "10", "--eval-every", "10",
                      "--target-update", "5", "--batch-size", "8", "--eval-episodes", "1",
                      "--eval-max-steps", "30", "--threads", "1", "--no-compile",
                      "--out", str(run)]) == 0
    (run / checkpoint.CHECKPOINT).unlink()
    before = contents(run)
    err = refused(["--resume", str(run), "--updates", "3"], capsys)
    assert "no checkpoint to resume from" in err and "model_001.pt" in err
    assert contents(run) == before


def test_tidying_a_folder_without_a_checkpoint_keeps_its_results(tmp_path):
    """A trainer taking a folder with no checkpoint tidies it to step 0: it refuses (and changes
    nothing) if that would delete a result; what a trainer killed before its first checkpoint
    leaves starts from step 0, its tensorboard/ kept."""
    (tmp_path / "config.json").write_text(tiny(tmp_path).to_json())
    (tmp_path / "rewards.txt").write_text("  1       30 0.0\n")
    before = contents(tmp_path)
    with pytest.raises(ConfigError, match="holds rewards.txt but no checkpoint.pt"):
        checkpoint.tidy_run_dir(tmp_path, checkpoint.Progress(), replay_name=None)
    assert contents(tmp_path) == before

    (tmp_path / "rewards.txt").unlink()
    (tmp_path / ".lock").write_text("4242\n")
    (tmp_path / ".rewards.txt.tmp.x.txt").write_text("half")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1").write_bytes(b"points")
    assert checkpoint.resume_config(str(tmp_path), {}).resume == str(tmp_path)
    checkpoint.tidy_run_dir(tmp_path, checkpoint.Progress(), replay_name=None)
    assert sorted(contents(tmp_path)) == [".lock", "config.json", "tensorboard",
                                          "tensorboard/events.out.tfevents.1"]


# --- the checkpoint itself ------------------------------------------------------------------

def _set(path: str, value):
    def damage(saved: dict) -> None:
        *parents, last = path.split(".")
        entry = saved
        for name in parents:
            entry = entry[name]
        entry[last] = value
    return damage


DAMAGES = {
    "step not a number": (_set("progress.step", "x"), "progress.step is 'x'"),
    "negative step": (_set("progress.step", -5), "progress.step is -5"),
    "more evaluations than lines": (_set("progress.evaluations", 7), "1 rewards lines for 7"),
    "a line not text": (_set("progress.rewards_lines", [1]), "progress.rewards_lines"),
    "a score not a number": (_set("progress.game_scores", ["a"]), "progress.game_scores"),
    "two scores for one game": (_set("progress.game_scores", [0.0, 1.0]), "2 game scores"),
    "a game length not a count": (_set("progress.game_steps", [-2]), "progress.game_steps"),
    "two lengths for one game": (_set("progress.game_steps", [1, 2]), "2 game lengths"),
    "episodes.csv length": (_set("progress.episodes_bytes", -1), "progress.episodes_bytes"),
    "time not finite": (_set("progress.wall_seconds", float("nan")), "progress.wall_seconds"),
    "unknown progress": (_set("progress.bogus", 1), "unknown entry 'bogus'"),
    "torch rng": (_set("rng.torch", "x"), "rng.torch"),
    "a setting's type": (_set("config.seed", "x"), "setting 'seed' is 'x'"),
    "replay outside the run": (_set("replay", "../other/replay-000000040.bin"), "replay"),
    "pending priorities": (_set("pending_priorities", {"ids": [1], "priorities": []}),
                           "pending_priorities"),
}


@pytest.mark.parametrize("damage,message", DAMAGES.values(), ids=list(DAMAGES))
def test_a_damaged_checkpoint_entry_is_one_line_and_changes_nothing(
        damage, message, run, capsys):
    """Defect 13: progress.step 'x' was a ValueError traceback; every entry is checked for its
    type and range when the checkpoint is read, before anything is loaded or tidied."""
    saved = torch.load(run / checkpoint.CHECKPOINT, weights_only=True)
    damage(saved)
    torch.save(saved, run / checkpoint.CHECKPOINT)
    before = contents(run)
    err = refused(["--resume", str(run)], capsys)
    assert "checkpoint.pt is damaged" in err and message in err
    assert contents(run) == before


def test_another_runs_checkpoint_is_refused(run, capsys):
    """A checkpoint.pt copied from another run (here: another --lr) resumed silently with that
    run's settings against this run's config.json; the settings a resume may change may
    differ."""
    path = run / checkpoint.CHECKPOINT
    saved = torch.load(path, weights_only=True)
    saved["config"].update(total_steps=90, threads=2, device="cpu", tensorboard=True)
    torch.save(saved, path)
    assert checkpoint.resume_config(str(run), {}).total_steps == 90  # may change: accepted
    saved["config"]["lr"] = 3e-4
    torch.save(saved, path)
    before = contents(run)
    err = refused(["--resume", str(run)], capsys)
    assert "not the checkpoint of the run" in err and "--lr is 0.0003" in err
    assert contents(run) == before


def test_a_checkpoint_that_is_a_folder_is_refused(tmp_path, capsys):
    """has_checkpoint asked is_file(): a checkpoint.pt folder meant "no checkpoint", and the run
    started again from step 0."""
    run = tmp_path / "run"
    (run / checkpoint.CHECKPOINT).mkdir(parents=True)
    (run / "config.json").write_text(tiny(run).to_json())
    before = contents(run)
    err = refused(["--resume", str(run)], capsys)
    assert "checkpoint.pt is not a file" in err
    assert contents(run) == before


# --- a folder holding only a .lock ----------------------------------------------------------

def test_a_folder_holding_only_an_unlocked_lock_is_a_new_run_folder(tmp_path, capsys):
    """A trainer killed while creating its folder leaves only .lock: --out refused it as an
    existing run ("--resume it") and --resume refused it as no run; now --out makes the run
    there, and --resume says to."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("4242\n")
    before = contents(run)
    err = refused(["--resume", str(run)], capsys)
    assert "left by a trainer killed while creating it" in err and f"--out {run}" in err
    assert contents(run) == before

    holder = checkpoint.RunLock(run)  # a trainer creating the folder right now
    try:
        with pytest.raises(ConfigError, match="in use by another trainer"):
            checkpoint.create_run_dir(tiny(run))
        assert not (run / "config.json").exists()
    finally:
        holder.close()

    config = tiny(run)
    checkpoint.create_run_dir(config).close()
    assert Config.from_json((run / "config.json").read_text()) == config
    with pytest.raises(ConfigError, match=f"holds a run; continue it with --resume {run}"):
        checkpoint.create_run_dir(tiny(run))
    assert checkpoint.resume_config(str(run), {}) == dataclasses.replace(config, resume=str(run))
