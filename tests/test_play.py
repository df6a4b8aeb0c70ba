"""python -m atari_dqn.play: whole games with a saved network, through evaluate()."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from atari_dqn import play
from atari_dqn.config import Config
from atari_dqn.network import QNetwork

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--games", "2", "--max-steps", "30"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder with a tiny random quantile network, as a Breakout run writes it."""
    folder = tmp_path_factory.mktemp("runs") / "breakout"
    folder.mkdir()
    torch.manual_seed(0)
    network = QNetwork(4, dueling=True, n_quantiles=3)
    torch.save(network.state_dict(), folder / "final_model.pt")
    config = Config(out_dir=str(folder), head="quantile", n_quantiles=3, eval_max_steps=40)
    (folder / "config.json").write_text(config.to_json())
    return folder


def test_plays_the_games_and_prints_each_score_and_the_mean(run, capsys):
    assert play.main([str(run), *FAST, "--eps", "0.5", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["game 1", "game 2"]
    scores = [float(re.fullmatch(r"game \d: score (-?\d+\.\d)", line).group(1))
              for line in lines[:2]]
    assert lines[2] == f"mean score {sum(scores) / 2:.1f} over 2 games"
    assert len(lines) == 3


def test_the_same_seed_plays_the_same_games(run, capsys):
    outputs = []
    for _ in range(2):
        assert play.main([str(run / "final_model.pt"), *FAST, "--eps", "0.5", "--seed", "4"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


def test_the_run_config_caps_the_games(run, monkeypatch):
    seen = {}
    original = play.envs.make_eval_env

    def spy(game, *, max_steps, render=False):
        seen.update(game=game, max_steps=max_steps, render=render)
        return original(game, max_steps=max_steps, render=render)

    monkeypatch.setattr(play.envs, "make_eval_env", spy)
    assert play.main([str(run), "--games", "1", "--eps", "1"]) == 0
    assert seen == dict(game="Breakout", max_steps=40, render=False)


def test_gif_of_the_best_game(run, tmp_path, capsys):
    gif = tmp_path / "best.gif"
    assert play.main([str(run), *FAST, "--eps", "1", "--gif", str(gif)]) == 0
    image = Image.open(gif)
    assert image.format == "GIF" and image.n_frames > 1
    assert list(tmp_path.iterdir()) == [gif]  # the frames went to a temporary folder


def test_bad_input_is_one_line_and_status_2(run, tmp_path, capsys):
    foreign = tmp_path / "notes.pt"
    foreign.write_text("hello")
    pong = tmp_path / "pong"
    pong.mkdir()
    torch.save(QNetwork(6).state_dict(), pong / "model_001.pt")
    cases = [[str(tmp_path / "missing")], [str(foreign)], [str(tmp_path)],
             [str(pong), "--env", "Breakout"], [str(run), "--games", "0"],
             [str(run), "--eps", "2"], [str(run), "--gif", str(tmp_path / "no" / "x.gif")],
             [str(run), "--env", "NoSuchGame"]]
    for args in cases:
        assert play.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("play: error: ") and err.count("\n") == 1, (args, err)


def test_from_the_command_line(run, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "atari_dqn.play", str(run), *FAST],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "over 2 games" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "atari_dqn.play", str(tmp_path / "nope.pt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("play: error: ") and bad.stderr.count("\n") == 1
