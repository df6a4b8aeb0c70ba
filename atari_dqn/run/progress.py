"""The training loop's counters (Progress): what a checkpoint saves of where a run stands.

One dataclass of plain values, so that the modules that read or advance it (checkpoint,
episodes, telemetry, the loops) need not import one another. It is a part of the checkpoint
(checkpoint.Part): state() is the dict of its fields, restore() sets them all in place, so that
what holds the object (the loop, episodes.GameLog) sees the restored counters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from atari_dqn.run.curve import X_LABEL


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

    def state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def restore(self, state: dict[str, Any]) -> None:
        """Every field from state; a field state lacks (game_steps and episodes_bytes, from
        before episodes.csv) back to its default, as Progress(**state) would have it."""
        saved = Progress(**state)  # a TypeError for an entry Progress has no field for
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(saved, f.name))
