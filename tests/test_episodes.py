"""episodes.csv: each finished training game's raw score, written as it ends and restored exactly
on resume (atari_dqn/run/episodes.py). The run-level exact-resume checks are in
test_train_e2e.py."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil

import numpy as np
import pytest
import torch

from atari_dqn.config import Config
from atari_dqn.modes import one_process as training
from atari_dqn.run import checkpoint, episodes
from atari_dqn.run.checkpoint import Progress
from atari_dqn.run.episodes import EPISODES, HEADER, GameLog, tidy_episodes
from atari_dqn.run.files import DiskError


def lines(run) -> list[str]:
    return (run / EPISODES).read_text().splitlines()


def test_a_line_per_finished_game_by_hand(tmp_path):
    progress = Progress(game_scores=[0.0, 0.0], game_steps=[0, 0])
    log = GameLog(tmp_path, progress, 2)
    log.step([1.0, 0.0], [False, False], first_step=1)    # agent steps 1 and 2
    log.step([4.0, 7.0], [False, True], first_step=3)     # game 1 ends at agent step 4
    log.step([0.0, 2.0], [True, False], first_step=5)     # game 0 ends at agent step 5
    assert lines(tmp_path) == [HEADER.strip(), "4,1,7.0,2", "5,0,5.0,3"]
    assert progress.last_game_score == 5.0
    assert progress.game_scores == [0.0, 2.0] and progress.game_steps == [0, 1]
    assert progress.episodes_bytes == (tmp_path / EPISODES).stat().st_size
    log.close()


def test_games_added_one_by_one_are_written_together_at_flush(tmp_path):
    progress = Progress(game_scores=[3.0], game_steps=[9])  # a game in play, as a checkpoint has it
    log = GameLog(tmp_path, progress, 1)
    log.add(0, 1.0, True, agent_step=10)
    log.add(0, 2.0, True, agent_step=11)
    assert lines(tmp_path) == [HEADER.strip()]
    log.flush()
    assert lines(tmp_path) == [HEADER.strip(), "10,0,4.0,10", "11,0,2.0,1"]
    log.close()


def test_a_game_started_afresh_without_ending_is_not_written(tmp_path):
    progress = Progress(game_scores=[0.0, 0.0], game_steps=[0, 0])
    log = GameLog(tmp_path, progress, 2)
    log.step([5.0, 1.0], [False, False], first_step=1)
    log.new_game(0)  # an Ape-X actor restarted: its game is gone
    log.step([1.0, 1.0], [True, True], first_step=3)
    assert lines(tmp_path) == [HEADER.strip(), "3,0,1.0,1", "4,1,2.0,2"]
    log.close()


def test_after_a_checkpoint_without_lengths_only_games_begun_since_are_written(tmp_path):
    # a checkpoint from before episodes.csv: scores, but no game_steps and no episodes_bytes
    progress = Progress(game_scores=[6.0])
    log = GameLog(tmp_path, progress, 1)
    assert progress.game_steps == [episodes.UNKNOWN_STEPS]
    log.step([1.0], [True], first_step=101)    # its length is unknown: no line, but its score
    assert progress.last_game_score == 7.0      # still reaches the progress line
    log.step([2.0], [False], first_step=102)
    log.step([0.0], [True], first_step=103)
    assert lines(tmp_path) == [HEADER.strip(), "103,0,2.0,2"]
    log.close()


def test_tidying_cuts_the_file_back_to_the_checkpoint_and_removes_it_at_zero(tmp_path):
    progress = Progress(game_scores=[0.0], game_steps=[0])
    log = GameLog(tmp_path, progress, 1)
    log.step([1.0], [True], first_step=1)
    saved = dataclasses.replace(progress)  # what a checkpoint here records
    log.step([2.0], [True], first_step=2)  # written after the checkpoint
    log.close()
    tidy_episodes(tmp_path, saved)
    assert lines(tmp_path) == [HEADER.strip(), "1,0,1.0,1"]
    tidy_episodes(tmp_path, Progress())  # a run from step 0, offline, or an older checkpoint
    assert not (tmp_path / EPISODES).exists()


@pytest.mark.parametrize("failure", ["error", "short"])
def test_a_failed_write_is_a_disk_error_naming_the_file(tmp_path, monkeypatch, failure):
    progress = Progress(game_scores=[0.0], game_steps=[0])
    log = GameLog(tmp_path, progress, 1)
    before = progress.episodes_bytes

    def failing_write(fd, data):
        if failure == "error":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data) - 1

    monkeypatch.setattr(episodes.os, "write", failing_write)
    with pytest.raises(DiskError, match=f"cannot write {tmp_path / EPISODES}"):
        log.step([1.0], [True], first_step=1)
    assert progress.episodes_bytes == before  # the checkpoint never counts a failed write
    log.close()


def test_the_lines_are_the_games_the_training_loop_played(tmp_path, monkeypatch):
    """Every line against an independent count of the StepResults the run's games returned
    (two games side by side): score, length, game and the agent step it ended at."""
    played = []
    real_step = training.envs.TrainEnvs.step
    monkeypatch.setattr(training.envs.TrainEnvs, "step",
                        lambda self, actions: played.append(real_step(self, actions))
                        or played[-1])
    config = Config(total_steps=1200, learning_starts_steps=1200, memory_capacity_transitions=1200,
                    eval_every_steps=1200, eval_episodes=1, eval_max_steps=5, envs=2,
                    compile=False, threads=1, out_dir=str(tmp_path / "run"))
    training.train(config)
    scores, steps, expected = [0.0, 0.0], [0, 0], []
    for iteration, result in enumerate(played):
        for game in range(2):
            scores[game] += result.rewards[game]
            steps[game] += 1
            if result.game_over[game]:
                expected.append(f"{2 * iteration + game + 1},{game},{scores[game]:.1f},"
                                f"{steps[game]}")
                scores[game], steps[game] = 0.0, 0
    assert len(expected) >= 4  # random play: Breakout games of a few hundred agent steps
    assert lines(config.run_dir) == [HEADER.strip(), *expected]
    saved = checkpoint.read_checkpoint(config.run_dir)["progress"]
    assert saved["last_game_score"] == float(expected[-1].split(",")[2])
    assert saved["game_scores"] == scores and saved["game_steps"] == steps
    assert saved["episodes_bytes"] == (config.run_dir / EPISODES).stat().st_size


def test_a_checkpoint_from_before_episodes_csv_starts_the_file_afresh(tmp_path, capsys):
    config = Config(total_steps=900, learning_starts_steps=900, memory_capacity_transitions=900,
                    eval_every_steps=300, eval_episodes=1, eval_max_steps=5, compile=False,
                    threads=1, out_dir=str(tmp_path / "run"))
    assert training.train(config, stop_when=lambda step: step == 300).steps == 300
    saved = torch.load(config.run_dir / "checkpoint.pt", weights_only=True)
    for name in ("game_steps", "episodes_bytes"):
        del saved["progress"][name]
    torch.save(saved, config.run_dir / "checkpoint.pt")
    (config.run_dir / EPISODES).unlink()  # the code before episodes.csv wrote none
    old = tmp_path / "old"
    shutil.copytree(config.run_dir, old)
    assert training.train(checkpoint.resume_config(str(old), {})).steps == 900
    assert "resumed the episode in progress" in capsys.readouterr().out
    straight = dataclasses.replace(config, out_dir=str(tmp_path / "straight"))
    training.train(straight)
    # the straight run's lines of the games begun after step 300: the game in play at the
    # resume (which ended first, with unknown length) is left out, the rest are the same
    got, every = lines(old)[1:], lines(straight.run_dir)[1:]
    begun_after = [line for line in every
                   if int(line.split(",")[0]) - int(line.split(",")[3]) >= 300]
    assert got == begun_after and len(every) > len(got) >= 1
    assert np.all(np.diff([int(line.split(",")[0]) for line in got]) > 0)
