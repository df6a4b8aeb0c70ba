"""dataset import / info: Dopamine replay checkpoints written here, imported, checked entry by entry."""
import gzip
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from atari_dqn import dataset
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

FRAME = (84, 84)
STACK = 4


class DopamineBuffer:
    """Writes what Dopamine's OutOfGraphReplayBuffer (stack 4 unless told, update horizon 1) would
    hold: before an episode's first entry, if the buffer is empty or the last entry was terminal,
    stack - 1 zero padding entries; each entry written at cursor = add_count % capacity. Every
    real entry is also recorded with its add index, so the test knows what each one should become."""

    def __init__(self, capacity, seed=0, stack=STACK):
        self.capacity = capacity
        self.stack = stack
        self.obs = np.zeros((capacity, *FRAME), np.uint8)
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminal = np.zeros(capacity, np.uint8)
        self.add_count = 0
        self.rng = np.random.default_rng(seed)
        self.records = []  # dicts: index (add index), episode, obs, action, reward, terminal

    def _write(self, obs, action, reward, terminal):
        c = self.add_count % self.capacity
        self.obs[c], self.action[c], self.reward[c], self.terminal[c] = obs, action, reward, terminal
        self.add_count += 1

    def episode(self, steps, terminal_at_end, episode_id):
        if self.add_count == 0 or self.terminal[(self.add_count - 1) % self.capacity] == 1:
            for _ in range(self.stack - 1):
                self._write(np.zeros(FRAME, np.uint8), 0, 0.0, 0)
        for t in range(steps):
            obs = self.rng.integers(1, 256, FRAME, dtype=np.uint8)  # never all zero, unique
            action, reward = int(self.rng.integers(0, 4)), float(self.rng.choice([-1.0, 0.0, 0.0, 1.0]))
            terminal = int(terminal_at_end and t == steps - 1)
            self.records.append(dict(index=self.add_count, episode=episode_id, obs=obs, action=action,
                                     reward=reward, terminal=terminal))
            self._write(obs, action, reward, terminal)

    def invalid_range(self):
        cursor = self.add_count % self.capacity
        return np.array([(cursor - 1 + i) % self.capacity for i in range(self.stack + 1)])

    def save(self, folder, suffix=0):
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"$store$_observation": self.obs, "$store$_action": self.action,
                  "$store$_reward": self.reward, "$store$_terminal": self.terminal,
                  "add_count": np.array(self.add_count), "invalid_range": self.invalid_range()}
        for name, array in arrays.items():
            with gzip.open(folder / f"{name}_ckpt.{suffix}.gz", "wb") as f:
                np.save(f, array, allow_pickle=False)
        return folder


def expected_transitions(buffer):
    """What the import must produce, in order: the real entries whose add index lies in the
    valid window (not the stack oldest of a wrapped buffer, not the newest), of episodes that
    begin inside it, each with its next frame (the next entry's frame, or its own if terminal)
    and flags."""
    window_lo = max(0, buffer.add_count - buffer.capacity)
    if buffer.add_count > buffer.capacity:
        window_lo += STACK  # invalid_range: the stack entries from the cursor on
    window_hi = buffer.add_count - 1  # invalid_range: the newest entry
    records = buffer.records
    begun_before = {r["episode"] for r in records if r["index"] < window_lo}  # dropped whole
    out = []
    for k, r in enumerate(records):
        if not window_lo <= r["index"] < window_hi or r["episode"] in begun_before:
            continue
        if r["terminal"]:
            next_obs, truncated = r["obs"], False
        else:
            nxt = records[k + 1]
            assert nxt["episode"] == r["episode"] and nxt["index"] == r["index"] + 1
            next_obs, truncated = nxt["obs"], nxt["index"] >= window_hi
        first = not out or out[-1]["episode"] != r["episode"]
        out.append(dict(r, next_obs=next_obs, truncated=truncated, first=first))
    return out


