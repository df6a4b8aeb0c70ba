"""Draw the learning curves of several runs in one figure:

    python -m atari_dqn.summary rewards/*/ --out rewards/summary.png          # one curve per run
    python -m atari_dqn.summary rewards/*/ --arms --out rewards/summary.png   # one per arm
    python -m atari_dqn.summary rewards/*/ --table    # last and best scores, arm means (Markdown)

Each argument is a run folder holding a rewards.txt; the folder's name labels its curve. With
--arms, runs whose config.json agree on every learning setting (all but the seed and what a
resume may change) form one arm, drawn as the mean over its seeds with the range (min to max)
shaded, at the evaluation steps all its runs reached; the arm is labelled by the flags that differ
from main.py's defaults (an offline arm: "offline --loss L" and its other flags). A run without
config.json is an arm of its own, named after its folder.

Offline runs count gradient updates where online runs count agent steps. Drawn together, the
x axis is gradient updates, and an online run's evaluation at agent step s is placed at the
updates it had made by then: one every --train-every agent steps past --learning-starts
(online_updates()). So an offline arm can be read against the online run that made its data.
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
from atari_dqn.evaluate import X_LABEL, parse_rewards, plt  # plt: Agg, files only
from atari_dqn.files import atomic_write

NOT_AN_ARM = {"seed", *RESUME_MAY_CHANGE}  # settings in which the runs of one arm may differ


def _flags(settings: dict, offline: bool = False) -> str:
    """The flags that set `settings` where they differ from the defaults of their --preset;
    'defaults' if none. An offline run's: 'offline --loss L' and the others."""
    preset = PRESETS.get(settings.get("preset", ""), {})
    flags = ["offline"] if offline else []
    for f in dataclasses.fields(Config):
        if f.name in NOT_AN_ARM or f.name not in settings or not f.metadata["flag"]:
            continue
        value = settings[f.name]
        if value == preset.get(f.name, f.default) and not (offline and f.name == "loss"):
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


def _is_offline(run: Path) -> bool:
    return bool((_saved(run) or {}).get("offline"))


def online_updates(settings: dict, step: int) -> int:
    """The gradient updates an online run with these settings has made by agent step `step`:
    one at every multiple of --train-every past --learning-starts (train.py's loop)."""
    every, starts = settings["train_every_steps"], settings["learning_starts_steps"]
    return max(0, step // every - starts // every)


def scores_of(run: Path, in_updates: bool = False) -> dict[int, float]:
    """The run's evaluations, step -> mean score; with in_updates an online run's steps are
    the updates it had made by then (an offline run's already are)."""
    rows = parse_rewards((run / "rewards.txt").read_text())
    saved = _saved(run)
    if in_updates and not (saved or {}).get("offline"):
        if saved is None:
            raise ValueError(f"{run}: without config.json its agent steps cannot be put in "
                             f"gradient updates beside offline runs")
        return {online_updates(saved, step): score for _, step, score in rows}
    return {step: score for _, step, score in rows}


def arms_of(runs: list[Path]) -> dict[str, list[Path]]:
    """label -> the runs of that arm, in the order given. The label is the arm's flags and its
    number of seeds."""
    groups: dict[str, tuple[str, list[Path]]] = {}
    for run in runs:
        saved = _saved(run)
        if saved is not None:
            settings = {k: v for k, v in saved.items() if k not in NOT_AN_ARM}
            key = json.dumps(settings, sort_keys=True)
            name = _flags(settings, offline=bool(saved.get("offline")))
        else:
            key, name = f"folder:{run.resolve()}", run.name
        groups.setdefault(key, (name, []))[1].append(run)
    return {f"{name} ({len(members)} seed{'s' if len(members) > 1 else ''})": members
            for name, members in groups.values()}


def arm_curve(runs: list[Path], in_updates: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) over the runs' scores at the evaluation steps all of them reached
    (in gradient updates with in_updates: scores_of())."""
    curves = [scores_of(run, in_updates) for run in runs]
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    scores = np.array([[curve[step] for step in steps] for curve in curves]).reshape(len(runs), -1)
    return np.array(steps), scores.mean(axis=0), scores.min(axis=0), scores.max(axis=0)


def x_axis(runs: list[Path]) -> tuple[bool, str]:
    """(in_updates, the x axis label) of a figure of these runs: agent steps if all are online,
    gradient updates if any is offline."""
    offline = [_is_offline(run) for run in runs]
    if not any(offline):
        return False, X_LABEL
    return True, UPDATE_UNIT if all(offline) else f"{UPDATE_UNIT} (online runs: made by then)"


def plot_arms(arms: dict[str, list[Path]], png: Path, title: str) -> None:
    """One line per arm (the mean over its runs) with its range shaded; an arm may be one run."""
    in_updates, x_label = x_axis([run for runs in arms.values() for run in runs])
    curves = {label: arm_curve(runs, in_updates) for label, runs in arms.items()}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, (steps, mean, low, high) in curves.items():
        line, = ax.plot(steps, mean, marker="o", label=label)
        if len(arms[label]) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(x_label)
    several = any(len(runs) > 1 for runs in arms.values())
    ax.set_ylabel("mean evaluation score" + (" (line: mean over seeds, band: range)"
                                             if several else ""))
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
    arms = arms_of(args.runs) if args.arms else {run.name: [run] for run in args.runs}
    try:
        plot_arms(arms, args.out, title=args.title)
    except ValueError as e:  # an online run without config.json beside offline runs
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
