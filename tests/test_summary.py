"""python -m atari_dqn.summary: all runs' curves in one PNG; a folder without rewards.txt is an error."""
import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from atari_dqn.config import PRESETS, Config
from atari_dqn.summary import arm_curve, arms_of, main, online_updates, read_run, x_axis

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
        "--no-double --head scalar --prioritized (1 seed)": [scalar],
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
    assert err.startswith("python -m atari_dqn.summary: error: ") and err.count("\n") == 1, err
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
