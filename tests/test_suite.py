"""python -m atari_dqn.suite: a tiny suite run, interrupted, continued, and its refusals.

The end-to-end test runs real trainers (2 games x 2 seeds of 800 agent steps, two at a time):
about a minute on 2 cores. The refusals run in this process and start nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import main
from atari_dqn import suite
from atari_dqn.run.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STEPS = 800
EVAL_EVERY = 400
# Tiny runs: random play to the first checkpoint (step 400), then a few cheap updates.
TINY = ["--learning-starts", "500", "--memory-size", "800", "--batch-size", "8",
        "--train-every", "8", "--target-update", "100", "--eps-decay", "100",
        "--eval-every", str(EVAL_EVERY), "--eval-episodes", "1", "--eval-max-steps", "100",
        "--eval-eps", "0.3", "--head", "scalar", "--no-compile"]
GAMES = ("Breakout", "Pong")
RUNS = [f"{game}-seed{seed}" for seed in (0, 1) for game in GAMES]  # the order the suite runs them
WAIT_SECONDS = 300  # a bound on each wait, far above what it takes


def suite_argv(out: Path, *extra: str) -> list[str]:
    return ["--games", ",".join(GAMES), "--seeds", "2", "--steps", str(STEPS), "--out", str(out),
            *TINY, *extra]


def run_suite(cwd: Path, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atari_dqn.suite", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=WAIT_SECONDS)


def checkpointed(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/checkpoint.pt"))


def evaluation_lines() -> list[list[str]]:
    """rewards.txt's (index, step) of a run of STEPS, evaluated every EVAL_EVERY agent steps."""
    return [[str(i), str(i * EVAL_EVERY)] for i in range(1, STEPS // EVAL_EVERY + 1)]


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder: (size, mtime in ns), to show that nothing changed."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_interrupted_suite_continues_and_finishes_every_run_exactly_once(tmp_path):
    out = tmp_path / "suite"
    # From another working folder than the project's: the suite finds main.py itself.
    process = subprocess.Popen([sys.executable, "-m", "atari_dqn.suite",
                                *suite_argv(out, "--parallel", "2")],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        # Poll the file system until a run has written its first checkpoint (step 400 of 800),
        # then interrupt the suite as Ctrl-C would.
        for _ in range(WAIT_SECONDS * 10):
            if checkpointed(out):
                break
            try:
                process.wait(timeout=0.1)
                pytest.fail(f"the suite ended before any checkpoint:\n{process.stdout.read()}")
            except subprocess.TimeoutExpired:
                pass
        assert checkpointed(out), "no checkpoint was written"
        process.send_signal(signal.SIGINT)
        first, _ = process.communicate(timeout=WAIT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, first
    lines = first.splitlines()
    assert [line.split(":")[0] for line in lines if ": started" in line] == RUNS[:2], first
    stopped = [line.split(":")[0] for line in lines[:-1] if "stopped by SIGINT (exit" in line]
    assert set(stopped) <= set(RUNS[:2])
    assert stopped, first  # the run that had checkpointed at 400 cannot have reached 800
    assert "stopped by SIGINT" in lines[-1], first
    assert "to continue: run the same command again" in lines[-1], first
    assert not (out / RUNS[2]).exists() and not (out / RUNS[3]).exists()  # nothing new started
    # The run that had checkpointed stopped at its next step, with a checkpoint; the other may
    # have been stopped while it started (main.py then leaves config.json alone: resumed from 0).
    interrupted = next(name for name in stopped if (out / name / "checkpoint.pt").is_file())
    made = read_checkpoint(out / interrupted)["progress"]["step"]
    assert 0 < made < STEPS
    record = json.loads((out / "suite.json").read_text())
    assert (record["games"], record["seeds"], record["steps"]) == (list(GAMES), 2, STEPS)

    again = run_suite(tmp_path, suite_argv(out))
    assert again.returncode == 0, again.stdout + again.stderr
    text = again.stdout
    assert f"{interrupted}: started (resumed at agent step {made}" in text, text
    for name in RUNS[2:]:
        assert f"{name}: started (new run" in text, text
    assert text.count(": finished after") == len(RUNS) - first.count(": finished after"), text
    assert "4 of 4 runs finished" in text.splitlines()[-1], text
    for name in RUNS:
        lines = (out / name / "rewards.txt").read_text().splitlines()
        assert [line.split()[:2] for line in lines] == evaluation_lines(), name
        assert (out / name / "final_model.pt").is_file()
        assert read_checkpoint(out / name)["progress"]["step"] == STEPS
        assert (out / "logs" / f"{name}.log").is_file()

    # The interrupted run wrote exactly what the same run made straight through writes.
    direct = tmp_path / "direct"
    game, seed = interrupted.split("-seed")
    done = subprocess.run([sys.executable, "main.py", "--env", game, "--seed", seed,
                           "--steps", str(STEPS), *TINY, "--threads", "1", "--out", str(direct)],
                          cwd=ROOT, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / interrupted / "rewards.txt").read_text() == \
        (direct / "rewards.txt").read_text()

    # A second run of the same command finds every run finished: it starts and changes nothing.
    before = files_of(out)
    third = run_suite(tmp_path, suite_argv(out))
    assert third.returncode == 0, third.stdout + third.stderr
    assert "started" not in third.stdout and "nothing to do" in third.stdout, third.stdout
    assert files_of(out) == before


@pytest.fixture(autouse=True)
def no_runs_in_this_process(request, monkeypatch):
    """The in-process tests must start nothing: a refusal that failed would start real runs."""
    if "interrupted" not in request.node.name:
        def started(*args, **kwargs):
            raise AssertionError("runs were started for input that should have been refused")
        monkeypatch.setattr(suite, "run_children", started)


def refused(capsys, argv: list[str], *expected: str) -> str:
    """suite.main(argv) exits 2 with one line that says each of expected."""
    assert suite.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("suite: error: ") and err.count("\n") == 1, err
    assert "started" not in captured.out
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["--games", "Breakout,NoSuchGame"], "unknown Atari game 'NoSuchGame'"),
    (["--games", "Breakout,breakout"], "names Breakout twice"),
    (["--games", "dqn5", "--seed", "3"], "--seed is set by --seeds"),
    (["--games", "dqn5", "--env", "Pong"], "--env is set by --games"),
    (["--games", "dqn5", "--resume", "x"], "--resume is set by the suite"),
    (["--games", "dqn5", "--lr", "fast"], "main.py flags: argument --lr: invalid float value"),
    (["--games", "dqn5", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--games", "dqn5", "--memory-size", "0"], "--memory-size must be a positive integer"),
    (["--games", "dqn5", "--seeds", "0"], "--seeds must be a positive integer"),
])
def test_bad_input_is_one_line_and_creates_nothing(argv, expected, tmp_path, capsys):
    out = tmp_path / "suite"
    argv = [*TINY, *([] if "--seeds" in argv else ["--seeds", "2"]), "--out", str(out), *argv]
    refused(capsys, argv, expected)
    assert not out.exists()


def write_record(out: Path, argv: list[str]) -> None:
    """The suite.json the suite would write for argv (its checks and plan, no runs)."""
    prepared = suite.prepare(argv)
    out.mkdir()
    (out / suite.SUITE_FILE).write_text(json.dumps(prepared.record))


def test_a_folder_of_another_suite_or_of_something_else_is_refused_unchanged(tmp_path, capsys):
    out = tmp_path / "suite"
    write_record(out, suite_argv(out))
    before = files_of(out)
    refused(capsys, suite_argv(out, "--lr", "1e-3"), "records another suite",
            "--lr 0.0001 there, 0.001 here")
    refused(capsys, [*suite_argv(out), "--steps", str(STEPS - 100)],
            f"a suite of {STEPS} agent steps a run", "fewer")
    refused(capsys, suite_argv(out, "--preset", "nature"), "records another suite")
    if suite.has_setting("protocol"):  # main.py's --protocol (docs/protocols.md)
        refused(capsys, suite_argv(out, "--protocol", "machado"),
                "is a suite of --protocol deepmind, not machado")
    assert files_of(out) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused(capsys, suite_argv(other), f"--out {other} holds notes.txt but no suite.json")
    assert files_of(other) == {"notes.txt": files_of(other)["notes.txt"]}


def test_a_grown_or_longer_suite_is_planned_from_its_record(tmp_path):
    out = tmp_path / "suite"
    write_record(out, suite_argv(out))
    prepared = suite.prepare(["--games", "Breakout,Pong,Qbert", "--seeds", "3", "--out",
                              str(out), *TINY])  # --steps left out: the recorded one
    assert prepared.record["games"] == ["Breakout", "Pong", "Qbert"]
    assert (prepared.record["seeds"], prepared.record["steps"]) == (3, STEPS)
    assert [plan.name for plan in prepared.plans][:3] == ["Breakout-seed0", "Pong-seed0",
                                                          "Qbert-seed0"]
    assert {plan.action for plan in prepared.plans} == {"start"}
    assert all("--threads" in plan.argv and "--steps" in plan.argv for plan in prepared.plans)
    if suite.has_setting("protocol"):  # the recorded protocol, given to every run
        assert all(plan.argv[plan.argv.index("--protocol") + 1] == "deepmind"
                   for plan in prepared.plans)
    prepared.lock.close()
    longer = suite.prepare([*suite_argv(out), "--steps", str(2 * STEPS)])
    assert longer.record["steps"] == 2 * STEPS
    longer.lock.close()
    fewer = suite.prepare(["--games", "Pong", "--seeds", "1", "--out", str(out), *TINY])
    assert [plan.name for plan in fewer.plans] == ["Pong-seed0"]
    assert fewer.unnamed == ["Breakout-seed0", "Breakout-seed1", "Pong-seed1"]
    assert fewer.record["games"] == list(GAMES) and fewer.record["seeds"] == 2
    fewer.lock.close()


def test_the_default_parallel_is_the_least_of_cores_ram_and_runs(monkeypatch):
    from atari_dqn.run import machine

    config = main.config_from_flags(vars(main.build_parser().parse_args(
        [*TINY, "--threads", "1", "--out", "x"])))
    per_run = (config.memory_capacity_transitions * machine.MEMORY_BYTES_PER_TRANSITION
               + machine.learner_bytes(config) + machine.games_here(config) * machine.GAME_BYTES)
    monkeypatch.setattr(machine, "usable_cores", lambda: 8)
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: 3 * per_run + 1)
    assert suite.default_parallel(config, runs=10)[0] == 3  # RAM: 3 runs
    assert suite.default_parallel(config, runs=2)[0] == 2  # runs to do
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    assert suite.default_parallel(config, runs=10)[0] == 2  # cores
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: per_run // 2)
    assert suite.default_parallel(config, runs=10)[0] == 1  # never less than one
