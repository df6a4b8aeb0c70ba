"""python -m atari_dqn.summary: all runs' curves in one PNG; a folder without rewards.txt is an error."""
import json

from PIL import Image

from atari_dqn.config import PRESETS, Config
from atari_dqn.summary import arm_curve, arms_of, main


def test_summary_plots_every_run(tmp_path):
    for name, lines in {"uniform-seed0": "  1    50000 3.0\n  2   100000 9.5\n",
                        "per-seed0": "  1    50000 4.0\n  2   100000 12.0\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "rewards.txt").write_text(lines)
    out = tmp_path / "summary.png"
    assert main([str(tmp_path / "uniform-seed0"), str(tmp_path / "per-seed0"), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (600, 400)


def test_summary_rejects_a_folder_without_rewards(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "s.png")]) == 2
    assert "no rewards.txt" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def make_run(folder, lines, config=None):
    folder.mkdir()
    (folder / "rewards.txt").write_text(lines)
    if config is not None:
        (folder / "config.json").write_text(config.to_json())
    return folder


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
    assert arms_of([a, scalar, b, nature, old]) == {
        "defaults (2 seeds)": [a, b],
        "--no-double --head scalar --prioritized (1 seed)": [scalar],
        "--preset nature (1 seed)": [nature], "old (1 seed)": [old]}


def test_an_arm_curve_is_the_mean_and_range_at_the_steps_every_seed_reached(tmp_path):
    a = make_run(tmp_path / "a", "  1    50000 2.0\n  2   100000 10.0\n  3   150000 30.0\n")
    b = make_run(tmp_path / "b", "  1    50000 4.0\n  2   100000 6.0\n")
    steps, mean, low, high = arm_curve([a, b])
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

