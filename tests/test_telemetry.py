"""Progress lines and their steps/s."""

from __future__ import annotations

import re

from atari_dqn import telemetry
from atari_dqn.checkpoint import Progress
from atari_dqn.config import Config


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
