"""Every bad input raises a clear Python exception and leaves the memory as it was."""
import numpy as np
import pytest

from atari_dqn import _replay
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

SHAPE = (4, 5)


def started(memory_class=ReplayMemory, **kwargs):
    memory = memory_class(16, frame_shape=SHAPE, stack=2, **kwargs)
    memory.start_episode(np.zeros(SHAPE, np.uint8))
    return memory


def frame(value=0):
    return np.full(SHAPE, value, np.uint8)


@pytest.mark.parametrize("bad", [np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.int64), np.zeros(SHAPE, bool)])
def test_wrong_frame_dtype_is_a_type_error_not_a_silent_copy(bad):
    memory = started()
    with pytest.raises(TypeError, match="uint8"):
        memory.append(0, 0.0, bad, False)
    with pytest.raises(TypeError, match="uint8"):
        memory.start_episode(bad)
    assert memory.appended == 0


def test_frame_that_is_not_an_array():
    with pytest.raises(TypeError, match="numpy"):
        started().append(0, 0.0, [[0] * 5] * 4, False)


@pytest.mark.parametrize("shape", [(5, 4), (4, 5, 1), (20,), (84, 84)])
def test_wrong_frame_shape(shape):
    memory = started()
    with pytest.raises(ValueError, match="shape"):
        memory.append(0, 0.0, np.zeros(shape, np.uint8), False)
    assert memory.appended == 0


def test_strided_frame_is_stored_correctly():
    memory = started()
    big = np.arange(8 * 10, dtype=np.uint8).reshape(8, 10)
    memory.append(0, 0.0, big[::2, ::2], False)
    np.testing.assert_array_equal(memory.state()[-1], big[::2, ::2])


def test_append_before_start_episode():
    memory = ReplayMemory(16, frame_shape=SHAPE, stack=2)
    with pytest.raises(ValueError, match="start_episode"):
        memory.append(0, 0.0, frame(), False)


@pytest.mark.parametrize("ending", [{"terminated": True}, {"terminated": False, "truncated": True}])
def test_append_after_the_episode_ended(ending):
    memory = started()
    memory.append(0, 0.0, frame(1), **ending)
    with pytest.raises(ValueError, match="ended"):
        memory.append(0, 0.0, frame(2), False)
    assert memory.appended == 1


@pytest.mark.parametrize("action", [-1, 2**31])
def test_action_out_of_range(action):
    with pytest.raises(ValueError, match="action"):
        started().append(action, 0.0, frame(), False)


def test_non_integer_action_and_bad_reward():
    memory = started()
    with pytest.raises(TypeError, match="action"):
        memory.append(1.5, 0.0, frame(), False)
    with pytest.raises(TypeError, match="reward"):
        memory.append(1, "1", frame(), False)
    with pytest.raises(ValueError, match="reward"):
        memory.append(1, float("nan"), frame(), False)
    with pytest.raises(TypeError, match="terminated"):
        memory.append(1, 0.0, frame(), "yes")
    assert memory.appended == 0


def test_sampling_an_empty_memory():
    memory = ReplayMemory(16, frame_shape=SHAPE, stack=2)
    with pytest.raises(IndexError, match="empty"):
        memory.sample(4)
    memory.start_episode(frame())
    with pytest.raises(IndexError, match="empty"):
        memory.sample(4)
    with pytest.raises(IndexError, match="empty"):
        PrioritizedReplayMemory(16, frame_shape=SHAPE).sample(4, 0.4)


def test_bad_batch_size_and_beta():
    memory = started(PrioritizedReplayMemory)
    memory.append(0, 0.0, frame(), False)
    with pytest.raises(ValueError, match="batch_size"):
        memory.sample(0, 0.4)
    for beta in [float("nan"), -0.1, float("inf")]:
        with pytest.raises(ValueError, match="beta"):
            memory.sample(4, beta)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -0.5])
def test_bad_priorities_change_nothing(bad):
    memory = started(PrioritizedReplayMemory)
    for i in range(4):
        memory.append(0, 0.0, frame(i), False)
    before = [memory.priority(i) for i in range(4)]
    with pytest.raises(ValueError, match="priorities"):
        memory.update_priorities(np.array([0, 1, 2]), np.array([0.5, bad, 0.5]))
    assert [memory.priority(i) for i in range(4)] == before


