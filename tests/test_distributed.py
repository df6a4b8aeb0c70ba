"""Ape-X on Ray (atari_dqn/modes/apex.py): a local two-node cluster on this machine, the learner in
this process (the driver), the actors forced onto the second node by a custom resource.

Everything talks over loopback only: the nodes are at 127.0.0.2 and 127.0.0.3 (Ray rewrites
127.0.0.1 and localhost to the machine's network address, not the rest of 127.0.0.0/8), and the
driver joins them there (apex.driver_node_ip).

One cluster serves the module. Ray's temporary files, its sockets and its auth token live in a
temporary folder that is removed afterwards; the tests share the "ray" xdist group (pyproject:
--dist loadgroup), so two pytest workers never start clusters side by side.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import main
from atari_dqn.config import Config
from atari_dqn.learn.heads.quantile import quantile_losses, quantile_midpoints
from atari_dqn.learn.schedule import apex_epsilons, updates_made
from atari_dqn.run.checkpoint import read_checkpoint

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from atari_dqn.modes import apex  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")

ACTOR_NODE = "apex_actor_node"  # the custom resource only the second node has
HEAD_HOST, ACTOR_HOST = "127.0.0.2", "127.0.0.3"  # the two nodes' addresses, on loopback
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # per node: Ray's minimum is about 75 MB
TINY = dict(learning_starts_steps=60, memory_capacity_transitions=1_000, batch_size=8,
            target_update_steps=40, eval_every_steps=100, eval_episodes=1, eval_max_steps=20,
            seed=5, threads=1, compile=False)


@pytest.fixture(scope="module")
def cluster():
    # A short path: Ray's unix sockets live under it, and their paths are limited to 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    token = folder / "auth_token"
    token.write_text(uuid.uuid4().hex)
    env = {"RAY_TMPDIR": str(folder), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token)}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    reread_ray_settings()  # this process read RAY_AUTH_MODE when ray was imported
    temp = folder / "ray"  # where Ray looks for its files under RAY_TMPDIR
    temp.mkdir()
    node = dict(object_store_memory=OBJECT_STORE_BYTES, temp_dir=str(temp))
    nodes = None
    try:
        nodes = Cluster(initialize_head=True,
                        head_node_args=dict(num_cpus=1, node_ip_address=HEAD_HOST, **node))
        nodes.add_node(num_cpus=2, node_ip_address=ACTOR_HOST, resources={ACTOR_NODE: 2}, **node)
        yield nodes
    finally:
        if nodes is not None:
            nodes.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reread_ray_settings()
        shutil.rmtree(folder, ignore_errors=True)
    assert not folder.exists()


def reread_ray_settings() -> None:
    """Make this process see the RAY_* variables now set, as `ray.init` itself does when it
    turns token authentication on (ray._private.authentication)."""
    from ray._raylet import Config as RayConfig

    RayConfig.initialize("")


def config_for(cluster, out: Path, **settings) -> Config:
    return Config(**{**TINY, "actors": 2, "ray_address": cluster.address, "out_dir": str(out),
                     **settings})


ON_ACTOR_NODE = {"resources": {ACTOR_NODE: 1}}
ROOT = Path(main.__file__).resolve().parent


def ray_addresses() -> tuple[str, set[str]]:
    """The driver's node address and every live node's (NodeManagerAddress), as the run's Ray
    reports them."""
    nodes = [node for node in ray.nodes() if node["Alive"]]
    driver = ray.get_runtime_context().get_node_id()
    return (next(node["NodeManagerAddress"] for node in nodes if node["NodeID"] == driver),
            {node["NodeManagerAddress"] for node in nodes})


def test_two_nodes_train_resume_and_store_exactly_what_the_actors_played(cluster, tmp_path):
    played: dict[int, tuple] = {}  # id -> what the actor acted on and got
    memories, addresses = [], []
    games, finished = {}, ["agent_step,game,score,steps"]  # stream -> [score, steps]; its lines

    def record(memory, ids, chunk):
        memories[:1] = [memory]
        addresses[:1] = addresses or [ray_addresses()]
        for (t, e), transition in np.ndenumerate(ids):
            played[transition] = (chunk.states[t, e], chunk.actions[t, e],
                                  np.sign(chunk.rewards[t, e]), chunk.terminated[t, e],
                                  chunk.actor * 1 + e)
            # episodes.csv's line of a game that ended: its stream, and the agent step of the
            # transition (ids count agent steps from 0 in a fresh run)
            game = games.setdefault(chunk.actor * 1 + e, [0.0, 0])
            game[0] += chunk.rewards[t, e]
            game[1] += 1
            if chunk.game_over[t, e]:
                finished.append(f"{transition + 1},{chunk.actor * 1 + e},{game[0]:.1f},{game[1]}")
                game[:] = [0.0, 0]

    run = tmp_path / "run"
    config = config_for(cluster, run, total_steps=200, n_step=1, prioritized=True)
    result = apex.train_distributed(config, actor_options=ON_ACTOR_NODE, on_chunk=record,
                                    keep_states=True)
    assert result.steps == 200 and not result.stopped_early
    # the driver joined the cluster on loopback, where its nodes are
    assert addresses == [(HEAD_HOST, {HEAD_HOST, ACTOR_HOST})]
    lines = (run / "rewards.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["1", "100"], ["2", "200"]]
    for name in ("rewards.png", "model_002.pt", "final_model.pt", "replay-000000200.bin"):
        assert (run / name).is_file(), name
    checkpoint = read_checkpoint(run)
    assert checkpoint["progress"]["step"] == 200 and checkpoint["env"] == []
    assert (run / "episodes.csv").read_text().splitlines() == finished  # the actors' games
    # the one-process replay ratio at the checkpoint: an update at each multiple of 4 in
    # (60, 200], 35 of them (Adam counts its steps)
    adam = checkpoint["agent"]["optimizer"]["state"]
    assert {int(state["step"]) for state in adam.values()} == {35}
    assert updates_made(200, train_every_steps=config.train_every_steps,
                        learning_starts_steps=config.learning_starts_steps) == 35

    # Every transition the learner's memory returns is one an actor played.
    memory = memories[0]
    assert sorted(played) == list(range(200)) and memory.streams == 2
    memory.check_invariants()
    batch = memory.sample(256, 1.0)
    assert len(set(batch.ids.tolist())) > 50
    for i, transition in enumerate(batch.ids.tolist()):
        state, action, reward, terminated, _ = played[transition]
        np.testing.assert_array_equal(batch.states[i], state)
        assert batch.actions[i] == action and batch.rewards[i] == reward
        assert batch.dones[i] == float(terminated)
    log = memory.export_log()
    assert log["streams"].tolist() == [played[i][4] for i in log["ids"].tolist()]
    # the actors' epsilons are Ape-X's over the 2 actor games
    assert apex_epsilons(2) == [0.4, 0.4 ** 8]

    # --resume on the command line (the actors land on whichever node has CPUs), in a process
    # of its own writing to a file: Ray forwards the actors' output (ALE's banner) there without
    # colour codes. Its environment lacks the two settings this process's import of
    # atari_dqn.modes.apex made: that process must make them itself.
    log = tmp_path / "resume.log"
    env = {name: value for name, value in os.environ.items()
           if name not in ("RAY_COLOR_PREFIX", "RAY_DEDUP_LOGS")}
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "main.py", "--resume", str(run), "--steps", "300",
                               "--ray-address", cluster.address], cwd=ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=600).returncode
    text = log.read_text()
    assert code == 0, text
    assert "the actors start fresh games" in text
    assert "(Actor pid=" in text and "\x1b" not in text, text
    lines = (run / "rewards.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines][-1] == ["3", "300"]
    assert read_checkpoint(run)["progress"]["step"] == 300


def test_a_killed_actor_is_restarted_and_the_run_finishes(cluster, tmp_path, capsys):
    killed = []

    def kill_actor_0_once(memory, ids, chunk):
        if not killed and chunk.actor == 0 and memory.appended >= 40:
            handle = ray.get_actor(f"{apex.ACTOR_NAME}-0")
            pid = ray.get(handle.pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    run = tmp_path / "run"
    config = config_for(cluster, run, total_steps=200)
    result = apex.train_distributed(config, actor_options=ON_ACTOR_NODE,
                                    on_chunk=kill_actor_0_once)
    assert killed and result.steps == 200
    assert len((run / "rewards.txt").read_text().splitlines()) == 2
    # one line for the one death, however many chunks failed with it (Ray adds a line of its own)
    died = [line for line in capsys.readouterr().out.splitlines() if line.startswith("actor ")]
    assert len(died) == 1 and died[0].startswith("actor 0 died"), died


def test_a_runs_own_ray_instance_is_on_loopback(cluster, tmp_path):
    """An empty --ray-address starts a Ray instance for the run (not the cluster the fixture
    runs: Ray would join it), on loopback: its node and so the driver and the actor are at
    LOCAL_RAY_HOST, not at the machine's network address. (cluster: for its temporary folder.)"""
    addresses = []

    def record(memory, ids, chunk):
        addresses[:1] = addresses or [ray_addresses()]

    config = Config(**{**TINY, "actors": 1, "ray_address": "", "out_dir": str(tmp_path / "run"),
                       "total_steps": 100})
    assert apex.train_distributed(config, on_chunk=record).steps == 100
    host = apex.LOCAL_RAY_HOST
    assert addresses == [(host, {host})] and ipaddress.ip_address(host).is_loopback


