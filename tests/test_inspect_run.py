import json
import re

import numpy as np
import pytest
import torch

from atari_dqn import inspect_run
from atari_dqn.agent import network_of
from atari_dqn.config import Config
from atari_dqn.network import QNetwork
from atari_dqn.replay import PrioritizedReplayMemory


@pytest.mark.parametrize("old", ["today", "overlap", "before --head"])
def test_actions_plays_the_evaluation_games_and_counts_every_action(old, tmp_path, capsys):
    config = Config(out_dir=str(tmp_path), eval_max_steps=40)
    saved = json.loads(config.to_json())
    network = network_of(4, config)  # the default: a quantile head
    if old == "overlap":  # a run from before --overlap was removed
        saved["overlap"] = True
    if old == "before --head":  # its config has no head: it had a scalar one
        for name in ("head", "n_quantiles", "network"):
            del saved[name]
        network = QNetwork(4, dueling=config.dueling)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    torch.save(network.state_dict(), tmp_path / "model_001.pt")
    assert inspect_run.main(["actions", str(tmp_path), "--model", "1", "--games", "2"]) == 0
    games = capsys.readouterr().out.splitlines()[1:]
    assert len(games) == 2
    for line in games:
        steps = int(re.search(r"(\d+) steps", line).group(1))
        counts = [int(c) for c in re.search(r"action counts \[(.*?)\]", line).group(1).split(",")]
        assert len(counts) == 4 and sum(counts) == steps
        assert steps <= 40  # the evaluation's cap on a game


def test_weights_reports_priorities_and_the_memory_weights(tmp_path, capsys):
    rng = np.random.default_rng(0)
    memory = PrioritizedReplayMemory(500, alpha=0.5, frame_shape=(8, 8))
    memory.start_episode(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    for _ in range(300):
        memory.append(0, 0.0, rng.integers(0, 256, (8, 8), dtype=np.uint8), False)
    batch = memory.sample(64, 0.4)
    memory.update_priorities(batch.ids, np.full(64, 0.01, np.float32))  # the rest keep p = 1
    memory.save(tmp_path / "replay.bin")
    assert inspect_run.main(["weights", str(tmp_path / "replay.bin"), "--beta", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "300 transitions, alpha 0.5" in out
    smallest = float(re.search(r"0%: ([\d.e-]+)", out).group(1))
    assert smallest == pytest.approx((0.01 + 1e-6) ** 0.5, rel=1e-3)  # p^alpha
    largest_weight = float(re.search(r"max ([\d.e-]+)", out).group(1))
    assert largest_weight <= 1.0


def test_a_missing_file_exits_2(tmp_path, capsys):
    assert inspect_run.main(["weights", str(tmp_path / "nope.bin")]) == 2
    assert "inspect_run: error" in capsys.readouterr().err
