import json
import re

import numpy as np
import pytest
import torch

from atari_dqn import inspect_run
from atari_dqn.config import Config
from atari_dqn.learn.agent import network_of
from atari_dqn.learn.network import QNetwork
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory


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


@pytest.mark.parametrize("protocol", ["deepmind", "machado"])
def test_actions_plays_under_the_run_s_protocol(protocol, tmp_path, monkeypatch, capsys):
    made, real = [], inspect_run.EvalEnvs.__init__

    def recording(self, *args, protocol, **kwargs):
        made.append(protocol.name)
        real(self, *args, protocol=protocol, **kwargs)

    monkeypatch.setattr(inspect_run.EvalEnvs, "__init__", recording)
    config = Config(out_dir=str(tmp_path), eval_max_steps=20, protocol=protocol)
    (tmp_path / "config.json").write_text(config.to_json())
    torch.save(network_of(4, config).state_dict(), tmp_path / "model_001.pt")
    assert inspect_run.main(["actions", str(tmp_path), "--model", "1", "--games", "1"]) == 0
    assert made == [protocol]


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


def make_run(folder, config, network, rows=3):
    """A run folder as training leaves it: config.json, rewards.txt with `rows` evaluations,
    their model_NNN.pt and final_model.pt (the last one's weights, float16 as committed runs)."""
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(config.to_json())
    (folder / "rewards.txt").write_text(
        "".join(f"{i:3d} {i * 50_000:8d} 1.0\n" for i in range(1, rows + 1)))
    half = {k: v.half() if k != "quantile_fractions" else v
            for k, v in network.state_dict().items()}
    torch.save(half, folder / "final_model.pt")
    torch.save({k: v.float() for k, v in half.items()}, folder / f"model_{rows:03d}.pt")
    return folder


def test_actions_without_model_plays_the_final_model_on_the_last_evaluations_games(tmp_path,
                                                                                   capsys):
    config = Config(out_dir=str(tmp_path), eval_max_steps=20)
    run = make_run(tmp_path / "run", config, network_of(4, config))
    assert inspect_run.main(["actions", str(run)]) == 0
    final = capsys.readouterr().out.splitlines()
    assert final[0].startswith("run final_model.pt (evaluation 3), epsilon 0.05")
    (run / "final_model.pt").unlink()  # an unfinished run: its newest model_NNN.pt
    assert inspect_run.main(["actions", str(run)]) == 0
    newest = capsys.readouterr().out.splitlines()
    assert newest[0].startswith("run model_003.pt (evaluation 3)")
    assert newest[1:] == final[1:]  # evaluation 3's games, the same weights


def inspect_error(capsys, *expected):
    err = capsys.readouterr().err
    assert err.startswith("inspect_run: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("text, why", [("[1, 2]", "a JSON list"),
                                       ("{oops", "Expecting property name"),
                                       ('{"seed": -1}', "--seed must be in")])
def test_actions_with_an_unusable_config_json_is_one_error_naming_it(text, why, tmp_path,
                                                                     capsys):
    config = Config(out_dir=str(tmp_path))
    run = make_run(tmp_path / "run", config, network_of(4, config))
    (run / "config.json").write_text(text)
    assert inspect_run.main(["actions", str(run), "--model", "3"]) == 2
    inspect_error(capsys, f"{run / 'config.json'}: not a run's settings", why)


def test_actions_names_what_is_missing(tmp_path, capsys):
    config = Config(out_dir=str(tmp_path))
    run = make_run(tmp_path / "run", config, network_of(4, config))
    assert inspect_run.main(["actions", str(run), "--model", "7"]) == 2
    inspect_error(capsys, f"{run / 'model_007.pt'}: no such file; without --model, final_model.pt")
    (run / "rewards.txt").write_text("  1    50000 1.0\ngarbage\n")
    assert inspect_run.main(["actions", str(run)]) == 2  # which evaluation final_model.pt played
    inspect_error(capsys, f"{run / 'rewards.txt'}: line 2:")
    for name in ("final_model.pt", "model_003.pt"):
        (run / name).unlink()
    assert inspect_run.main(["actions", str(run)]) == 2
    inspect_error(capsys, "no final_model.pt or model_NNN.pt")


def test_every_default_is_in_the_help(capsys):
    for command, defaults in {"actions": ["--games", "(default: 2)", "default: final_model.pt"],
                              "weights": ["(default: 32)", "(default: [0.4, 0.7, 1.0])"]}.items():
        with pytest.raises(SystemExit):
            inspect_run.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for default in defaults:
            assert default in text, (command, default)


def snapshot(path, prioritized=True, transitions=300):
    rng = np.random.default_rng(0)
    kind = PrioritizedReplayMemory if prioritized else ReplayMemory
    memory = kind(500, frame_shape=(8, 8), **({"alpha": 0.5} if prioritized else {}))
    memory.start_episode(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    for _ in range(transitions):
        memory.append(0, 0.0, rng.integers(0, 256, (8, 8), dtype=np.uint8), False)
    memory.save(path)
    return path


def test_weights_of_a_run_folder_reads_its_latest_snapshot(tmp_path, capsys):
    snapshot(tmp_path / "replay-000099000.bin", transitions=100)
    snapshot(tmp_path / "replay-000100000.bin", transitions=200)  # the latest: a longer name
    assert inspect_run.main(["weights", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("replay-000100000.bin: 200 transitions")
    assert inspect_run.main(["weights", str(tmp_path / "empty")]) == 2
    inspect_error(capsys, "no such file or folder")
    (tmp_path / "empty").mkdir()
    assert inspect_run.main(["weights", str(tmp_path / "empty")]) == 2
    inspect_error(capsys, "no replay-*.bin snapshot in this folder")


def test_weights_of_a_uniform_or_unsampleable_snapshot_says_why(tmp_path, capsys):
    uniform = snapshot(tmp_path / "uniform.bin", prioritized=False)
    assert inspect_run.main(["weights", str(uniform)]) == 2
    inspect_error(capsys, f"{uniform}: a uniform replay memory: it has no priorities")
    empty = snapshot(tmp_path / "empty.bin", transitions=0)
    assert inspect_run.main(["weights", str(empty)]) == 2
    inspect_error(capsys, f"{empty}: 0 transitions, none of them sampleable yet")
