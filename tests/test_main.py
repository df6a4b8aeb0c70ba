"""main.py: flags -> Config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import main
from atari_dqn.config import RESUME_MAY_CHANGE, ConfigError, flag_of

ROOT = Path(__file__).resolve().parents[1]


def flags(*args: str) -> dict:
    return vars(main.build_parser().parse_args(list(args)))


def test_the_default_run_folder_is_under_rewards_and_named_after_the_game():
    config = main.config_from_flags(flags("--env", "ALE/Pong-v5", "--seed", "3"))
    assert config.out_dir.startswith("rewards/Pong-seed3-")
    assert main.config_from_flags(flags("--env", "pong")).out_dir.startswith("rewards/Pong-seed0-")


def test_an_unknown_game_is_refused_where_flags_become_a_config():
    with pytest.raises(ConfigError, match="unknown Atari game"):
        main.config_from_flags(flags("--env", "NoSuchGame", "--out", "x"))


def test_integer_flags_accept_scientific_and_underscored_forms():
    assert main.config_from_flags(flags("--steps", "1e3", "--out", "x")).total_steps == 1000
    assert main.config_from_flags(flags("--steps", "2_000", "--out", "x")).total_steps == 2000


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P (no cwd on sys.path) is 3.11+")
def test_plain_pytest_imports_main_without_the_working_folder_on_sys_path():
    """`pytest` (unlike `python -m pytest`) does not put the working folder on sys.path;
    pyproject's pythonpath does, so `import main` works either way."""
    code = "import sys, pytest; sys.exit(pytest.main(['--collect-only', '-q', 'tests/test_main.py']))"
    done = subprocess.run([sys.executable, "-P", "-c", code], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --overlap was removed (docs/throughput.md): now a flag like any unknown one
@pytest.mark.parametrize("argv", [["--bogus"], ["--steps", "ten"], ["--device", "tpu"],
                                  ["--overlap"], ["--no-overlap"]])
def test_a_usage_error_is_one_line_and_status_2(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main.main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("main.py: error: ")


def test_the_resume_help_lists_exactly_the_settings_a_resume_may_change(monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one help line a flag: no flag name broken in two
    line = next(line for line in main.build_parser().format_help().splitlines()
                if line.lstrip().startswith("--resume RESUME"))
    listed = re.findall(r"--[a-z-]+", line.split("except", 1)[1])
    assert sorted(set(listed)) == sorted(flag_of(name) for name in RESUME_MAY_CHANGE
                                         if name != "resume")
    assert "--allow-large-memory" in listed


def no_games(*args, **kwargs):
    raise AssertionError("games were made for settings that should have been refused")


@pytest.mark.parametrize("argv, message", [
    (["--quantiles", "1e9"], "--quantiles must be at most 10000, got 1000000000"),
    (["--envs", "10000"], "--envs must be at most 1024"),
    (["--eval-episodes", "1e4"], "--eval-episodes must be at most 1024"),
    (["--env-processes", "{too_many}"], "--env-processes {too_many} is more than the"),
])
def test_sizes_this_machine_cannot_hold_are_refused_before_the_run_folder_is_made(
        argv, message, tmp_path, monkeypatch, capsys):
    from atari_dqn.envs import atari as envs
    from atari_dqn.run.machine import usable_cores

    monkeypatch.setattr(envs, "TrainEnvs", no_games)  # today's code would make them, for minutes
    monkeypatch.setattr(envs, "EvalEnvs", no_games)
    too_many = str(usable_cores() + 1)
    run = tmp_path / "run"
    argv = [arg.format(too_many=too_many) for arg in argv]
    assert main.main([*argv, "--threads", "1", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("main.py: error: ")
    assert message.format(too_many=too_many) in err
    assert not run.exists()
