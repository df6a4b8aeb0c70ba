"""python -m atari_dqn.play: whole games with a saved network, through evaluate()."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from atari_dqn import play
from atari_dqn.config import Config
from atari_dqn.learn.heads.quantile import QuantileNetwork
from atari_dqn.learn.network import QNetwork

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--games", "2", "--max-steps", "30"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder with a tiny random quantile network, as a Breakout run writes it."""
    folder = tmp_path_factory.mktemp("runs") / "breakout"
    folder.mkdir()
    torch.manual_seed(0)
    network = QuantileNetwork(4, dueling=True, n_quantiles=3)
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


def spy_on_games(monkeypatch) -> dict:
    """What the games play.py makes are made with (updated as each is made)."""
    seen = {}
    original = play.envs.make_eval_env

    def spy(game, *, max_steps, render=False, protocol):
        seen.update(game=game, max_steps=max_steps, render=render, protocol=protocol.name)
        return original(game, max_steps=max_steps, render=render, protocol=protocol)

    monkeypatch.setattr(play.envs, "make_eval_env", spy)
    return seen


def test_the_run_config_caps_the_games(run, monkeypatch):
    seen = spy_on_games(monkeypatch)
    assert play.main([str(run), "--games", "1", "--eps", "1"]) == 0
    assert seen == dict(game="Breakout", max_steps=40, render=False, protocol="deepmind")


def test_the_games_are_played_under_the_run_s_protocol_or_protocol(run, tmp_path, monkeypatch,
                                                                   capsys):
    seen = spy_on_games(monkeypatch)
    folder = tmp_path / "machado"
    folder.mkdir()
    (folder / "final_model.pt").write_bytes((run / "final_model.pt").read_bytes())
    settings = json.loads((run / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**settings, "protocol": "machado"}))
    assert play.main([str(folder), *FAST, "--eps", "1"]) == 0
    assert seen["protocol"] == "machado"
    assert play.main([str(folder), *FAST, "--eps", "1", "--protocol", "deepmind"]) == 0
    assert seen["protocol"] == "deepmind"
    del settings["protocol"]  # a run from before --protocol: deepmind
    (folder / "config.json").write_text(json.dumps(settings))
    assert play.main([str(folder), *FAST, "--eps", "1"]) == 0
    assert seen["protocol"] == "deepmind"
    (folder / "config.json").write_text(json.dumps({**settings, "protocol": "atari"}))
    assert play.main([str(folder), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"{folder / 'config.json'}: protocol must be one of deepmind, machado, "
                        f"got 'atari'\n") and err.count("\n") == 1


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


@pytest.fixture
def no_games(monkeypatch):
    """Fails the test if a game is made: a refusal comes before any minute of play."""
    def refuse(*args, **kwargs):
        raise AssertionError("a game was made before the input was refused")

    monkeypatch.setattr(play.envs, "EvalEnvs", refuse)


def assert_refused(args, capsys, message):
    assert play.main(args) == 2, args
    err = capsys.readouterr().err
    assert err.startswith("play: error: ") and err.count("\n") == 1, (args, err)
    assert message in err, (args, err)
    return err


def test_an_existing_gif_is_refused_without_force(run, tmp_path, capsys, no_games):
    model = run / "final_model.pt"
    before = model.read_bytes()
    assert_refused([str(run), "--gif", str(model)], capsys, "already exists; --force")
    assert model.read_bytes() == before  # the model it was to play, intact
    gif = tmp_path / "best.gif"
    gif.write_text("an older game")
    assert_refused([str(run), "--gif", str(gif)], capsys, "already exists; --force")
    assert gif.read_text() == "an older game"


def test_force_replaces_an_existing_gif(run, tmp_path, capsys):
    gif = tmp_path / "best.gif"
    gif.write_text("an older game")
    assert play.main([str(run), *FAST, "--eps", "1", "--gif", str(gif), "--force"]) == 0
    assert Image.open(gif).format == "GIF"
    assert list(tmp_path.iterdir()) == [gif]


def test_bad_flags_are_refused_before_the_first_game(run, tmp_path, capsys, no_games):
    (tmp_path / "a-file").write_text("")
    cuda = (f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda")
    cases = {("--seed", "-1"): "--seed must be in [0, 2**62]",
             ("--seed", str(2**62 + 1)): "--seed must be in [0, 2**62]",
             ("--max-steps", "536870912"): "--max-steps must be a positive integer of at most "
                                           "536870911",
             ("--max-steps", "-1"): "--max-steps must be",
             ("--device", cuda): f"--device {cuda}: ",
             ("--device", "meta"): "--device meta: must be cpu, cuda or cuda:N",
             ("--device", "abacus"): "--device abacus: not a device",
             ("--gif", str(tmp_path)): "is a folder",
             ("--gif", str(tmp_path / "a-file" / "x.gif")): "no folder",
             ("--gif", "/proc/best.gif"): "cannot write in /proc"}
    for flags, message in cases.items():
        assert_refused([str(run), *flags], capsys, message)
    assert_refused([str(run), "--gif", str(tmp_path), "--force"], capsys, "is a folder")


@pytest.mark.parametrize("settings", [dict(eval_max_steps="abc"), dict(eval_max_steps=10**12),
                                      dict(eval_max_steps=0), dict(eval_max_steps=True),
                                      dict(env_id=5), dict(env_id=""),
                                      dict(env_id="NoSuchGame")])
def test_bad_run_settings_are_refused_before_the_first_game(settings, run, tmp_path, capsys,
                                                            no_games):
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "final_model.pt").write_bytes((run / "final_model.pt").read_bytes())
    config = {**json.loads((run / "config.json").read_text()), **settings}
    (folder / "config.json").write_text(json.dumps(config))
    (name, value), = settings.items()
    err = assert_refused([str(folder)], capsys, f"{folder / 'config.json'}: {name} must be")
    assert err.endswith(f"got {value!r}\n")


class Pickled:
    """Not a tensor: torch.load(weights_only=True) refuses a file holding one."""


def test_a_file_of_other_objects_is_refused_without_torchs_advice(tmp_path, capsys):
    torch.save({"features.0.weight": Pickled()}, tmp_path / "object.pt")
    err = assert_refused([str(tmp_path / "object.pt")], capsys,
                         "not a model file, or a damaged one")
    assert "weights_only" not in err


def test_each_score_is_printed_as_its_game_ends(run, monkeypatch, capsys):
    """What stdout holds at the moment each game ends: that game's line, already flushed."""
    printed, real = [], play.evaluate

    def watched(*args, on_game_end, **kwargs):
        def hook(game, score):
            on_game_end(game, score)
            printed.append((game, score, capsys.readouterr().out))
        return real(*args, on_game_end=hook, **kwargs)

    monkeypatch.setattr(play, "evaluate", watched)
    assert play.main([str(run), *FAST, "--eps", "0.5"]) == 0
    assert sorted(game for game, _, _ in printed) == [0, 1]
    for game, score, out in printed:
        assert out == f"game {game + 1}: score {score:.1f}\n"
    mean = sum(score for _, score, _ in printed) / 2
    assert capsys.readouterr().out == f"mean score {mean:.1f} over 2 games\n"


def test_a_failed_gif_write_after_the_games_is_one_line(run, tmp_path, monkeypatch, capsys):
    import errno

    from atari_dqn.run.files import DiskError

    def full(self):
        raise DiskError(self.gif_path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(play.PngFrameWriter, "close", full)
    assert_refused([str(run), *FAST, "--gif", str(tmp_path / "best.gif")], capsys,
                   "No space left on device")