def expected_states(transitions):
    """The memory's stacking rule over the imported episodes: the last STACK frames of the
    episode, padded by repeating its first imported frame."""
    states, next_states, episode = [], [], []
    for t in transitions:
        if t["first"]:
            episode = [t["obs"]]
        else:
            episode.append(t["obs"])
        history = ([episode[0]] * STACK + episode)[-STACK:]
        states.append(np.stack(history))
        next_states.append(np.stack((history + [t["next_obs"]])[-STACK:]))
    return states, next_states


def check_import(memory, transitions):
    assert memory.appended == len(transitions) == len(memory) == memory.capacity
    assert memory.stack == STACK and memory.frame_shape == FRAME
    log = memory.export_log()
    np.testing.assert_array_equal(log["ids"], np.arange(len(transitions)))
    np.testing.assert_array_equal(log["actions"], [t["action"] for t in transitions])
    np.testing.assert_array_equal(log["rewards"], [t["reward"] for t in transitions])
    np.testing.assert_array_equal(log["terminated"], [bool(t["terminal"]) for t in transitions])
    np.testing.assert_array_equal(log["truncated"], [t["truncated"] for t in transitions])
    np.testing.assert_array_equal(log["episode_start"], [t["first"] for t in transitions])
    states, next_states = expected_states(transitions)
    seen = set()
    for _ in range(10):
        batch = memory.sample(512)
        for b, i in enumerate(batch.ids):
            t = transitions[i]
            np.testing.assert_array_equal(batch.states[b], states[i], err_msg=f"state of {i}")
            if not t["terminal"]:  # a terminal's next state is never bootstrapped from
                np.testing.assert_array_equal(batch.next_states[b], next_states[i], err_msg=f"next of {i}")
            assert batch.actions[b] == t["action"] and batch.rewards[b] == t["reward"]
            assert batch.dones[b] == t["terminal"]
            seen.add(int(i))
    assert seen == set(range(len(transitions)))  # every transition was checked


def run_import(folder, out, *extra):
    return dataset.main(["import", str(folder), "--out", str(out), *extra])


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_unwrapped_buffer_imports_every_transition(tmp_path, capsys):
    buffer = DopamineBuffer(capacity=300)
    buffer.episode(40, True, 0)
    buffer.episode(1, True, 1)  # a one-step episode
    buffer.episode(60, True, 2)
    buffer.episode(30, False, 3)  # still running when the checkpoint was written: cut at the cursor
    folder = buffer.save(tmp_path / "replay_logs")
    before = digests(folder)
    assert run_import(folder, tmp_path / "data.bin") == 0
    assert digests(folder) == before  # read only
    transitions = expected_transitions(buffer)
    assert len(transitions) == 40 + 1 + 60 + 29
    assert [t["truncated"] for t in transitions].count(True) == 1 and transitions[-1]["truncated"]
    check_import(ReplayMemory.load(tmp_path / "data.bin"), transitions)

    assert dataset.main(["info", str(tmp_path / "data.bin")]) == 0
    out = capsys.readouterr().out
    assert "transitions: 130 (ids 0 to 129), 130 sampleable" in out
    assert "episodes: 3 complete (start to terminal), 1 cut short (truncated), 0 partial" in out
    returns = [sum(t["reward"] for t in transitions if t["episode"] == e) for e in range(3)]
    assert f"mean {np.mean(returns):.2f}, std {np.std(returns):.2f}, min {min(returns):g}, " \
           f"max {max(returns):g}" in out
    counts = np.bincount([t["action"] for t in transitions])
    assert "actions: " + ", ".join(f"{a}: {n:,} ({n / 130:.1%})" for a, n in enumerate(counts)) in out
    assert f"size on disk: {(tmp_path / 'data.bin').stat().st_size:,} bytes" in out
    # beside the snapshot: where it came from, and the protocol its games were played under
    source = json.loads((tmp_path / "data.bin.json").read_text())
    assert source["protocol"] == "machado" and source["folder"] == str(folder.resolve())
    assert source["checkpoint"] == "0" and source["stack"] == 4
    assert f"protocol: machado (from {tmp_path / 'data.bin.json'})" in out


