"""Draw the learning curves of several runs in one figure:

    python -m atari_dqn.summary rewards/*/ --out rewards/summary.png          # one curve per run
    python -m atari_dqn.summary rewards/*/ --arms --out rewards/summary.png   # one per arm
    python -m atari_dqn.summary rewards/*/ --table    # last and best scores, arm means (Markdown)

Each argument is a run folder holding a rewards.txt; the folder's name labels its curve. With
--arms, runs whose config.json agree on every learning setting (all but the seed and what a
resume may change) form one arm, drawn as the mean over its seeds with the range (min to max)
shaded, at the evaluation steps all its runs reached; the arm is labelled by the flags that differ
from main.py's defaults. A run without config.json is an arm of its own, named after its folder.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from atari_dqn.checkpoint import UPDATE_UNIT
from atari_dqn.config import PRESETS, RESUME_MAY_CHANGE, Config, flag_of, saved_settings
from atari_dqn.evaluate import X_LABEL, parse_rewards, plot_curves, plt  # plt: Agg, files only
from atari_dqn.files import atomic_write

NOT_AN_ARM = {"seed", *RESUME_MAY_CHANGE}  # settings in which the runs of one arm may differ


def _flags(settings: dict) -> str:
    """The flags that set `settings` where they differ from the defaults of their --preset;
    'defaults' if none."""
    preset = PRESETS.get(settings.get("preset", ""), {})
    flags = []
    for f in dataclasses.fields(Config):
        if f.name in NOT_AN_ARM or f.name not in settings or not f.metadata["flag"]:
            continue
        value = settings[f.name]
        if value == preset.get(f.name, f.default):
            continue
        flag = flag_of(f.name)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags.append(f"{flag} {value}")
    return " ".join(flags) or "defaults"


def _saved(run: Path) -> dict | None:
    """The run's settings from its config.json (read by saved_settings), or None without one."""
    config = run / "config.json"
    return saved_settings(json.loads(config.read_text())) if config.is_file() else None


def arms_of(runs: list[Path]) -> dict[str, list[Path]]:
    """label -> the runs of that arm, in the order given. The label is the arm's flags and its
    number of seeds."""
    groups: dict[str, tuple[str, list[Path]]] = {}
    for run in runs:
        saved = _saved(run)
        if saved is not None:
            settings = {k: v for k, v in saved.items() if k not in NOT_AN_ARM}
            key, name = json.dumps(settings, sort_keys=True), _flags(settings)
        else:
            key, name = f"folder:{run.resolve()}", run.name
        groups.setdefault(key, (name, []))[1].append(run)
    return {f"{name} ({len(members)} seed{'s' if len(members) > 1 else ''})": members
            for name, members in groups.values()}


def arm_curve(runs: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) over the runs' scores at the evaluation steps all of them reached."""
    curves = [{step: score for _, step, score in parse_rewards((run / "rewards.txt").read_text())}
              for run in runs]
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    scores = np.array([[curve[step] for step in steps] for curve in curves]).reshape(len(runs), -1)
    return np.array(steps), scores.mean(axis=0), scores.min(axis=0), scores.max(axis=0)


def plot_arms(arms: dict[str, list[Path]], png: Path, title: str, x_label: str = X_LABEL
              ) -> None:
    """One line per arm (the mean over its runs) with its range shaded."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, runs in arms.items():
        steps, mean, low, high = arm_curve(runs)
        line, = ax.plot(steps, mean, marker="o", label=label)
        if len(runs) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(x_label)
    ax.set_ylabel("mean evaluation score (line: mean over seeds, band: range)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def table(arms: dict[str, list[Path]]) -> str:
    """Markdown: each run's last and best score, then each arm's mean and range over its runs at
    the last evaluation step all of them reached."""
    lines = ["| run | arm | last score (step) | best score (step) |", "|---|---|---|---|"]
    for label, runs in arms.items():
        for run in runs:
            rows = parse_rewards((run / "rewards.txt").read_text())
            if not rows:  # a run stopped before its first evaluation
                lines.append(f"| {run.name} | {label} | - | - |")
                continue
            _, last_step, last = rows[-1]
            _, best_step, best = max(rows, key=lambda row: (row[2], -row[1]))  # the first best
            lines.append(f"| {run.name} | {label} | {last:.1f} ({last_step}) "
                         f"| {best:.1f} ({best_step}) |")
    lines += ["", "| arm | step | mean | range |", "|---|---|---|---|"]
    for label, runs in arms.items():
        steps, mean, low, high = arm_curve(runs)
        if len(steps):
            lines.append(f"| {label} | {steps[-1]} | {mean[-1]:.1f} "
                         f"| {low[-1]:.1f}-{high[-1]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atari_dqn.summary", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with a rewards.txt)")
    parser.add_argument("--out", type=Path, default=Path("rewards/summary.png"), help="the PNG to write")
    parser.add_argument("--title", default="evaluation score (whole games, eps 0.05)")
    parser.add_argument("--arms", action="store_true",
                        help="one curve per arm (runs alike but for the seed): the mean over its "
                             "seeds, the range shaded")
    parser.add_argument("--table", action="store_true",
                        help="print a Markdown table instead of drawing: each run's last and best "
                             "score, and each arm's mean and range at the last step its runs "
                             "all reached")
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not (run / "rewards.txt").is_file()]
    if missing:
        print(f"{parser.prog}: error: no rewards.txt in {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.table:
        print(table(arms_of(args.runs)))
        return 0
    if args.arms:
        offline = all((_saved(run) or {}).get("offline") for run in args.runs)
        plot_arms(arms_of(args.runs), args.out, title=args.title,
                  x_label=UPDATE_UNIT if offline else X_LABEL)
    else:
        plot_curves({run.name: run / "rewards.txt" for run in args.runs}, args.out,
                    title=args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
