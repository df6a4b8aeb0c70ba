"""The run folder's learning curve: rewards.txt (one line per evaluation) and rewards.png.

Kept apart from the evaluation games (evaluate.py) so that what writes the run folder
(checkpoint.py's tidy and record_evaluation) and what reads runs (summary.py) need no games.
matplotlib draws into files only (the Agg backend, chosen before pyplot is imported).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from atari_dqn.config import FRAME_SKIP  # noqa: E402
from atari_dqn.run.files import atomic_write, atomic_write_text, writing  # noqa: E402

REWARDS, CURVE = "rewards.txt", "rewards.png"


def rewards_line(index: int, step: int, score: float) -> str:
    """The established rewards.txt format: evaluation number, agent steps trained, mean score."""
    return f"{index:3d} {step:8d} {score:.1f}"


def parse_rewards(text: str) -> list[tuple[int, int, float]]:
    rows = []
    for line in text.splitlines():
        index, step, score = line.split()
        rows.append((int(index), int(step), float(score)))
    return rows


X_LABEL = f"agent steps (x{FRAME_SKIP} emulator frames)"


def plot_curve(rewards_txt: Path, png: Path, title: str, x_label: str = X_LABEL) -> None:
    """The learning curve of one run; x_label: what rewards.txt's step column counts."""
    plot_curves({title: rewards_txt}, png, title=title, x_label=x_label)


def plot_curves(runs: dict[str, Path], png: Path, title: str, x_label: str = X_LABEL) -> None:
    """Learning curves of several runs (label -> rewards.txt) in one figure."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, rewards_txt in runs.items():
        rows = parse_rewards(rewards_txt.read_text())
        ax.plot([r[1] for r in rows], [r[2] for r in rows], marker="o", label=label)
    ax.set_xlabel(x_label)
    ax.set_ylabel("mean evaluation score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write_rewards(run: Path, lines: list[str], x_label: str) -> None:
    """The run folder's rewards.txt and rewards.png from its rewards lines (Progress's
    rewards_lines; none: neither file); x_label: what the step column counts (Progress.unit)."""
    if not lines:
        for name in (REWARDS, CURVE):
            with writing(run / name):
                (run / name).unlink(missing_ok=True)
        return
    atomic_write_text(run / REWARDS, "\n".join(lines) + "\n")
    plot_curve(run / REWARDS, run / CURVE, title=run.name, x_label=x_label)