def test_ids_of_the_wrong_shape_or_type():
    memory = started(PrioritizedReplayMemory)
    for i in range(4):
        memory.append(0, 0.0, frame(i), False)
    with pytest.raises(ValueError, match="same length"):
        memory.update_priorities(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        memory.update_priorities(np.array([[0, 1]]), np.array([[1.0, 1.0]]))
    with pytest.raises(TypeError, match="integer"):
        memory.update_priorities(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(TypeError, match="float"):
        memory.update_priorities(np.array([0, 1]), np.array(["a", "b"]))


def test_ids_never_appended():
    memory = started(PrioritizedReplayMemory)
    memory.append(0, 0.0, frame(), False)
    before = memory.priority(0)
    for bad in ([0, 5], [-1]):
        with pytest.raises(IndexError, match="never appended"):
            memory.update_priorities(np.array(bad), np.full(len(bad), 3.0))
    assert memory.priority(0) == before  # all ids are checked before any is applied


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0},
        {"capacity": 4, "stack": 4},  # a stacked transition needs stack + n_step
        {"capacity": 5, "stack": 4, "n_step": 3},
        {"capacity": 16, "stack": 0},
        {"capacity": 16, "n_step": 0},
        {"capacity": 16, "gamma": 1.5},
        {"capacity": 16, "frame_shape": (0, 84)},
        {"capacity": 16, "frame_shape": (84,)},
        {"capacity": 16, "seed": -1},
    ],
)
def test_bad_construction(kwargs):
    with pytest.raises(ValueError):
        ReplayMemory(**kwargs)


@pytest.mark.parametrize("kwargs", [{"alpha": -1.0}, {"alpha": float("nan")}, {"eps": 0.0}, {"eps": float("inf")}])
def test_bad_prioritized_construction(kwargs):
    with pytest.raises(ValueError):
        PrioritizedReplayMemory(16, **kwargs)


def test_non_integer_capacity():
    with pytest.raises(TypeError, match="capacity"):
        ReplayMemory(16.0)


# -- issue 12: extreme priorities, unchecked accessors, the fast path's types ------------------
def prioritized(appends, capacity=100, **kwargs):
    memory = PrioritizedReplayMemory(capacity, frame_shape=SHAPE, stack=2, **kwargs)
    memory.start_episode(frame())
    for i in range(appends):
        memory.append(0, 0.0, frame(i % 256), False)
    return memory


def priorities_of(memory):
    return [memory.priority(i) for i in range(max(0, memory.appended - memory.capacity), memory.appended)]


def test_a_priority_whose_power_overflows_changes_nothing(tmp_path):
    """Issue 12, defect 1: 1e200 ** 2 overflowed after max_priority had moved; every later
    append then raised yet counted its transition, and the snapshot could not be loaded."""
    memory = prioritized(50, alpha=2.0)
    before = (priorities_of(memory), memory.max_priority, memory.appended)
    with pytest.raises(ValueError, match="priority"):
        memory.update_priorities(np.array([3]), np.array([1e200]))
    assert (priorities_of(memory), memory.max_priority, memory.appended) == before
    memory.check_invariants()
    memory.append(0, 0.0, frame(), False)
    assert memory.appended == 51
    memory.save(tmp_path / "m.bin")
    PrioritizedReplayMemory.load(tmp_path / "m.bin").check_invariants()


def test_priorities_that_would_overflow_the_total_are_refused():
    """Issue 12, defect 2: fifty p^alpha of 1e308 summed to inf, and sample() then returned one id
    forever. A p^alpha is refused where capacity of them could overflow the total."""
    memory = prioritized(50, alpha=1.0)
    with pytest.raises(ValueError, match="priority"):
        memory.update_priorities(np.arange(50), np.full(50, 1e308))
    memory.check_invariants()
    # the largest accepted value: capacity of them still sum to a finite total
    memory.update_priorities(np.arange(50), np.full(50, np.finfo(np.float64).max / 1000))
    ids = memory.sample(256, 0.5).ids
    assert len(set(ids.tolist())) > 10  # all 50 are equally likely
    memory.update_priorities(np.arange(50), np.ones(50))  # back from huge: the sums recover
    counts = np.bincount(memory.sample(5000, 0.5).ids, minlength=50)
    assert counts.min() > 0 and np.allclose(counts, 100, atol=1)  # stratified: 100 each, exactly or nearly
    memory.check_invariants()


