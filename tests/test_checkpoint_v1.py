"""A checkpoint of format version 1 (tests/data/checkpoint-v1, written by commit dcfbbb9) still
resumes, and exactly: the resumed run ends with the rewards.txt and episodes.csv that the same
settings write uninterrupted."""

from __future__ import annotations

import hashlib
import lzma
import shutil
from pathlib import Path

import torch

import main
from atari_dqn.run import checkpoint

V1 = Path(__file__).resolve().parent / "data" / "checkpoint-v1"


def v1_run(tmp_path: Path) -> Path:
    run = tmp_path / "v1"
    run.mkdir()
    for name in ("config.json", "rewards.txt", "episodes.csv"):
        shutil.copy(V1 / name, run / name)
    for name in ("checkpoint.pt", "replay-000000240.bin"):
        with lzma.open(V1 / f"{name}.xz") as packed, open(run / name, "wb") as out:
            shutil.copyfileobj(packed, out)
    return run


def weights_sha256(path: Path) -> str:
    """The digest expected-final-weights.sha256 holds: each tensor's name and bytes, in name order."""
    weights = torch.load(path, weights_only=True)
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_a_version_1_checkpoint_resumes_exactly(tmp_path):
    run = v1_run(tmp_path)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["version"] == 1
    assert checkpoint.read_checkpoint(run)["version"] == checkpoint.CHECKPOINT_VERSION  # migrated
    assert main.main(["--resume", str(run)]) == 0
    assert (run / "rewards.txt").read_bytes() == (V1 / "expected-rewards.txt").read_bytes()
    assert (run / "episodes.csv").read_bytes() == (V1 / "expected-episodes.csv").read_bytes()
    expected = (V1 / "expected-final-weights.sha256").read_text().strip()
    assert weights_sha256(run / "final_model.pt") == expected
    # written again in today's format
    assert torch.load(run / "checkpoint.pt", weights_only=True)["version"] == 2


def test_migrate_v1_rewrites_the_forms_of_older_releases():
    old = {"version": 1, "config": {}, "rng": {}, "replay": "",
           "progress": {"step": 5, "game_score": 2.0},
           "env": {"ale": "state"}, "agent": {"online": 1, "target": 2, "actor": 3}}
    new = checkpoint.migrate_v1(old)
    assert new["version"] == 2
    assert new["progress"] == {"step": 5, "game_scores": [2.0]}
    assert new["env"] == [{"ale": "state"}]
    assert new["agent"] == {"online": 1, "target": 2}
    assert old["progress"] == {"step": 5, "game_score": 2.0}  # the input is left as it was
    today = {**old, "progress": {"step": 5, "game_scores": [1.0, 2.0]}, "env": [{}, {}],
             "agent": {"online": 1}}
    assert checkpoint.migrate_v1(today) == {**today, "version": 2}
