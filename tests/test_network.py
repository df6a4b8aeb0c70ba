import numpy as np
import pytest
import torch

from atari_dqn.learn.heads.quantile import QuantileNetwork
from atari_dqn.learn.network import QNetwork, conv_output_size

NATURE_BODY_PARAMS = 1_684_128  # three convolutions and the 3136 -> 512 layer


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("n_actions", [4, 6, 18])
def test_parameter_count_matches_the_nature_network(n_actions):
    assert count(QNetwork(n_actions)) == NATURE_BODY_PARAMS + 513 * n_actions


def test_last_feature_map_is_7x7():
    assert conv_output_size() == 7


@pytest.mark.parametrize("dueling", [False, True])
def test_output_shape_and_uint8_input(dueling):
    net = QNetwork(4, dueling=dueling)
    q = net(torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8))
    assert q.shape == (5, 4) and q.dtype == torch.float32


def test_input_is_scaled_inside_forward():
    net = QNetwork(4)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    scaled = frames.float() / 255.0
    body = net.head(net.features(scaled))
    torch.testing.assert_close(net(frames), body)


def test_dueling_advantages_are_mean_subtracted():
    net = QNetwork(6, dueling=True)
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    features = net.features(frames.float() / 255.0)
    q = net(frames)
    # the mean over actions of Q is exactly the value stream
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), net.value(features))


@pytest.mark.parametrize("dueling", [False, True])
def test_quantile_head_shapes_and_q_is_the_mean_over_quantiles(dueling):
    net = QuantileNetwork(6, dueling=dueling, n_quantiles=7)
    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    quantiles = net.quantiles(frames)
    assert quantiles.shape == (5, 6, 7)
    q = net(frames)
    assert q.shape == (5, 6)
    torch.testing.assert_close(q, quantiles.mean(dim=2))
    torch.testing.assert_close(net.quantile_fractions,
                               torch.tensor([1, 3, 5, 7, 9, 11, 13]) / 14.0)


def test_dueling_quantiles_are_value_quantiles_plus_mean_subtracted_advantages():
    net = QuantileNetwork(3, dueling=True, n_quantiles=5)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    features = net.features(frames.float() / 255.0)
    # per quantile, the mean over actions is the value stream's quantile
    torch.testing.assert_close(net.quantiles(frames).mean(dim=1), net.value(features))


def test_a_scalar_head_has_no_quantiles_and_its_samples_are_its_q_values():
    net = QNetwork(4)
    assert "quantile_fractions" not in net.state_dict() and not hasattr(net, "quantiles")
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert torch.equal(net.samples(frames), net(frames)[:, :, None])
    assert torch.equal(net.q_values(frames, np.random.default_rng(0)), net(frames))


def test_impala_encoder_halves_84_three_times_to_11():
    from atari_dqn.learn.network import encoder, impala_output_size

    assert impala_output_size() == 11
    features, n_features = encoder("impala")
    assert n_features == 32 * 11 * 11
    assert features(torch.zeros(2, 4, 84, 84)).shape == (2, n_features)


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("n_quantiles", [None, 3])
def test_impala_network_shapes(dueling, n_quantiles):
    net = (QNetwork(6, dueling=dueling, encoder_name="impala") if n_quantiles is None else
           QuantileNetwork(6, dueling=dueling, n_quantiles=n_quantiles, encoder_name="impala"))
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert net(frames).shape == (2, 6)
    if n_quantiles:
        assert net.quantiles(frames).shape == (2, 6, 3)
    keys = net.state_dict().keys()
    assert "features.0.conv.weight" in keys and "features.2.blocks.1.conv2.bias" in keys
    assert net.state_dict()["features.0.conv.weight"].shape == (16, 4, 3, 3)


def test_impala_parameter_count():
    # stage convs + 2 residual blocks of two 3x3 convs each, per stage; then 3872 -> 512 -> 4
    convs = [(4, 16), (16, 32), (32, 32)]
    expected = sum(9 * i * o + o + 4 * (9 * o * o + o) for i, o in convs)
    expected += 3872 * 512 + 512 + 513 * 4
    assert count(QNetwork(4, encoder_name="impala")) == expected


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="unknown encoder"):
        QNetwork(4, encoder_name="resnet50")
