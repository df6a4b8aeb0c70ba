"""Progress lines and their steps/s."""

from __future__ import annotations

import io
import re
import sys

import main
from atari_dqn.config import Config
from atari_dqn.run import telemetry
from atari_dqn.run.checkpoint import Progress


def test_steps_per_second_leave_out_evaluation_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(telemetry, "LOG_EVERY_STEPS", 100)
    monkeypatch.setattr(telemetry, "LINE_EVERY_STEPS", 100)
    now = [0.0]  # a fake clock: 50 agent steps per second of training
    config = Config(total_steps=300, out_dir=str(tmp_path / "run"))
    watched = telemetry.Telemetry(config, tmp_path, 0, clock=lambda: now[0])
    progress = Progress()
    for step in range(1, 201):
        now[0] += 0.02
        progress.step = step
        if step == 100:  # an evaluation and its checkpoint take 30 s
            now[0] += 30.0
            progress.evaluations, progress.last_eval_score = 1, 2.0
            watched.evaluated(progress, 10, seconds=30.0)
        watched.stepped(progress, 0.5)
    watched.close()
    out = capsys.readouterr().out  # not a terminal: lines, not the bar
    assert "evaluation 1: agent step 100, mean score 2.0 over 10 games" in out
    rates = re.findall(r"^agent step (\d+) of 300: (\d+) steps/s", out, re.MULTILINE)
    assert rates == [("100", "50"), ("200", "50")]


def test_tensorboard_logger_writes_events_and_the_null_logger_nothing(tmp_path):
    config = Config(total_steps=10, out_dir=str(tmp_path), tensorboard=True)
    watched = telemetry.Telemetry(config, tmp_path, 0)
    assert isinstance(watched.logger, telemetry.TensorBoardLogger)
    watched.logger.scalar("eval/score", 1.0, 1)
    watched.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    quiet = telemetry.Telemetry(Config(total_steps=10, out_dir=str(tmp_path / "q")), tmp_path, 0)
    assert isinstance(quiet.logger, telemetry.NullLogger)
    quiet.close()


def test_iterations_of_several_games_print_a_line_when_they_cross_its_multiple(tmp_path,
                                                                               monkeypatch, capsys):
    monkeypatch.setattr(telemetry, "LOG_EVERY_STEPS", 100)
    monkeypatch.setattr(telemetry, "LINE_EVERY_STEPS", 100)
    now = [0.0]
    config = Config(total_steps=300, eval_every_steps=150, envs=3, out_dir=str(tmp_path / "run"))
    watched = telemetry.Telemetry(config, tmp_path, 0, clock=lambda: now[0])
    progress = Progress()
    for step in range(3, 301, 3):  # 3 games: 3 agent steps an iteration, 0.03 s each
        now[0] += 0.03
        progress.step = step
        watched.stepped(progress, 0.5, 3)
    watched.close()
    lines = re.findall(r"^agent step (\d+) of 300: (\d+) steps/s", capsys.readouterr().out,
                       re.MULTILINE)
    assert lines == [("102", "100"), ("201", "100"), ("300", "100")]


class FlushRecorder(io.StringIO):
    """A stdout that remembers what had been flushed: what a log file would show by then."""

    flushed = ""

    def flush(self) -> None:
        self.flushed = self.getvalue()


def test_every_line_is_flushed_at_once(tmp_path, monkeypatch):
    # stdout into a file is block-buffered: an unflushed line shows up kilobytes later
    out = FlushRecorder()
    monkeypatch.setattr(sys, "stdout", out)
    telemetry.starting_games(1, 10)
    assert out.flushed == "starting 1 training game and 10 evaluation games (about 0.3 s a game)\n"
    watched = telemetry.Telemetry(Config(total_steps=10, out_dir=str(tmp_path)), tmp_path, 0)
    # --learning-starts 20000 is past --steps 10
    assert out.flushed.endswith("agent step 0 of 10: random play to the end "
                                "(--learning-starts is not below --steps)\n")
    watched.message("stopped")
    assert out.flushed.endswith("stopped\n")
    watched.close()


def run_lines(config: Config, tmp_path, capsys, *, offline: bool = False, every: int = 1):
    """The lines a Telemetry prints over a whole run of `every` steps an iteration."""
    now = [0.0]
    watched = telemetry.Telemetry(config, tmp_path, 0, clock=lambda: now[0], offline=offline)
    progress = Progress()
    total = config.total_updates if offline else config.total_steps
    for step in range(every, total + 1, every):
        now[0] += 0.01
        progress.step = step
        watched.stepped(progress, 0.5, every)
    watched.close()
    return capsys.readouterr().out.splitlines()


def test_the_first_line_says_what_comes_first_and_a_line_says_when_learning_starts(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(telemetry, "LOG_EVERY_STEPS", 100)
    monkeypatch.setattr(telemetry, "LINE_EVERY_STEPS", 200)
    config = Config(total_steps=400, learning_starts_steps=150, out_dir=str(tmp_path / "run"))
    lines = run_lines(config, tmp_path, capsys)
    compiling = "the first update waits for torch.compile (about 30 s, seconds once cached)"
    assert lines[0] == "agent step 0 of 400: random play until agent step 150, then learning"
    assert lines[1].startswith("agent step 150: random play done, learning starts; " + compiling)
    assert [line.split(":")[0] for line in lines[2:]] == ["agent step 200 of 400",
                                                         "agent step 400 of 400"]
    # Ape-X: the actors play with their own epsilons; several games an iteration
    apex = Config(total_steps=400, learning_starts_steps=150, actors=2, envs=4, compile=False,
                  eval_every_steps=200, out_dir=str(tmp_path / "apex"))
    lines = run_lines(apex, tmp_path, capsys, every=8)
    assert lines[:2] == ["agent step 0 of 400: the actors' play until agent step 150, then "
                         "learning", "agent step 144: the actors' play done, learning starts"]


def test_an_offline_run_says_it_learns_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(telemetry, "LINE_EVERY_STEPS", 1_000)
    config = Config(total_updates=2_000, out_dir=str(tmp_path / "run"), offline="data.bin")
    lines = run_lines(config, tmp_path, capsys, offline=True)
    assert lines[0] == ("update 0 of 2000: learning; the first update waits for torch.compile "
                        "(about 30 s, seconds once cached)")
    assert [line.split(":")[0] for line in lines[1:]] == ["update 1000 of 2000",
                                                         "update 2000 of 2000"]


def test_a_tiny_run_says_what_it_does_before_its_first_progress_line(tmp_path, capsys):
    main.main(["--steps", "200", "--learning-starts", "100", "--memory-size", "500",
               "--batch-size", "8", "--eval-every", "200", "--eval-episodes", "2",
               "--eval-max-steps", "50", "--seed", "3", "--threads", "1", "--no-compile",
               "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["starting 1 training game and 2 evaluation games (about 0.3 s a game)",
                         "agent step 0 of 200: random play until agent step 100, then learning",
                         "agent step 100: random play done, learning starts"]
    assert lines[3].startswith("evaluation 1: agent step 200")
