"""episodes.csv: the raw score of every training game, written as the game ends, as Dopamine
reports training returns (and Machado et al. 2018 report an agent: by the scores of its last
training games).

    agent_step,game,score,steps
    173,0,2.0,173
    301,1,0.0,150

agent_step: the run's agent steps when the game ended, counted as the loop counts them (a
one-process iteration that starts after agent step s plays row i as agent step s + i + 1; Ape-X:
in the order the learner stores its actors' steps); game: which game, the row of the --envs games
(Ape-X: actor * --envs + the actor's game, the game's replay stream); score: the raw game score,
all lives, one decimal as in rewards.txt; steps: the agent steps the game lasted, from its reset
to its end (under --protocol deepmind a game spans several learning episodes, one per life).

GameLog keeps each game's score and length so far in the run's Progress (game_scores,
game_steps), which every checkpoint saves, and appends the lines of the games that end in a step
with one os.write on a file opened O_APPEND: lines are whole unless a write fails, and a failed
write is a DiskError naming the file. Progress.episodes_bytes is the file's length after the last
write, so a checkpoint records it, and a run that takes its folder cuts the file back to it
(tidy_episodes, from checkpoint.tidy_run_dir): the lines written after the checkpoint, which a
resumed run plays and writes again, go, and a stopped and resumed run's file equals an
uninterrupted run's. A checkpoint from before episodes.csv records no length: the file then
starts afresh at the resume, and the games in play at that point, whose lengths are unknown, are
not written (their scores still reach the progress line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from atari_dqn.run.files import FILE_MODE, writing

if TYPE_CHECKING:
    from atari_dqn.run.progress import Progress

EPISODES = "episodes.csv"
HEADER = "agent_step,game,score,steps\n"
UNKNOWN_STEPS = -1  # game_steps of a game in play at a resume from a checkpoint without lengths


class GameLog:
    """Counts every training game's raw score and agent steps and writes a line to episodes.csv
    as each one ends; also the progress line's last game score (Progress.last_game_score).

        log = GameLog(run, progress, games)     # progress: a new run's, or a checkpoint's
        log.step(result.rewards, result.game_over, first_step)    # row i: agent step first + i
        ... or, game by game: log.add(game, reward, over, agent_step); then log.flush()
        log.close()
    """

    def __init__(self, run: Path, progress: Progress, games: int) -> None:
        if len(progress.game_scores) != games:
            raise ValueError(f"GameLog: {len(progress.game_scores)} scores for {games} games")
        if len(progress.game_steps) != games:  # a checkpoint from before episodes.csv
            progress.game_steps = [UNKNOWN_STEPS] * games
        self.path, self.progress = Path(run) / EPISODES, progress
        self.pending: list[str] = []  # lines of the games ended since the last flush()
        with writing(self.path):
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            size = os.fstat(self.fd).st_size
        progress.episodes_bytes = size  # what tidy_episodes left: the checkpoint's length
        if size == 0:
            self._write(HEADER.encode())

    def add(self, game: int, reward: float, over: bool, agent_step: int) -> None:
        """One agent step of `game`: its raw reward, whether the real game ended with it, and the
        run's agent steps counting it. The line of a game that ended waits for flush()."""
        p = self.progress
        p.game_scores[game] += float(reward)
        if p.game_steps[game] != UNKNOWN_STEPS:
            p.game_steps[game] += 1
        if over:
            if p.game_steps[game] != UNKNOWN_STEPS:
                self.pending.append(f"{agent_step},{game},{p.game_scores[game]:.1f},"
                                    f"{p.game_steps[game]}\n")
            p.last_game_score = p.game_scores[game]
            p.game_scores[game], p.game_steps[game] = 0.0, 0

    def step(self, rewards: Sequence[float], game_over: Sequence[bool], first_step: int) -> None:
        """One agent step of every game (row i is game i, agent step first_step + i), written."""
        for game, (reward, over) in enumerate(zip(rewards, game_over)):
            self.add(game, reward, bool(over), first_step + game)
        self.flush()

    def new_game(self, game: int) -> None:
        """`game` starts afresh without having ended (an Ape-X actor restarted): its unfinished
        game is not written."""
        self.progress.game_scores[game], self.progress.game_steps[game] = 0.0, 0

    def flush(self) -> None:
        """Append the pending lines, all in one write."""
        if self.pending:
            data, self.pending = "".join(self.pending).encode(), []
            self._write(data)

    def _write(self, data: bytes) -> None:
        with writing(self.path):
            written = os.write(self.fd, data)
            if written != len(data):  # a full disk can cut a write short without an error
                raise OSError(f"wrote {written} of {len(data)} bytes")
        self.progress.episodes_bytes += len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def tidy_episodes(run: Path, progress: Progress) -> None:
    """episodes.csv back to what progress accounts for: cut to progress.episodes_bytes (the lines
    written after the checkpoint go); removed where that is 0 (a run starting at step 0, an
    offline run, a checkpoint from before episodes.csv), so that the run starts it afresh."""
    path = Path(run) / EPISODES
    with writing(path):
        if progress.episodes_bytes == 0:
            path.unlink(missing_ok=True)
        elif path.is_file() and path.stat().st_size > progress.episodes_bytes:
            os.truncate(path, progress.episodes_bytes)
