"""End to end: main.py with tiny settings on the CPU (about a minute for the whole module).

The reference run is shared: it is the uninterrupted run that the interrupted-and-resumed runs
must reproduce exactly, and (with --render) the run whose frames and GIF are checked. Rendering
does not change what is learned or scored, which the comparisons also show.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import main
from atari_dqn.config import Config
from atari_dqn.learn.agent import network_of
from atari_dqn.learn.heads.quantile import QuantileNetwork
from atari_dqn.learn.network import QNetwork
from atari_dqn.modes.one_process import train
from atari_dqn.run import telemetry
from atari_dqn.run.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "300", "--learning-starts", "100", "--memory-size", "1000",
        "--batch-size", "8", "--target-update", "50", "--eps-decay", "100",
        "--eval-every", "150", "--eval-episodes", "2", "--eval-max-steps", "150",
        "--eval-eps", "0.3", "--seed", "3", "--threads", "1", "--no-compile"]
LINE = re.compile(r"^ {0,2}\d{1,3} {1,8}\d{1,8} -?\d+\.\d$")


def default_network() -> QNetwork:
    """The network of a run with the default settings (QR head, dueling) on a 4-action game."""
    return network_of(4, Config())


def tiny_config(out: Path, *extra: str) -> Config:
    return Config(**vars(main.build_parser().parse_args([*TINY, *extra, "--out", str(out)])))


def assert_same_episodes(run: Path, reference: Path) -> None:
    """episodes.csv (every finished training game) equals the reference's, byte for byte."""
    assert (run / "episodes.csv").read_bytes() == (reference / "episodes.csv").read_bytes()


def assert_same_models(run_a: Path, run_b: Path) -> None:
    for name in ("model_001.pt", "model_002.pt"):
        a = torch.load(run_a / name, weights_only=True)
        b = torch.load(run_b / name, weights_only=True)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "reference"
    assert main.main([*TINY, "--render", "--out", str(run)]) == 0
    return run


def test_training_writes_rewards_models_curve_and_checkpoint(reference):
    lines = (reference / "rewards.txt").read_text().splitlines()
    assert len(lines) == 2
    assert all(LINE.match(line) for line in lines), lines
    assert [line.split()[:2] for line in lines] == [["1", "150"], ["2", "300"]]
    for index in (1, 2):
        state = torch.load(reference / f"model_{index:03d}.pt", weights_only=True)
        default_network().load_state_dict(state)  # a plain state_dict of the default network
    # after the last evaluation, the same weights as final_model.pt, for play and policy.load
    final = torch.load(reference / "final_model.pt", weights_only=True)
    last = torch.load(reference / "model_002.pt", weights_only=True)
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert Image.open(reference / "rewards.png").format == "PNG"
    assert (reference / "checkpoint.pt").is_file()
    assert len(list(reference.glob("replay-*.bin"))) == 1
    assert not list(reference.glob(".*tmp*")), "temporary files left behind"


def test_episodes_csv_has_a_line_per_finished_training_game(reference):
    lines = (reference / "episodes.csv").read_text().splitlines()
    assert lines[0] == "agent_step,game,score,steps"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) >= 2  # the stop at 220 in the resume tests falls between two games' ends
    assert any(int(r[0]) < 220 for r in rows) and any(220 < int(r[0]) <= 300 for r in rows)
    # one game (--envs 1): each begins where the last ended, and lasts its steps
    ends = [int(r[0]) for r in rows]
    assert [int(r[3]) for r in rows] == [b - a for a, b in zip([0, *ends], ends)]
    assert all(r[1] == "0" for r in rows)
    progress = read_checkpoint(reference)["progress"]  # what the progress line showed last
    assert float(rows[-1][2]) == progress["last_game_score"]
    assert progress["episodes_bytes"] == (reference / "episodes.csv").stat().st_size


def test_render_writes_every_frame_and_a_gif_of_the_best_game(reference):
    for index in (1, 2):
        frames = sorted((reference / f"eval_{index:03d}").glob("*.png"))
        assert frames[0].name == "000000.png"
        assert [f.name for f in frames] == [f"{i:06d}.png" for i in range(len(frames))]
        # two games of at most 150 agent steps each, a frame after every step and each reset
        assert 2 < len(frames) <= 2 * 151
        assert Image.open(frames[0]).size == (160, 210)
        gif = Image.open(reference / f"eval_{index:03d}.gif")
        assert gif.format == "GIF" and gif.n_frames > 1


