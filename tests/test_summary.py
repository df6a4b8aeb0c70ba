"""python -m atari_dqn.summary: all runs' curves in one PNG; a folder without rewards.txt is an error."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atari_dqn import scores
from atari_dqn.config import PRESETS, Config
from atari_dqn.summary import (RunFileError, aggregate_point, arm_curve, arms_of,
                               interval_estimates, iteration_returns, main, online_updates,
                               read_episodes, read_run, read_suite, summarise_suite, x_axis)

COMMITTED_RUNS = Path(__file__).resolve().parent.parent / "rewards"


def test_summary_plots_every_run(tmp_path):
    for name, lines in {"uniform-seed0": "  1    50000 3.0\n  2   100000 9.5\n",
                        "per-seed0": "  1    50000 4.0\n  2   100000 12.0\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "rewards.txt").write_text(lines)
    out = tmp_path / "summary.png"
    assert main([str(tmp_path / "uniform-seed0"), str(tmp_path / "per-seed0"), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (700, 450)


def test_summary_rejects_a_folder_without_rewards(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "s.png")]) == 2
    assert "no rewards.txt" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def make_run(folder, lines, config=None):
    """The run folder, written; read_run(folder) reads it as summary does."""
    folder.mkdir(parents=True)
    (folder / "rewards.txt").write_text(lines)
    if config is not None:
        (folder / "config.json").write_text(config.to_json())
    return folder


def folders_of(arms):
    return {label: [run.folder for run in runs] for label, runs in arms.items()}


def test_runs_alike_but_for_the_seed_form_one_arm_labelled_by_its_flags(tmp_path):
    lines = "  1    50000 3.0\n"
    a = make_run(tmp_path / "a", lines, Config(seed=0, out_dir="x", threads=1))
    b = make_run(tmp_path / "b", lines, Config(seed=1, out_dir="y", threads=2))  # resume-only
    scalar = make_run(tmp_path / "s", lines, Config(seed=0, out_dir="z", head="scalar",
                                                    prioritized=True, double=False))
    nature = make_run(tmp_path / "n", lines,
                      Config(preset="nature", out_dir="n", **PRESETS["nature"]))
    old = make_run(tmp_path / "old", lines)  # no config.json: an arm of its own
    saved = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**saved, "overlap": False}))  # a retired setting
    assert folders_of(arms_of([read_run(f) for f in (a, scalar, b, nature, old)])) == {
        "defaults (2 seeds)": [a, b],
        "--head scalar --prioritized --no-double (1 seed)": [scalar],  # --help's order
        "--preset nature (1 seed)": [nature], "old (1 seed)": [old]}


def test_an_arm_curve_is_the_mean_and_range_at_the_steps_every_seed_reached(tmp_path):
    a = make_run(tmp_path / "a", "  1    50000 2.0\n  2   100000 10.0\n  3   150000 30.0\n")
    b = make_run(tmp_path / "b", "  1    50000 4.0\n  2   100000 6.0\n")
    steps, mean, low, high = arm_curve([read_run(a), read_run(b)])
    assert steps.tolist() == [50000, 100000]
    assert mean.tolist() == [3.0, 8.0] and low.tolist() == [2.0, 6.0]
    assert high.tolist() == [4.0, 10.0]


def test_summary_arms_writes_one_figure(tmp_path):
    runs = [make_run(tmp_path / f"s{seed}", f"  1    50000 {seed}.0\n  2   100000 {seed + 5}.0\n",
                     Config(seed=seed, out_dir="x")) for seed in range(3)]
    out = tmp_path / "summary.png"
    assert main([*map(str, runs), "--arms", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (700, 450)


def test_the_table_gives_each_runs_last_and_best_score_and_each_arms_mean(tmp_path, capsys):
    a = make_run(tmp_path / "a", "  1    50000 3.0\n  2   100000 9.0\n  3   150000 5.0\n",
                 Config(seed=0, out_dir="x"))
    b = make_run(tmp_path / "b", "  1    50000 2.0\n  2   100000 8.0\n",
                 Config(seed=1, out_dir="y"))
    c = make_run(tmp_path / "c", "", Config(seed=0, out_dir="z", augment=True))
    assert main([str(a), str(b), str(c), "--table", "--out", str(tmp_path / "s.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| a | defaults (2 seeds) | 5.0 (150000) | 9.0 (100000) |" in lines
    assert "| b | defaults (2 seeds) | 8.0 (100000) | 8.0 (100000) |" in lines
    assert "| c | --augment (1 seed) | - | - |" in lines
    assert "| defaults (2 seeds) | 100000 | 8.5 | 8.0-9.0 |" in lines  # the last step both reached
    arm_rows = lines[lines.index(""):]
    assert not any(line.startswith("| --augment") for line in arm_rows)  # no evaluation, no row
    assert not (tmp_path / "s.png").exists()  # a table instead of a figure



def offline_config(seed, loss):
    return Config(seed=seed, out_dir=f"o{seed}", offline="data.bin", loss=loss,
                  offline_sha256="ab" * 32, offline_transitions=1000, offline_bytes=7_000_000)


def test_online_updates_count_one_per_train_every_past_learning_starts():
    settings = {"train_every_steps": 4, "learning_starts_steps": 20_000}
    assert online_updates(settings, 500_000) == 120_000  # a default 500k run's updates
    assert online_updates(settings, 20_000) == 0 and online_updates(settings, 20_004) == 1
    assert online_updates(settings, 50) == 0


def test_offline_arms_are_drawn_against_an_online_run_in_gradient_updates(tmp_path):
    online = make_run(tmp_path / "online", "  1    50000 3.0\n  2   100000 9.0\n",
                      Config(seed=0, out_dir="x"))
    cql = [make_run(tmp_path / f"cql{seed}", f"  1    10000 {seed}.0\n  2    20000 {seed + 4}.0\n",
                    offline_config(seed, "cql")) for seed in (0, 1)]
    dqn = make_run(tmp_path / "dqn0", "  1    10000 1.0\n", offline_config(0, "dqn"))
    runs = {run.name: run for run in map(read_run, [online, *cql, dqn])}
    online_run, cql_runs = runs["online"], [runs["cql0"], runs["cql1"]]
    arms = arms_of(list(runs.values()))
    assert list(arms) == ["defaults (1 seed)", "offline --loss cql (2 seeds)",
                          "offline --loss dqn (1 seed)"]
    assert x_axis([online_run, *cql_runs]) == (True, "gradient updates (online runs: made by then)")
    assert x_axis(cql_runs) == (True, "gradient updates") and x_axis([online_run])[0] is False
    steps, mean, _, _ = arm_curve([online_run], in_updates=True)
    assert steps.tolist() == [7_500, 20_000] and mean.tolist() == [3.0, 9.0]  # (s - 20k) / 4
    steps, mean, low, high = arm_curve(cql_runs, in_updates=True)  # offline: updates already
    assert steps.tolist() == [10_000, 20_000] and mean.tolist() == [0.5, 4.5]
    out = tmp_path / "offline.png"
    assert main([*map(str, [online, *cql, dqn]), "--arms", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_an_online_run_without_settings_cannot_join_offline_runs(tmp_path, capsys):
    old = make_run(tmp_path / "old", "  1    50000 3.0\n")  # no config.json: no --train-every
    cql = make_run(tmp_path / "cql", "  1    10000 1.0\n", offline_config(0, "cql"))
    out = tmp_path / "s.png"
    assert main([str(old), str(cql), "--out", str(out)]) == 2
    assert "cannot be put in gradient updates" in capsys.readouterr().err
    assert not out.exists()


def one_error(capsys, *expected):
    """The one-line error summary printed (no traceback), and that it says each of expected."""
    err = capsys.readouterr().err
    assert err.startswith("summary: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("bad", [b"garbage\n", b"\n", b"\x00\xff\x89PNG\n", b"  2   100000 nan\n",
                                 b"  2   100000\n"])
@pytest.mark.parametrize("mode", [[], ["--arms"], ["--table"]])
def test_a_bad_line_in_rewards_txt_is_one_error_naming_the_file_and_line(bad, mode, tmp_path,
                                                                        capsys):
    run = make_run(tmp_path / "run", "")
    (run / "rewards.txt").write_bytes(b"  1    50000 3.0\n" + bad + b"  3   150000 9.0\n")
    out = tmp_path / "s.png"
    assert main([str(run), *mode, "--out", str(out)]) == 2
    one_error(capsys, f"{run / 'rewards.txt'}: line 2:")
    assert not out.exists()


@pytest.mark.parametrize("text, why", [("{not json", "Expecting property name"),
                                       ("[1, 2]", "a JSON list"),
                                       ('{"lr": -1}', "--lr must be positive"),
                                       ('{"no_such_setting": 1}', "unknown settings")])
@pytest.mark.parametrize("mode", [[], ["--arms"], ["--table"]])
def test_an_unusable_config_json_is_one_error_naming_it(text, why, mode, tmp_path, capsys):
    run = make_run(tmp_path / "run", "  1    50000 3.0\n")
    (run / "config.json").write_text(text)
    out = tmp_path / "s.png"
    assert main([str(run), *mode, "--out", str(out)]) == 2
    one_error(capsys, f"{run / 'config.json'}: not a run's settings", why)
    assert not out.exists()


def test_out_naming_a_folder_or_a_missing_folder_is_refused(tmp_path, capsys):
    run = make_run(tmp_path / "run", "  1    50000 3.0\n")
    assert main([str(run), "--out", str(tmp_path)]) == 2
    one_error(capsys, "is a folder")
    assert main([str(run), "--out", str(tmp_path / "nope" / "s.png")]) == 2
    one_error(capsys, "no folder")
    assert not (tmp_path / "nope").exists()


def test_an_existing_out_is_kept_unless_force_and_checked_before_the_runs(tmp_path, capsys):
    run = make_run(tmp_path / "run", "  1    50000 3.0\n")
    out = tmp_path / "summary.png"
    out.write_bytes(b"a committed figure")
    bad = make_run(tmp_path / "bad", "garbage\n")
    assert main([str(bad), "--out", str(out)]) == 2  # refused before any rewards.txt is read
    one_error(capsys, f"--out {out} already exists", "--force")
    assert main([str(run), "--arms", "--out", str(out)]) == 2
    assert out.read_bytes() == b"a committed figure"
    assert main([str(run), "--out", str(out), "--force"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"
    assert main([str(run), "--table", "--out", str(out)]) == 0  # a table writes no figure


def test_a_folder_of_runs_stands_for_the_runs_in_it_each_counted_once(tmp_path, capsys):
    online = make_run(tmp_path / "online", "  1    50000 3.0\n", Config(seed=0, out_dir="x"))
    cql0 = make_run(tmp_path / "offline" / "cql0", "  1    10000 1.0\n", offline_config(0, "cql"))
    make_run(tmp_path / "offline" / "cql1", "  1    10000 3.0\n", offline_config(1, "cql"))
    (tmp_path / "offline" / "summary.png").write_bytes(b"")  # not a run: left out
    (tmp_path / "offline" / "notes").mkdir()
    assert main([str(online), str(tmp_path / "offline"), str(cql0), "--table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines[2:lines.index("")]] == \
        ["| online", "| cql0", "| cql1"]
    assert "| offline --loss cql (2 seeds) | 10000 | 2.0 | 1.0-3.0 |" in lines
    assert main([str(tmp_path / "offline" / "notes"), "--table"]) == 2
    one_error(capsys, "no rewards.txt in")


def test_runs_that_share_a_name_are_labelled_by_their_path(tmp_path, capsys):
    a = make_run(tmp_path / "a" / "seed0", "  1    50000 3.0\n")
    b = make_run(tmp_path / "b" / "seed0", "  1    50000 5.0\n")
    assert main([str(a), str(b), "--table"]) == 0
    out = capsys.readouterr().out
    assert f"| {a} | seed0 [{a}] (1 seed) | 3.0 (50000) |" in out  # an arm of its own each
    assert f"| {b} | seed0 [{b}] (1 seed) | 5.0 (50000) |" in out
    cql = [make_run(tmp_path / f"data{i}" / "cql", "  1    10000 1.0\n",
                    dataclasses.replace(offline_config(0, "cql"), offline_sha256=f"{i}" * 64))
           for i in (1, 2)]  # two datasets: two arms whose flags are alike
    out = tmp_path / "s.png"
    assert main([*map(str, cql), "--arms", "--out", str(out)]) == 0
    assert list(arms_of(list(map(read_run, cql)))) == [
        f"offline --loss cql [{cql[0]}] (1 seed)", f"offline --loss cql [{cql[1]}] (1 seed)"]


@pytest.mark.parametrize("mode", [["--table"], ["--arms"], []])
def test_the_readme_commands_work_on_the_committed_runs(mode, tmp_path, capsys):
    """`python -m atari_dqn.summary rewards/*/ ...` as the README gives it, --out in tmp_path."""
    every = sorted(str(path) + "/" for path in COMMITTED_RUNS.iterdir() if path.is_dir())
    out = tmp_path / "summary.png"
    assert main([*every, *mode, "--out", str(out)]) == 0
    if mode == ["--table"]:
        text = capsys.readouterr().out
        assert "| qr-per-seed0 | --prioritized (3 seeds) | 43.9 (500000) |" in text
        assert "| defaults (3 seeds) | 500000 | 42.5 | 36.8-47.2 |" in text  # the README's
        cql = "offline --target-update 500 --eval-every 10000 --loss cql (2 seeds)"
        assert f"| cql-seed1 | {cql} | 34.5 (125000) |" in text  # rewards/offline/: its runs
        assert not out.exists()
    else:
        with Image.open(out) as image:
            assert image.format == "PNG"


# --- summary DIR --suite ---------------------------------------------------------------------

REPS = 200  # bootstrap resamples in these tests: intervals are checked for shape, not width


def test_the_aggregates_are_those_computed_by_hand():
    # (runs, games): 2 runs of 4 games
    matrix = np.array([[0.0, 0.4, 2.0, -0.5],
                       [0.2, 0.8, 1.0, 0.1]])
    # IQM: the 8 values sorted are -0.5 0.0 0.1 0.2 0.4 0.8 1.0 2.0; the middle 4 average 0.375.
    # Per-game means 0.1 0.6 1.5 -0.2: median (0.1 + 0.6) / 2 = 0.35, mean 0.5.
    # Optimality gap: 1 - mean(min(x, 1)) = 1 - (0 + .4 + 1 - .5 + .2 + .8 + 1 + .1) / 8 = 0.625.
    expected = [0.375, 0.35, 0.5, 0.625]
    assert aggregate_point(matrix) == pytest.approx(expected)
    points, lows, highs = interval_estimates(matrix, reps=REPS)
    assert points == pytest.approx(expected)
    assert all(lows <= points + 1e-12) and all(points <= highs + 1e-12) and all(lows < highs)
    again = interval_estimates(matrix, reps=REPS)  # seeded: the same intervals each time
    assert np.array_equal(again[1], lows) and np.array_equal(again[2], highs)


def episodes_text(rows):
    return "agent_step,game,score,steps\n" + "".join(f"{s},0,{x},{n}\n" for s, x, n in rows)


def test_training_returns_are_the_mean_score_of_the_games_ended_in_each_iteration(tmp_path):
    file = tmp_path / "episodes.csv"
    file.write_text(episodes_text([(100_000, 10.0, 900), (250_000, 20.0, 800),  # iteration 0
                                   (250_001, 30.0, 700), (400_000, 50.0, 600),  # iteration 1
                                   (600_000, 7.0, 500)]))  # iteration 2: not completed
    episodes = read_episodes(file)
    assert episodes == [(100_000, 10.0), (250_000, 20.0), (250_001, 30.0), (400_000, 50.0),
                        (600_000, 7.0)]
    assert iteration_returns(episodes, steps_reached=700_000) == {0: 15.0, 1: 40.0}
    assert iteration_returns(episodes, steps_reached=750_000) == {0: 15.0, 1: 40.0, 2: 7.0}
    assert iteration_returns(episodes, steps_reached=499_999) == {0: 15.0}
    file.write_text(episodes_text([(100, 1.0, 10)]) + "200,0,nan,10\n")
    with pytest.raises(RunFileError, match="episodes.csv: line 3:"):
        read_episodes(file)


def make_suite_run(suite, game, seed, rewards, episodes=None):
    """A run folder of a suite as atari_dqn.suite would make it, written by hand."""
    folder = make_run(suite / f"{game}-seed{seed}", rewards,
                      Config(env_id=game, seed=seed, out_dir="x", threads=1))
    if episodes is not None:
        (folder / "episodes.csv").write_text(episodes_text(episodes))
    return folder


def write_hand_suite(suite):
    """2 games x 2 seeds at 500,000 agent steps. Normalized: Breakout (1.7, 30.5), Pong
    (-20.7, 14.6): 16.1 and 30.5 are 0.5 and 1.0; -20.7 and 49.9 are 0.0 and 2.0."""
    make_suite_run(suite, "Breakout", 0, "  1   250000 3.0\n  2   500000 16.1\n",
                   [(200_000, 1.0, 9), (300_000, 10.0, 9), (500_000, 22.2, 9)])  # 16.1
    make_suite_run(suite, "Breakout", 1, "  1   250000 2.0\n  2   500000 30.5\n",
                   [(250_000, 1.0, 9), (499_000, 30.5, 9)])
    make_suite_run(suite, "Pong", 0, "  1   250000 -21.0\n  2   500000 -20.7\n",
                   [(100_000, -21.0, 9), (260_000, -20.7, 9)])
    make_suite_run(suite, "Pong", 1, "  1   250000 -21.0\n  2   500000 49.9\n",
                   [(100_000, -21.0, 9), (260_000, 40.0, 9), (270_000, 59.8, 9)])  # 49.9


def dopamine_csv(path, rows):
    """A made-up Dopamine table: rows of (game, network, agent, [iteration 0 and 1 returns of
    each run])."""
    lines = ["game,network,agent,run,iteration,return"]
    for game, network, agent, runs in rows:
        for iteration in (0, 1):
            for run, values in enumerate(runs):
                lines.append(f"{game},{network},{agent},{run},{iteration},{values[iteration]}")
    path.write_text("\n".join(lines) + "\n")
    return scores.dopamine_returns(path)


def test_the_suite_tables_and_dopamine_rows_match_a_hand_computation(tmp_path):
    write_hand_suite(tmp_path / "suite")
    table = dopamine_csv(tmp_path / "dopamine.csv", [
        ("Breakout", "nature", "DQN", [(1.7, 16.1), (1.7, 30.5)]),      # iteration 1: 0.5, 1.0
        ("Pong", "nature", "DQN", [(-20.7, -20.7), (-20.7, 49.9)]),     # iteration 1: 0.0, 2.0
        ("Breakout", "impala", "DQN", [(1.7, 1.7), (1.7, 1.7)]),        # no Pong: no row
    ])
    runs, notes = read_suite(tmp_path / "suite")
    assert notes == []
    summary = summarise_suite(runs, notes, table, reps=REPS)
    # Evaluations at 500000 are the scores above; training returns of iteration 1 are the same
    # numbers, by construction (the mean of the games ended in (250000, 500000]).
    assert summary.per_game == [
        "| Breakout | 2 | 500000 | 23.3 (16.1 to 30.5) | 0.750 (0.500 to 1.000) "
        "| 1 | 23.3 (16.1 to 30.5) | 0.750 (0.500 to 1.000) |",
        "| Pong | 2 | 500000 | 14.6 (-20.7 to 49.9) | 1.000 (0.000 to 2.000) "
        "| 1 | 14.6 (-20.7 to 49.9) | 1.000 (0.000 to 2.000) |"]
    # Normalized (runs, games) = [[0.5, 0.0], [1.0, 2.0]] for ours and for Dopamine's DQN:
    # IQM of 0 .5 1 2 = 0.75; game means .75 and 1: median = mean = 0.875;
    # optimality gap = 1 - (.5 + 0 + 1 + 1) / 4 = 0.375.
    cells = ["0.750 [", "0.875 [", "0.875 [", "0.375 ["]
    rows = summary.aggregates
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| ours (defaults)", "training return, iteration 1 (agent steps 250,000-500,000, "
                              "1M-2M frames)", "2 x 2"],
        ["| ours (defaults)", "final evaluation (agent step 500000)", "2 x 2"],
        ["| Dopamine DQN (Nature CNN)", "training return, iteration 1 (agent steps "
                                        "250,000-500,000, 1M-2M frames)", "2 x 2"]]
    for row in rows:
        assert [cell[:7] for cell in row.split(" | ")[3:]] == cells, row
    assert summary.curve_iterations == [0, 1]
    assert summary.dopamine_curves == {("nature", "DQN"): [pytest.approx(0.0), 0.75]}
    assert summary.ours_curve[1][0] == pytest.approx(0.75)
    assert any("--protocol deepmind" in note for note in summary.notes)


def test_summary_suite_prints_the_tables_and_draws_the_figure(tmp_path, capsys):
    write_hand_suite(tmp_path / "suite")
    out = tmp_path / "suite.png"
    assert main([str(tmp_path / "suite"), "--suite", "--reps", str(REPS), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| Pong | 2 | 500000 | 14.6 (-20.7 to 49.9) | 1.000 (0.000 to 2.000) |" in text
    assert "| Dopamine QR-DQN (Impala) | training return, iteration 1" in text  # the real table
    assert f"wrote {out}" in text
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (800, 500)
    assert main([str(tmp_path / "suite"), "--suite", "--out", str(out)]) == 2  # exists
    one_error(capsys, f"--out {out} already exists", "--force")
    assert main([str(tmp_path / "suite"), "--suite", "--table", "--reps", str(REPS)]) == 0
    assert "| ours (defaults) | final evaluation" in capsys.readouterr().out


def test_a_partial_suite_is_summarised_with_a_note_naming_what_is_missing(tmp_path):
    suite = tmp_path / "suite"
    write_hand_suite(suite)
    (suite / "suite.json").write_text(json.dumps({
        "version": 1, "games": ["Breakout", "Pong", "Qbert"], "seeds": 3, "steps": 500000,
        "protocol": "deepmind", "flags": [], "settings": {}}))
    runs, notes = read_suite(suite)
    assert len(runs) == 4 and len(notes) == 1
    assert "5 of its 9 runs" in notes[0]
    assert "Breakout seed 2, Pong seed 2, Qbert seed 0, Qbert seed 1, Qbert seed 2" in notes[0]


def test_runs_without_episodes_or_of_a_game_without_human_scores_say_so(tmp_path, capsys):
    suite = tmp_path / "suite"
    make_suite_run(suite, "Breakout", 0, "  1   250000 16.1\n")  # no episodes.csv
    make_suite_run(suite, "Pooyan", 0, "  1   250000 5.0\n", [(100, 5.0, 100)])
    assert main([str(suite), "--suite", "--reps", str(REPS), "--out",
                 str(tmp_path / "s.png")]) == 0
    text = capsys.readouterr().out
    assert "| Pooyan | 1 | 250000 | 5.0 (5.0 to 5.0) | - | - | - | - |" in text
    assert "Pooyan: not one of the 57 games" in text and "raw scores only" in text
    assert "no episodes.csv in Breakout-seed0" in text and "evaluation scores only" in text
    assert "| ours (defaults) | final evaluation (agent step 250000) | 1 x 1 | 0.500 [" in text
    assert "no figure" in text and not (tmp_path / "s.png").exists()


def test_a_folder_without_runs_or_with_two_suites_is_one_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--suite", "--out", str(tmp_path / "s.png")]) == 2
    one_error(capsys, "no rewards.txt in")
    suite = tmp_path / "suite"
    make_suite_run(suite, "Breakout", 0, "  1   250000 16.1\n")
    make_run(suite / "other", "  1   250000 16.1\n",
             Config(env_id="Breakout", seed=1, out_dir="x", lr=1e-3))
    assert main([str(suite), "--suite", "--out", str(tmp_path / "s.png")]) == 2
    one_error(capsys, "differ in settings", "--lr 0.001")
    assert main([str(suite), str(suite), "--suite"]) == 2
    one_error(capsys, "--suite takes one suite folder")
    assert not (tmp_path / "s.png").exists()


def test_our_row_is_labelled_by_the_suites_flags_not_by_its_first_game(tmp_path):
    suite = tmp_path / "suite"
    for seed in (0, 1):
        make_run(suite / f"Pong-seed{seed}", "  1   250000 -20.7\n",
                 Config(env_id="Pong", seed=seed, out_dir="x", prioritized=True))
    runs, notes = read_suite(suite)
    rows = summarise_suite(runs, notes, {}, reps=REPS).aggregates
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| ours (--prioritized)", "final evaluation (agent step 250000)", "2 x 1"]]