def test_sampling_recovers_from_extreme_priorities():
    """After one huge priority is reset, the total must not stay dominated by it (cancellation)."""
    memory = prioritized(50, alpha=1.0)
    memory.update_priorities(np.array([7]), np.array([1e300]))
    assert set(memory.sample(64, 0.4).ids.tolist()) == {7}
    memory.update_priorities(np.array([7]), np.array([1.0]))
    assert len(set(memory.sample(256, 0.4).ids.tolist())) > 10
    memory.check_invariants()


@pytest.mark.parametrize("kwargs", [{"eps": 1e-300, "alpha": 2.0}, {"eps": 1e-200, "alpha": 2.0},
                                    {"eps": 1e10, "alpha": 40.0}])
def test_eps_and_alpha_whose_floor_underflows_or_overflows_are_refused(kwargs):
    """The smallest stored priority, eps ** alpha, must be a positive normal double that
    capacity of which still sum to a finite total."""
    with pytest.raises(ValueError, match="eps"):
        PrioritizedReplayMemory(16, **kwargs)


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_zero_td_errors_at_a_tiny_eps_still_sample(alpha):
    """Issue 12, defect 2: with eps=1e-300, priorities set from 1 to eps ** alpha cancelled the
    total to 0 (or below), and sample() could loop forever holding the lock with the GIL released."""
    memory = prioritized(20, eps=1e-300, alpha=alpha)  # eps ** alpha is a normal double: accepted
    memory.update_priorities(np.arange(20), np.zeros(20))
    assert len(set(memory.sample(64, 0.4).ids.tolist())) > 5
    memory.check_invariants()


@pytest.mark.parametrize("tree", [_replay.FenwickTree(4), _replay.MinTree(4)])
@pytest.mark.parametrize("index", [4, 10**9, -1, -(10**9)])
def test_tree_accessors_are_bounds_checked(tree, index):
    """Issue 12, defect 3: FenwickTree(4).get(10**9) and MinTree(4).get(-10**9) segfaulted."""
    with pytest.raises(IndexError):
        tree.get(index)
    with pytest.raises(IndexError):
        tree.set(index, 1.0)


def test_tree_arguments_are_checked():
    with pytest.raises(ValueError):
        _replay.FenwickTree(0)
    with pytest.raises(ValueError):
        _replay.FenwickTree(-1)
    with pytest.raises(ValueError):
        _replay.MinTree(-1)
    with pytest.raises(ValueError):
        _replay.MinTree(4).set(0, float("nan"))
    with pytest.raises(IndexError):
        _replay.FenwickTree(4).prefix(5)
    with pytest.raises(IndexError):
        _replay.FenwickTree(4).prefix(-1)


@pytest.mark.parametrize("flag", [None, 2, 0.5, -1, "", np.float64(1.0), np.array([True])])
def test_flags_must_be_bools_on_the_fast_path_too(flag):
    """Issue 12, defect 5: the fast path turned None, 2 and 0.5 into bools."""
    memory = started()
    with pytest.raises(TypeError, match="terminated"):
        memory.append(0, 0.0, frame(), flag)
    with pytest.raises(TypeError, match="truncated"):
        memory.append(0, 0.0, frame(), False, flag)
    assert memory.appended == 0


@pytest.mark.parametrize("reward", [True, False, np.True_, None, "1", 1j])
def test_reward_must_be_a_real_number_on_the_fast_path_too(reward):
    memory = started()
    with pytest.raises(TypeError, match="reward"):
        memory.append(0, reward, frame(), False)
    assert memory.appended == 0


def test_accepted_types_on_both_paths():
    memory = started()
    memory.append(np.int64(1), np.float32(0.5), frame(), np.bool_(False), 0)
    memory.append(2, 3, frame(), 1, np.bool_(False))  # int reward, 0/1 flags
    memory.start_episode(frame())
    memory.append(1, -1.0, frame(), False, True)
    assert memory.appended == 3
    memory.check_invariants()


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**31, 2**31), (2**62, 4)])
def test_a_frame_shape_whose_size_overflows_is_reported_as_such(shape):
    """Issue 12, defect 5: (2**32, 2**32) reported 'frame size must be > 0 bytes'."""
    with pytest.raises(ValueError, match="too large"):
        ReplayMemory(16, frame_shape=shape)


@pytest.mark.parametrize("kwargs", [{"capacity": 2**63}, {"capacity": 2**70}, {"frame_shape": (2**64, 1)},
                                    {"stack": 2**63}])
def test_integers_beyond_int64_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        ReplayMemory(**{"capacity": 16, **kwargs})
