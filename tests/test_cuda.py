"""The CUDA path: run where a GPU is present (`python -m pytest -m cuda`), skipped otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import main
from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent
from atari_dqn.modes.one_process import train
from atari_dqn.run.checkpoint import read_checkpoint
from tests.test_agent import memory_batch
from tests.test_train_e2e import TINY, default_network, tiny_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA GPU here (torch.cuda.is_available() is False)")]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def agent_on(device: torch.device, **overrides) -> Agent:
    torch.manual_seed(0)
    config = Config(out_dir="x", **{"compile": False, **overrides})
    return Agent(4, config, device)


@pytest.mark.parametrize("n_step", [1, 3])
def test_one_update_gives_the_same_loss_on_the_cpu_and_on_cuda(n_step):
    batch = memory_batch(n_step)
    on_cpu, on_cuda = agent_on(CPU), agent_on(CUDA)
    for a, b in zip(on_cpu.online.parameters(), on_cuda.online.parameters()):
        assert torch.equal(a, b.cpu())  # the same initial weights
    cpu_stats, cuda_stats = on_cpu.learn(batch), on_cuda.learn(batch)
    # cuDNN and oneDNN sum in different orders: float32 rounding apart, no more
    assert cuda_stats.loss == pytest.approx(cpu_stats.loss, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(cuda_stats.td_errors, cpu_stats.td_errors, rtol=1e-3, atol=1e-5)
    for a, b in zip(on_cpu.online.parameters(), on_cuda.online.parameters()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-5)


def test_a_tiny_cuda_run_end_to_end(tmp_path):
    run = tmp_path / "cuda"
    assert main.main([*TINY, "--device", "cuda", "--envs", "2", "--out", str(run)]) == 0
    assert len((run / "rewards.txt").read_text().splitlines()) == 2
    default_network().load_state_dict(torch.load(run / "final_model.pt", weights_only=True))
    assert read_checkpoint(run)["config"]["device"] == "cuda"


def test_a_checkpoint_made_on_the_cpu_resumes_on_cuda_and_back(tmp_path):
    run = tmp_path / "moved"
    assert train(tiny_config(run, "--device", "cpu"), stop_when=lambda s: s == 120).steps == 120
    assert main.main(["--resume", str(run), "--device", "cuda"]) == 0  # through step 300
    assert main.main(["--resume", str(run), "--device", "cpu", "--steps", "450"]) == 0
    lines = (run / "rewards.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["1", "150"], ["2", "300"], ["3", "450"]]
    assert read_checkpoint(run)["config"]["device"] == "cpu"