def test_prioritized_double_dueling_n_step_run_with_tensorboard(tmp_path):
    run = tmp_path / "per"
    args = [*TINY, "--prioritized", "--double", "--dueling", "--n-step", "3", "--tensorboard",
            "--out", str(run)]
    assert main.main(args) == 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    lines = (run / "rewards.txt").read_text().splitlines()
    assert len(lines) == 2 and all(LINE.match(line) for line in lines)
    state = torch.load(run / "model_002.pt", weights_only=True)
    default_network().load_state_dict(state)


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(reference, tmp_path, capsys):
    run = tmp_path / "interrupted"
    # stop at step 220: past an evaluation, in the middle of an episode
    result = train(tiny_config(run), stop_when=lambda step: step == 220)
    assert result.stopped_early and result.steps == 220
    assert len((run / "rewards.txt").read_text().splitlines()) == 1
    wall_at_stop = read_checkpoint(run)["progress"]["wall_seconds"]
    assert wall_at_stop > 0
    # a trainer killed after the checkpoint may have written games past it: the resume drops them
    with open(run / "episodes.csv", "a") as f:
        f.write("233,0,3.0,85\n")
    assert main.main(["--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "resumed the episode in progress" in out
    assert re.search(r"evaluation 2: agent step 300, mean score -?\d+\.\d over 2 games; "
                     r"\d+:\d\d:\d\d of wall clock so far", out)
    assert read_checkpoint(run)["progress"]["wall_seconds"] > wall_at_stop  # summed over resumes
    assert (run / "rewards.txt").read_text() == (reference / "rewards.txt").read_text()
    assert_same_episodes(run, reference)
    assert_same_models(run, reference)


def test_without_a_terminal_progress_is_printed_as_lines(tmp_path, monkeypatch, capsys):
    # capsys's stdout is not a terminal, so the bar is off and lines stand in for it
    monkeypatch.setattr(telemetry, "LOG_EVERY_STEPS", 50)
    monkeypatch.setattr(telemetry, "LINE_EVERY_STEPS", 100)
    assert main.main([*TINY, "--out", str(tmp_path / "run")]) == 0
    lines = re.findall(r"^agent step (\d+) of 300: \d+ steps/s, epsilon (\d\.\d{3}), "
                       r"last game score (-|-?\d+\.\d)$", capsys.readouterr().out, re.MULTILINE)
    assert [int(step) for step, _, _ in lines] == [100, 200, 300]
    assert [float(eps) for _, eps, _ in lines][-1] == pytest.approx(0.01)  # decayed over 100


def test_resume_from_a_checkpoint_taken_at_an_evaluation(reference, tmp_path):
    run = tmp_path / "at_eval"
    assert train(tiny_config(run), stop_when=lambda step: step == 150).steps == 150
    assert main.main(["--resume", str(run)]) == 0
    assert (run / "rewards.txt").read_text() == (reference / "rewards.txt").read_text()
    assert_same_episodes(run, reference)
    assert_same_models(run, reference)


def sigterm_at_the_first_evaluation(args: list[str], signum: int = signal.SIGTERM) -> str:
    """Run main.py with args, send SIGTERM (or signum) when evaluation 1 is printed; its whole
    output, after checking it stopped by the signal (exit 128 + signum) without a traceback."""
    child = subprocess.Popen([sys.executable, "main.py", *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = []
    for line in child.stdout:
        output.append(line)
        if line.startswith("evaluation 1"):
            child.send_signal(signum)
            break
    output += child.stdout.readlines()
    assert child.wait() == 128 + signum, "".join(output)
    assert "Traceback" not in "".join(output)
    return "".join(output)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_writes_a_checkpoint_that_resumes_exactly(reference, tmp_path, signum):
    run = tmp_path / "sigterm"
    # 100,000 steps: the signal, sent at the first evaluation (step 150), lands mid-run
    output = sigterm_at_the_first_evaluation([*TINY, "--steps", "100000", "--out", str(run)],
                                             signum)
    stops = [int(m.group(1)) for m in map(re.compile(r"^stopped at agent step (\d+);").match,
                                          output.splitlines()) if m]
    assert len(stops) == 1 and 150 <= stops[0] < 300, output
    assert read_checkpoint(run)["progress"]["step"] == stops[0]
    # the reference's length: epsilon and (uniform) replay do not depend on --steps
    assert main.main(["--resume", str(run), "--steps", "300"]) == 0
    assert (run / "rewards.txt").read_text() == (reference / "rewards.txt").read_text()
    assert_same_episodes(run, reference)
    assert_same_models(run, reference)


# --- bad flags: one line on stderr, status 2, nothing overwritten ------------------------------

@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "--steps must be a positive integer"),
    (["--eps-start", "1.5"], "--eps-start must be in [0, 1]"),
    (["--eval-eps", "-0.1"], "--eval-eps must be in [0, 1]"),
    (["--env", "NoSuchGame"], "unknown Atari game"),
])
def test_bad_values_exit_2_with_one_line(args, message, tmp_path, capsys):
    assert main.main([*args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("main.py: error: ")
    assert not (tmp_path / "run").exists()


def test_unwritable_output_folder_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main.main([*TINY, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the run folder" in err


def test_an_existing_run_is_never_overwritten(reference, capsys):
    before = {p: p.stat().st_mtime_ns for p in reference.rglob("*")}
    assert main.main([*TINY, "--out", str(reference)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in reference.rglob("*")} == before


def test_missing_or_incompatible_runs_cannot_be_resumed(reference, tmp_path, capsys):
    assert main.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no resumable run" in capsys.readouterr().err
    assert main.main(["--resume", str(reference), "--lr", "0.5"]) == 2
    assert "--lr cannot change when resuming" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main.main(["--resume", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable checkpoint" in err


@pytest.mark.parametrize("args", [
    ["--steps", "-5"],          # our check
    ["--no-such-flag"],         # argparse's
    ["--device", "tpu"],
    ["--steps", "many"],
])
def test_exit_status_2_without_traceback_from_the_command_line(args, tmp_path):
    done = subprocess.run([sys.executable, "main.py", *args, "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "error:" in done.stderr


def test_help_documents_every_flag_with_its_unit():
    done = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for flag in ("--steps", "--eval-every", "--target-update", "--eps-decay", "--learning-starts",
                 "--eval-max-steps"):
        assert flag in text
    assert "agent steps to train for (x4 emulator frames)" in text
    assert "1 agent step = 4 emulator frames" in text


def stopped_at_222_and_resumed(tmp_path: Path, flags: list[str]) -> Path:
    """A TINY run with flags stopped at agent step 222 (two steps after a learning step) and
    resumed; checked equal to the same run made without a stop, whose folder is returned."""
    straight = tmp_path / "straight"
    assert main.main([*TINY, *flags, "--out", str(straight)]) == 0
    run = tmp_path / "stopped"
    assert train(tiny_config(run, *flags), stop_when=lambda step: step == 222).steps == 222
    assert main.main(["--resume", str(run)]) == 0
    assert (run / "rewards.txt").read_text() == (straight / "rewards.txt").read_text()
    assert_same_models(run, straight)
    return run


def test_prioritized_run_stopped_between_learning_steps_resumes_exactly(tmp_path):
    stopped_at_222_and_resumed(tmp_path, ["--prioritized"])


def test_quantile_augmented_prioritized_run_stopped_and_resumed_equals_the_straight_one(tmp_path):
    run = stopped_at_222_and_resumed(tmp_path, ["--head", "quantile", "--quantiles", "8",
                                                "--augment", "--prioritized", "--n-step", "3",
                                                "--no-compile"])
    state = torch.load(run / "model_002.pt", weights_only=True)
    QuantileNetwork(4, dueling=True, n_quantiles=8).load_state_dict(state)


def test_run_with_resets_stopped_and_resumed_equals_the_straight_one(tmp_path, monkeypatch):
    from atari_dqn.learn.agent import Agent

    resets = []
    original = Agent.reset
    monkeypatch.setattr(Agent, "reset", lambda self, step: (resets.append(step),
                                                            original(self, step))[1])
    # (the reset is the same for either encoder; the Impala network's is tested in test_agent)
    flags = ["--reset-every", "150", "--no-compile"]
    straight = tmp_path / "straight"
    assert main.main([*TINY, *flags, "--out", str(straight)]) == 0
    assert resets == [150]  # after the evaluation at 150; none after the last step
    run = tmp_path / "stopped"
    assert train(tiny_config(run, *flags), stop_when=lambda step: step == 150).steps == 150
    assert not (run / "final_model.pt").exists()  # only after the evaluation at --steps
    assert main.main(["--resume", str(run)]) == 0
    assert resets == [150, 150]  # the resumed run resets where the straight one did
    assert (run / "rewards.txt").read_text() == (straight / "rewards.txt").read_text()
    assert_same_models(run, straight)


# --- N games side by side (--envs) ----------------------------------------------------------

# up to 2 updates an iteration; uniform replay, as --steps (the SIGTERM test's) sets beta
ENVS3 = ["--envs", "3", "--train-every", "2"]


@pytest.fixture(scope="module")
def three_games(tmp_path_factory) -> tuple[Path, list[int], list[int]]:
    """A straight --envs 3 run, with the agent steps of its updates and target syncs."""
    from atari_dqn.learn.agent import Agent
    from atari_dqn.run.updates import Updates

    run = tmp_path_factory.mktemp("runs") / "envs3"
    updates, syncs = [], []
    with pytest.MonkeyPatch.context() as patch:
        start, sync = Updates.start, Agent.sync_target
        patch.setattr(Updates, "start", lambda self, step: (updates.append(step),
                                                            start(self, step))[1])
        patch.setattr(Agent, "sync_target", lambda self: (syncs.append(len(updates)),
                                                          sync(self))[1])
        assert main.main([*TINY, *ENVS3, "--out", str(run)]) == 0
    return run, updates, syncs


def test_three_games_keep_the_replay_ratio_and_the_target_period(three_games):
    run, updates, syncs = three_games
    # every --train-every 2 boundary past --learning-starts 100, in step order, as with one game
    assert updates == list(range(102, 301, 2))
    # --target-update 50: a sync (after the Agent's own at its start) at 50, 100, ..., 300,
    # each after the updates of the steps up to it
    assert syncs == [0] + [len([s for s in updates if s <= b]) for b in range(50, 301, 50)]
    lines = (run / "rewards.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["1", "150"], ["2", "300"]]
    assert len(read_checkpoint(run)["env"]) == 3  # one snapshot per game


def test_three_games_stopped_and_resumed_in_child_processes_equal_the_straight_run(
        three_games, tmp_path):
    straight = three_games[0]
    run = tmp_path / "stopped"
    # stopped at 219, mid-episode, between learning steps; resumed with the games stepped in
    # two child processes (--env-processes may change on resume; the games are the same)
    assert train(tiny_config(run, *ENVS3), stop_when=lambda step: step == 219).steps == 219
    assert main.main(["--resume", str(run), "--env-processes", "2"]) == 0
    assert (run / "rewards.txt").read_text() == (straight / "rewards.txt").read_text()
    assert_same_episodes(run, straight)
    assert_same_models(run, straight)


def test_sigterm_to_three_games_in_child_processes_resumes_exactly(three_games, tmp_path):
    straight = three_games[0]
    run = tmp_path / "sigterm"
    sigterm_at_the_first_evaluation([*TINY, *ENVS3, "--env-processes", "2", "--steps", "99999",
                                     "--out", str(run)])
    step = read_checkpoint(run)["progress"]["step"]
    assert 150 <= step < 300 and step % 3 == 0
    assert main.main(["--resume", str(run), "--steps", "300", "--env-processes", "0"]) == 0
    assert (run / "rewards.txt").read_text() == (straight / "rewards.txt").read_text()
    assert_same_episodes(run, straight)
    assert_same_models(run, straight)


def test_the_number_of_games_is_fixed_for_a_run_and_divides_its_steps(three_games, tmp_path,
                                                                      capsys):
    assert main.main(["--resume", str(three_games[0]), "--envs", "2", "--steps", "600"]) == 2
    assert "--envs cannot change when resuming" in capsys.readouterr().err
    assert main.main([*TINY, "--envs", "4", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be a multiple of --envs 4" in err
