"""Every bad input raises a clear Python exception and leaves the memory as it was."""
import numpy as np
import pytest

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