def test_a_stopped_run_drains_its_chunks_and_checkpoints_where_it_stopped(cluster, tmp_path):
    run = tmp_path / "run"
    config = config_for(cluster, run, total_steps=300)
    result = apex.train_distributed(config, actor_options=ON_ACTOR_NODE,
                                    stop_when=lambda step: step >= 130)
    assert result.stopped_early and 130 <= result.steps < 300
    checkpoint = read_checkpoint(run)
    assert checkpoint["progress"]["step"] == result.steps
    # the chunks asked before the stop are stored (an evaluation they reach is played) and
    # none after: at most one slack (2 actors x 50 steps) past the learner's last update
    assert checkpoint["progress"]["evaluations"] == result.steps // 100
    assert checkpoint["replay"] == f"replay-{result.steps:09d}.bin"
    assert (run / checkpoint["replay"]).is_file()


def test_a_stop_between_evaluations_is_checkpointed_with_no_batch_sampled_ahead(
        cluster, tmp_path, monkeypatch):
    """The last update before a stop samples the next update's batch ahead (no evaluation
    comes before it); iterate drops that batch before it returns, so the checkpoint registry,
    parts(), is a getter that finds nothing in flight."""
    run = tmp_path / "run"
    config = config_for(cluster, run, total_steps=1000, eval_every_steps=1000)
    parts, ahead_when_written = apex.ApeX.parts, []

    def parts_seeing_what_is_in_flight(source):
        ahead_when_written.append(source.updates.next is not None)
        return parts(source)

    monkeypatch.setattr(apex.ApeX, "parts", parts_seeing_what_is_in_flight)
    result = apex.train_distributed(config, actor_options=ON_ACTOR_NODE,
                                    stop_when=lambda step: step >= 130)
    assert result.stopped_early and 130 <= result.steps < 1000
    assert ahead_when_written == [False]  # the stop's checkpoint, the only one
    assert read_checkpoint(run)["progress"]["step"] == result.steps


