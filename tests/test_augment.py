import numpy as np
import pytest
import torch

from atari_dqn.learn.augment import PAD_PIXELS, random_shift


def reference_shift(stack: np.ndarray, dy: int, dx: int, pad: int = PAD_PIXELS) -> np.ndarray:
    """DrQ's definition: pad by repeating the edge, crop at offset (pad + dy, pad + dx)."""
    padded = np.pad(stack, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    height, width = stack.shape[1:]
    return padded[:, pad + dy: pad + dy + height, pad + dx: pad + dx + width]


def recover_offset(original: np.ndarray, shifted: np.ndarray) -> tuple[int, int]:
    matches = [(dy, dx) for dy in range(-PAD_PIXELS, PAD_PIXELS + 1)
               for dx in range(-PAD_PIXELS, PAD_PIXELS + 1)
               if np.array_equal(reference_shift(original, dy, dx), shifted)]
    assert len(matches) == 1, matches  # each stack is one padded crop, nothing else
    return matches[0]


def test_each_stack_is_an_edge_padded_crop_shifted_by_at_most_4_pixels():
    rng = np.random.default_rng(0)
    states = rng.integers(0, 256, (64, 4, 84, 84), dtype=np.uint8)
    shifted = random_shift(torch.from_numpy(states), torch.Generator().manual_seed(0))
    assert shifted.shape == (64, 4, 84, 84) and shifted.dtype == torch.uint8
    offsets = [recover_offset(states[i], shifted[i].numpy()) for i in range(64)]
    assert all(max(abs(dy), abs(dx)) <= PAD_PIXELS for dy, dx in offsets)
    assert len(set(offsets)) > 20  # drawn per stack: 64 draws of 81 offsets are far from equal
    assert {dy for dy, _ in offsets} >= {-PAD_PIXELS, PAD_PIXELS}


def test_the_generator_alone_decides_the_shifts():
    states = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    a = random_shift(states, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG plays no part
    b = random_shift(states, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, random_shift(states, torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_dtype_is_kept(dtype):
    states = torch.zeros(2, 4, 84, 84, dtype=dtype)
    assert random_shift(states, torch.Generator().manual_seed(0)).dtype == dtype
