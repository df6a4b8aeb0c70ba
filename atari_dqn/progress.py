"""The training loop's counters (Progress): what a checkpoint saves of where a run stands.

One dataclass of plain values, so that the modules that read or advance it (checkpoint,
episodes, telemetry, the loops) need not import one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from atari_dqn.curve import X_LABEL


@dataclass
class Progress:
    """The loop's counters; saved in checkpoints."""
    step: int = 0                      # agent steps taken (gradient updates offline: unit)
    evaluations: int = 0
    rewards_lines: list[str] = field(default_factory=list)
    game_scores: list[float] = field(default_factory=list)  # raw score of each training game
    #                                  in progress (all its lives so far), one per --envs game
    game_steps: list[int] = field(default_factory=list)  # agent steps of each game in progress
    #                                  (UNKNOWN_STEPS: in play at a resume that did not know them)
    episodes_bytes: int = 0            # the length of episodes.csv (0: no file; episodes.py)
    last_game_score: float | None = None
    last_eval_score: float | None = None
    wall_seconds: float = 0.0          # wall-clock time spent in train(), summed over resumes
    unit: str = X_LABEL                # what step counts, as rewards.png's x axis names it