def test_an_import_whose_source_file_cannot_be_written_leaves_nothing(small_dataset, tmp_path,
                                                                      monkeypatch, capsys):
    import errno

    from atari_dqn.run.files import DiskError

    def full_disk(path, text):
        raise DiskError(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(dataset, "atomic_write_text", full_disk)
    out = tmp_path / "data.bin"
    assert_refused(run_import(small_dataset, out), capsys, out, "data.bin.json",
                   "No space left on device")


@pytest.mark.parametrize("lengths, first_episode", [
    ([50, 70, 40, 90, 60], 4),  # the cursor inside episode 3, which is dropped
    ([50, 70, 40, 35, 50, 62], 4),  # episode 3 ends one entry after the cursor; the padding after it
                                    # reaches past the invalid entries; episode 4 begins after it
    ([50, 70, 40, 30, 50, 65], 5),  # the cursor on padding: episode 4's first entry is invalid
])
def test_wrapped_buffer_starts_at_the_cursor(tmp_path, lengths, first_episode):
    buffer = DopamineBuffer(capacity=120, seed=1)
    for e, n in enumerate(lengths):
        buffer.episode(n, e < len(lengths) - 1, e)
    assert buffer.add_count > buffer.capacity and buffer.add_count % buffer.capacity != 0
    folder = buffer.save(tmp_path / "replay_logs", suffix=7)
    assert run_import(folder, tmp_path / "data.bin") == 0
    transitions = expected_transitions(buffer)
    assert transitions[0]["episode"] == first_episode and transitions[-1]["truncated"]
    check_import(ReplayMemory.load(tmp_path / "data.bin"), transitions)


def test_info_counts_lives_and_edges_of_a_training_snapshot(tmp_path, capsys):
    # What a run stores: sign-clipped rewards, a wrapped memory, an episode still running.
    memory = ReplayMemory(20, frame_shape=(4, 4), stack=4)
    frame = np.zeros((4, 4), np.uint8)
    memory.start_episode(frame)
    for length, end in [(12, "terminated"), (5, "terminated"), (4, "truncated"), (6, None)]:
        for t in range(length):
            last = t == length - 1
            memory.append(t % 3, 1.0 if t % 2 else 0.0, frame, last and end == "terminated",
                          last and end == "truncated")
        if end:
            memory.start_episode(frame)
    run = tmp_path / "run"
    run.mkdir()
    memory.save(run / "replay-000000990.bin")
    (run / "replay-000001000.bin").write_bytes(b"not a snapshot")  # the latest one: it is read
    assert dataset.main(["info", str(run)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (run / "replay-000001000.bin").unlink()
    assert dataset.main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    # 27 appended, the newest 20 live: 5 of the first episode (its start gone), 5, 4, 6 running
    assert "transitions: 20 (ids 7 to 26), 20 sampleable" in out
    assert "episodes: 1 complete (start to terminal), 1 cut short (truncated), 2 partial at the edges " \
           "(1 begun before the oldest transition, 1 still in progress)" in out
    assert "mean 2.00, std 0.00, min 2, max 2; mean length 5.0 transitions" in out
    assert "(all in {-1, 0, 1}: clipped)" in out and "lives" in out


def test_info_reads_a_prioritized_snapshot(tmp_path, capsys):
    memory = PrioritizedReplayMemory(10, frame_shape=(4, 4))
    frame = np.zeros((4, 4), np.uint8)
    memory.start_episode(frame)
    for t in range(7):
        memory.append(1, 2.5, frame, t == 6)
    memory.save(tmp_path / "m.bin")
    assert dataset.main(["info", str(tmp_path / "m.bin")]) == 0
    out = capsys.readouterr().out
    assert "prioritized" in out and "1 complete" in out and "mean 17.50" in out
    assert "actions: 0: 0 (0.0%), 1: 7 (100.0%)" in out


@pytest.fixture
def small_dataset(tmp_path):
    buffer = DopamineBuffer(capacity=40)
    buffer.episode(12, True, 0)
    buffer.episode(15, False, 1)
    return buffer.save(tmp_path / "logs", suffix=3)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def corrupt(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def foreign(path):
    with gzip.open(path, "wb") as f:
        f.write(b"this is not a numpy array\n")


def wrong_dtype(path):
    with gzip.open(path, "wb") as f:
        np.save(f, np.zeros(40, np.float64))


@pytest.mark.parametrize("damage, name", [
    (truncate, "$store$_observation_ckpt.3.gz"),
    (corrupt, "$store$_observation_ckpt.3.gz"),
    (foreign, "$store$_observation_ckpt.3.gz"),
    (truncate, "$store$_reward_ckpt.3.gz"),
    (foreign, "add_count_ckpt.3.gz"),
    (wrong_dtype, "$store$_action_ckpt.3.gz"),
    (lambda p: p.unlink(), "$store$_terminal_ckpt.3.gz"),
])
def test_bad_files_exit_2_with_one_line(small_dataset, tmp_path, capsys, damage, name):
    damage(small_dataset / name)
    before = digests(small_dataset)
    assert run_import(small_dataset, tmp_path / "out.bin") == 2
    err = capsys.readouterr().err
    assert err.startswith("dataset: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out.bin").exists()
    assert digests(small_dataset) == before


def test_bad_arguments_exit_2_with_one_line(small_dataset, tmp_path, capsys):
    cases = [
        ["import", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.bin")],
        ["import", str(small_dataset), "--out", str(tmp_path / "a.bin"), "--suffix", "4"],
        ["import", str(small_dataset), "--out", str(tmp_path / "no" / "a.bin")],
        ["import", str(small_dataset), "--out", str(tmp_path / "a.bin"), "--stack", "3"],  # padding is 3 long
        ["import", str(small_dataset)],  # no --out
        ["info", str(tmp_path / "missing.bin")],
        ["info", str(small_dataset)],  # a folder without replay-*.bin
        ["info", str(small_dataset / "add_count_ckpt.3.gz")],  # not a snapshot
    ]
    for argv in cases:
        with pytest.raises(SystemExit) if "--out" not in argv and argv[0] == "import" else _no_exit() as e:
            code = dataset.main(argv)
        code = e.value.code if e is not None and hasattr(e, "value") else code
        err = capsys.readouterr().err
        assert code == 2, argv
        assert err.startswith("dataset: error: ") and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "a.bin").exists()


class _no_exit:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_existing_output_is_never_overwritten(small_dataset, tmp_path, capsys):
    out = tmp_path / "data.bin"
    out.write_bytes(b"keep me")
    assert run_import(small_dataset, out) == 2
    assert out.read_bytes() == b"keep me"
    assert "exists" in capsys.readouterr().err


def test_several_checkpoints_need_a_suffix(small_dataset, tmp_path, capsys):
    for p in list(small_dataset.iterdir()):
        (small_dataset / p.name.replace(".3.gz", ".5.gz")).write_bytes(p.read_bytes())
    assert run_import(small_dataset, tmp_path / "a.bin") == 2
    assert "choose one with --suffix" in capsys.readouterr().err
    assert run_import(small_dataset, tmp_path / "a.bin", "--suffix", "5") == 0
    assert ReplayMemory.load(tmp_path / "a.bin").appended == 12 + 14  # the cut episode loses its newest entry


def test_command_line(small_dataset, tmp_path):
    out = tmp_path / "data.bin"
    done = subprocess.run([sys.executable, "-m", "atari_dqn.dataset", "import", str(small_dataset),
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 26 transitions" in done.stdout
    done = subprocess.run([sys.executable, "-m", "atari_dqn.dataset", "info", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "1 complete" in done.stdout and "1 cut short" in done.stdout
    done = subprocess.run([sys.executable, "-m", "atari_dqn.dataset", "info", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stdout == ""


# --- refusals before anything is written ------------------------------------------------------------

def assert_refused(code, capsys, out, *words):
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("dataset: error: ") and err.count("\n") == 1, err
    assert all(word in err for word in words), err
    assert not out.exists()


@pytest.mark.parametrize("stack", [1, 2, 3, 5, 6])
def test_a_wrong_stack_is_refused_naming_the_right_one(small_dataset, tmp_path, capsys, stack):
    # Read with stack 1, stack-4 data has no padding to skip: its three zero entries would begin
    # each episode. Read with stack 5 or 6, the padding ends before the stack - 1 entries do.
    assert_refused(run_import(small_dataset, tmp_path / "out.bin", "--stack", str(stack)), capsys,
                   tmp_path / "out.bin", "use --stack 4")


def test_a_wrong_stack_is_refused_in_a_wrapped_buffer_and_for_stack_1_data(tmp_path, capsys):
    buffer = DopamineBuffer(capacity=120, seed=1)
    for e, n in enumerate([50, 70, 40, 90, 60]):
        buffer.episode(n, e < 4, e)
    folder = buffer.save(tmp_path / "wrapped")
    assert_refused(run_import(folder, tmp_path / "a.bin", "--stack", "1"), capsys, tmp_path / "a.bin",
                   "use --stack 4")
    buffer = DopamineBuffer(capacity=60, stack=1)  # no padding at all
    buffer.episode(20, True, 0)
    buffer.episode(20, False, 1)
    folder = buffer.save(tmp_path / "stack1")
    assert_refused(run_import(folder, tmp_path / "b.bin"), capsys, tmp_path / "b.bin", "use --stack 1")
    assert run_import(folder, tmp_path / "b.bin", "--stack", "1") == 0
    assert ReplayMemory.load(tmp_path / "b.bin").appended == 20 + 19


def write_npy_header(path, shape, dtype, body=b""):
    """A gzip'd .npy whose header declares `shape` and `dtype`, followed by `body` only."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                 "fortran_order": False, "shape": shape})
        f.write(body)


@pytest.mark.parametrize("name, shape, dtype, words", [
    ("$store$_action", (10**12,), np.int32, "compressed bytes can hold"),
    ("$store$_action", (40,), "S1000000000", "compressed bytes can hold"),  # 40 GB of 1 GB strings
    ("$store$_reward", (-3,), np.float32, "negative dimension"),
    ("$store$_observation", (40, 10**6, 10**6), np.uint8, "compressed bytes can hold"),
    ("$store$_observation", (40, 60000, 60000), np.uint8, "compressed bytes can hold"),
    ("$store$_observation", (40, 84, 84), np.uint8, "compressed bytes can hold"),  # no frames follow
])
def test_absurd_headers_are_refused_before_any_data_is_read(small_dataset, tmp_path, capsys,
                                                             name, shape, dtype, words):
    write_npy_header(small_dataset / f"{name}_ckpt.3.gz", shape, dtype, body=bytes(16))
    assert_refused(run_import(small_dataset, tmp_path / "out.bin"), capsys, tmp_path / "out.bin",
                   f"{name}_ckpt.3.gz", words)


@pytest.mark.parametrize("name, shape, dtype, words", [
    # Headers the files can hold, but not Dopamine's layout: refused from the header alone.
    ("$store$_observation", (40, 2000, 2000), np.uint8, "expected uint8 frames (capacity, 84, 84)"),
    ("$store$_observation", (dataset.DOPAMINE_CAPACITY + 1, 84, 84), np.uint8,
     "a Dopamine checkpoint holds 1 to"),
    ("$store$_action", (10**6,), np.int32, "expected 40 integer actions"),
    ("invalid_range", (41,), np.int64, "expected at most 40 indices"),
])
def test_shapes_other_than_dopamines_are_refused_before_reading(small_dataset, tmp_path, capsys,
                                                                name, shape, dtype, words):
    # A header, then enough random bytes that the file could hold what it declares.
    declared = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    write_npy_header(small_dataset / f"{name}_ckpt.3.gz", shape, dtype,
                     body=np.random.default_rng(0).bytes(declared // 1000))
    assert_refused(run_import(small_dataset, tmp_path / "out.bin"), capsys, tmp_path / "out.bin",
                   f"{name}_ckpt.3.gz", words)


def compressible_npy(path, array):
    with gzip.open(path, "wb") as f:
        np.save(f, array)


def test_frames_the_networks_cannot_take_are_not_imported(tmp_path, capsys):
    buffer = DopamineBuffer(capacity=40)
    buffer.episode(12, True, 0)
    buffer.episode(15, False, 1)
    folder = buffer.save(tmp_path / "logs")
    compressible_npy(folder / "$store$_observation_ckpt.0.gz", np.ascontiguousarray(buffer.obs[:, :, :80]))
    assert_refused(run_import(folder, tmp_path / "out.bin"), capsys, tmp_path / "out.bin",
                   "expected uint8 frames (capacity, 84, 84), got uint8 (40, 84, 80)")


@pytest.mark.parametrize("action", [18, 2**31 - 1, -1])
def test_actions_outside_atari_s_are_not_imported(small_dataset, tmp_path, capsys, action):
    with gzip.open(small_dataset / "$store$_action_ckpt.3.gz", "rb") as f:
        actions = np.load(f)
    actions[5] = action
    compressible_npy(small_dataset / "$store$_action_ckpt.3.gz", actions)
    assert_refused(run_import(small_dataset, tmp_path / "out.bin"), capsys, tmp_path / "out.bin",
                   "an Atari game's are 0 to 17")


def test_info_describes_any_actions_without_a_dense_count(tmp_path):
    # An old snapshot holding action 2^31 - 1: np.bincount would allocate 16 GiB. Run under a
    # 3 GiB address-space limit, so an allocation that large fails rather than swamps the machine.
    memory = ReplayMemory(10, frame_shape=(4, 4))
    frame = np.ones((4, 4), np.uint8)
    memory.start_episode(frame)
    for action in (2**31 - 1, 3, 3, 2**31 - 1):
        memory.append(action, 0.0, frame, False)
    memory.save(tmp_path / "odd.bin")

    def limit_memory():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    done = subprocess.run([sys.executable, "-m", "atari_dqn.dataset", "info", str(tmp_path / "odd.bin")],
                          capture_output=True, text=True, preexec_fn=limit_memory, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "actions: 3: 2 (50.0%), 2147483647: 2 (50.0%) (not all in 0 to 17" in done.stdout


def save_memory(path, *, frame_shape=(84, 84), stack=4, steps=8):
    memory = ReplayMemory(10, frame_shape=frame_shape, stack=stack)
    frame = np.ones(frame_shape, np.uint8)
    memory.start_episode(frame)
    for t in range(steps):
        memory.append(t % 2, 1.0, frame, t == steps - 1)
    memory.save(path)
    return path


@pytest.fixture
def model(tmp_path):
    torch = pytest.importorskip("torch")
    from atari_dqn.learn.network import QNetwork

    torch.manual_seed(0)
    torch.save(QNetwork(4).state_dict(), tmp_path / "model_001.pt")
    return tmp_path / "model_001.pt"


@pytest.mark.parametrize("snapshot, words", [
    (dict(steps=0), "no sampleable transition"),
    (dict(frame_shape=(84, 80)), "84x80 frames stacked by 4; the networks take 84x84 stacked by 4"),
    (dict(stack=1), "84x84 frames stacked by 1; the networks take 84x84 stacked by 4"),
])
def test_unusable_snapshots_are_refused_by_qvalues_and_flagged_by_info(tmp_path, capsys, model,
                                                                         snapshot, words):
    data = save_memory(tmp_path / "data.bin", **snapshot)
    assert dataset.main(["qvalues", str(data), str(model), "--samples", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataset: error: ") and err.count("\n") == 1 and words in err, err
    assert dataset.main(["info", str(data)]) == 0
    assert f"not usable by qvalues or --offline: {words}" in capsys.readouterr().out


def test_qvalues_refuses_a_model_whose_stack_is_not_the_data_s(tmp_path, capsys, model, monkeypatch):
    # policy.load may itself refuse a model that does not take 4 frames; qvalues does not rely on it.
    from atari_dqn import policy
    from atari_dqn.learn.network import QNetwork

    data = save_memory(tmp_path / "data.bin")
    assert dataset.main(["qvalues", str(data), str(model), "--samples", "10"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(policy, "load", lambda path: QNetwork(4, in_channels=1).eval())
    assert dataset.main(["qvalues", str(data), str(model), "--samples", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataset: error: ") and err.count("\n") == 1, err
    assert "holds states of 4 stacked frames; " in err and "takes 1" in err
