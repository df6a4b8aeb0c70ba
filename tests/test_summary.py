"""python -m atari_dqn.summary: all runs' curves in one PNG; a folder without rewards.txt is an error."""
from PIL import Image

from atari_dqn.summary import main


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