def test_an_unreachable_address_or_too_few_cpus_exit_2_with_one_line(cluster, tmp_path,
                                                                     capsys):
    common = ["--steps", "100", "--eval-every", "100", "--threads", "1", "--no-compile"]
    with socket_closed() as port:
        assert main.main([*common, "--actors", "1", "--ray-address", f"127.0.0.1:{port}",
                          "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("main.py: error: --ray-address 127.0.0.1:") and "\n" not in err
    assert main.main([*common, "--actors", "40", "--ray-address", cluster.address,
                      "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("main.py: error: --actors 40: the Ray cluster has 3 CPU")
    assert "\n" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class socket_closed:
    """A local TCP port that nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc) -> None: ...


@pytest.mark.parametrize("args, message", [
    (["--ray-address", "auto"], "--ray-address needs --actors"),
    (["--actors", "-1"], "--actors must not be negative"),
])
def test_bad_distributed_flags_are_refused_before_the_run_folder(args, message, tmp_path,
                                                                  capsys):
    assert main.main([*args, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_actor_priorities_by_hand():
    # one game, 4 steps, n = 2, gamma 0.5; step 2 ends the episode (terminal)
    q_taken = np.array([[1.0], [2.0], [3.0], [4.0]])
    next_q_max = np.array([[10.0], [20.0], [30.0], [40.0]])
    rewards = np.array([[1.0], [0.0], [1.0], [1.0]])
    terminated = np.array([[False], [False], [True], [False]])
    truncated = np.zeros((4, 1), bool)
    got = apex.actor_priorities(q_taken, next_q_max, rewards, terminated, truncated,
                                gamma=0.5, n_step=2)
    # t0: 1 + .5*0 + .25*20 - 1 = 5;  t1: 0 + .5*1 (terminal) - 2 = -1.5;  t2: 1 - 3 = -2
    # t3: the chunk's last step: one step, 1 + .5*40 - 4 = 17
    np.testing.assert_allclose(got[:, 0], [5.0, 1.5, 2.0, 17.0])


def test_actor_priorities_of_a_quantile_head_are_the_learners():
    """The mean |quantile TD error| over all pairs, as quantile_losses gives the learner's
    priorities: fresh and replayed transitions are on one scale."""
    rng = np.random.default_rng(0)
    q_taken, next_q = rng.normal(size=(3, 2, 5)), rng.normal(size=(3, 2, 5))  # T=3, E=2, N=5
    rewards = rng.choice([0.0, 1.0], size=(3, 2))
    terminated = np.array([[False, False], [False, True], [False, False]])
    truncated = np.zeros((3, 2), bool)
    got = apex.actor_priorities(q_taken, next_q, rewards, terminated, truncated,
                                gamma=0.9, n_step=1)
    fractions = quantile_midpoints(5)
    for t, e in np.ndindex(3, 2):
        bootstrap = 0.0 if terminated[t, e] else 0.9 * next_q[t, e]
        targets = torch.tensor(rewards[t, e] + bootstrap + np.zeros(5), dtype=torch.float32)
        _, learner = quantile_losses(torch.tensor(q_taken[t, e], dtype=torch.float32)[None],
                                     targets[None], fractions)
        assert got[t, e] == pytest.approx(float(learner[0]), rel=1e-5), (t, e)
    # one quantile is the scalar head's |TD error|
    scalar = apex.actor_priorities(q_taken[..., :1], next_q[..., :1], rewards, terminated,
                                   truncated, gamma=0.9, n_step=1)
    np.testing.assert_allclose(scalar, apex.actor_priorities(
        q_taken[..., 0], next_q[..., 0], rewards, terminated, truncated, gamma=0.9, n_step=1))
    expected = np.abs(rewards + 0.9 * next_q[..., 0] * ~terminated - q_taken[..., 0])
    np.testing.assert_allclose(scalar, expected, rtol=1e-5)
