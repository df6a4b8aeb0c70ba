"""atari_dqn.policy.load: run folders and model files of any run, old ones included."""

from __future__ import annotations

import json

import pytest
import torch

from atari_dqn import policy
from atari_dqn.config import Config
from atari_dqn.learn.heads.iqn import IQNNetwork
from atari_dqn.learn.heads.quantile import QuantileNetwork
from atari_dqn.learn.network import QNetwork
from atari_dqn.policy import PolicyLoadError

FRAMES = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator()
                       .manual_seed(0))


def save_run(folder, network: QNetwork, config: dict | None = None, name="model_001.pt"):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / name)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder / name


def config_json(**settings) -> dict:
    return json.loads(Config(out_dir="x", **settings).to_json())


def old_config_json(**settings) -> dict:
    """A config.json written before --head, --quantiles, --network, --augment, --reset-every."""
    values = config_json(**settings)
    for name in ("head", "n_quantiles", "network", "augment", "reset_every_steps"):
        del values[name]
    return values


def assert_same_q(loaded, network):
    with torch.no_grad():
        torch.testing.assert_close(loaded(FRAMES), network.eval()(FRAMES))


ARCHITECTURES = [
    dict(),
    dict(dueling=True),
    dict(dueling=True, n_quantiles=5),
    dict(n_quantiles=3),
    dict(encoder_name="impala", dueling=True),
    dict(encoder_name="impala", n_quantiles=2),
    dict(head="iqn"),
    dict(head="iqn", dueling=True, encoder_name="impala"),
]
NETWORKS = {"scalar": QNetwork, "quantile": QuantileNetwork, "iqn": IQNNetwork}


def head_of(arch: dict) -> str:
    return arch.get("head", "quantile" if "n_quantiles" in arch else "scalar")


def build(n_actions: int, arch: dict) -> QNetwork:
    return NETWORKS[head_of(arch)](n_actions, **{k: v for k, v in arch.items() if k != "head"})


def settings_of(arch: dict) -> dict:
    return dict(dueling=arch.get("dueling", False), network=arch.get("encoder_name", "nature"),
                head=head_of(arch), n_quantiles=arch.get("n_quantiles", 200))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("with_config", [True, False])
def test_any_architecture_loads_from_its_run_folder(arch, with_config, tmp_path):
    network = build(6, arch)
    save_run(tmp_path / "run", network, config_json(**settings_of(arch)) if with_config else None)
    loaded = policy.load(tmp_path / "run")
    assert loaded.n_actions == 6 and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    q = loaded(FRAMES)
    assert q.shape == (3, 6) and q.dtype == torch.float32
    assert_same_q(loaded, network)


@pytest.mark.parametrize("dueling", [False, True])
def test_todays_models_and_configs_load(dueling, tmp_path):
    """A model_NNN.pt of today's runs (keys features.0.weight, head.* or value.*/advantage.*)
    next to a config.json without the new settings."""
    network = QNetwork(4, dueling=dueling)
    keys = set(network.state_dict())
    assert ("advantage.2.bias" in keys) == dueling and ("head.0.weight" in keys) != dueling
    model = save_run(tmp_path / "run", network, old_config_json(dueling=dueling))
    assert_same_q(policy.load(model), network)


def test_a_run_folder_gives_its_final_model_else_its_newest_numbered_one(tmp_path):
    run = tmp_path / "run"
    nets = {name: QNetwork(4) for name in ("model_002.pt", "model_010.pt", "model_009.pt")}
    for name, net in nets.items():
        save_run(run, net, config_json(dueling=False, head="scalar"), name=name)
    assert policy.model_file(run) == run / "model_010.pt"  # by number, not by name
    assert_same_q(policy.load(run), nets["model_010.pt"])
    final = QNetwork(4)
    save_run(run, final, name="final_model.pt")
    assert_same_q(policy.load(run), final)


def test_fp16_weights_load_as_float32(tmp_path):
    network = QNetwork(4, dueling=True)
    half = {k: v.half() for k, v in network.state_dict().items()}
    (tmp_path / "run").mkdir()
    torch.save(half, tmp_path / "run" / "final_model.pt")
    loaded = policy.load(tmp_path / "run" / "final_model.pt")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(FRAMES), network(FRAMES), rtol=1e-2, atol=1e-2)


def test_a_checkpoint_loads_its_online_network(tmp_path):
    from atari_dqn.learn.agent import Agent

    config = Config(out_dir=str(tmp_path), head="quantile", n_quantiles=4, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    torch.save({"version": 1, "config": json.loads(config.to_json()),
                "agent": agent.state_dict()}, tmp_path / "checkpoint.pt")
    assert_same_q(policy.load(tmp_path / "checkpoint.pt"), agent.online)


def test_a_network_compiled_out_of_place_loads(tmp_path):
    network = QNetwork(4)
    state = {f"_orig_mod.{k}": v for k, v in network.state_dict().items()}
    torch.save(state, tmp_path / "model.pt")
    assert_same_q(policy.load(tmp_path / "model.pt"), network)


def test_bad_paths_and_foreign_files_raise_policy_load_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.pt").write_text("not a model")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save({}, tmp_path / "nothing.pt")
    cases = {tmp_path / "missing": "no such file",
             tmp_path / "empty": "no final_model.pt or model_NNN.pt",
             tmp_path / "text.pt": "not a model file",
             tmp_path / "list.pt": "not a model file",
             tmp_path / "nothing.pt": "not a model file",
             tmp_path / "foreign.pt": "not a Q-network"}
    for path, message in cases.items():
        with pytest.raises(PolicyLoadError, match=message) as error:
            policy.load(path)
        assert "\n" not in str(error.value)
    assert issubclass(PolicyLoadError, ValueError)


def test_weights_that_do_not_fit_the_run_config_raise(tmp_path):
    save_run(tmp_path / "run", QNetwork(4, dueling=True), config_json(dueling=False))
    with pytest.raises(PolicyLoadError, match="do not fit"):
        policy.load(tmp_path / "run")


def test_save_half_writes_float16_weights_that_act_like_the_float32_ones(tmp_path):
    network = QuantileNetwork(4, dueling=True, n_quantiles=8)
    model = save_run(tmp_path / "run", network, config_json(head="quantile", n_quantiles=8),
                     name="final_model.pt")
    out = tmp_path / "committed" / "final_model.pt"
    out.parent.mkdir()
    (out.parent / "config.json").write_text((tmp_path / "run" / "config.json").read_text())
    assert policy.main(["half", str(tmp_path / "run"), str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert {v.dtype for k, v in saved.items() if k != "quantile_fractions"} == {torch.float16}
    assert saved["quantile_fractions"].dtype == torch.float32
    assert out.stat().st_size < 0.6 * model.stat().st_size
    with torch.no_grad():
        torch.testing.assert_close(policy.load(out)(FRAMES), network(FRAMES), rtol=1e-2,
                                   atol=1e-2)


def test_save_half_refuses_a_foreign_file_and_an_existing_output(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a model")
    assert policy.main(["half", str(tmp_path / "notes.pt"), str(tmp_path / "out.pt")]) == 2
    assert "not a model file" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
    model = save_run(tmp_path / "run", QNetwork(4), name="final_model.pt")
    before = model.read_bytes()
    assert policy.main(["half", str(model), str(model)]) == 2  # in place: refused
    assert "already exists" in capsys.readouterr().err
    assert model.read_bytes() == before


def test_a_network_for_other_input_than_four_stacked_frames_raises(tmp_path):
    """Without a config.json the architecture is inferred from the weights: one that loads
    but cannot act on a state (B, 4, 84, 84) is refused, not handed to play or dataset."""
    for channels in (1, 3):
        save_run(tmp_path / f"c{channels}", QNetwork(4, in_channels=channels))
        with pytest.raises(PolicyLoadError, match=f"takes {channels} input channels"):
            policy.load(tmp_path / f"c{channels}")
    state = QNetwork(4).state_dict()
    state["features.0.weight"] = torch.zeros(32)  # no convolution at all
    (tmp_path / "flat").mkdir()
    torch.save(state, tmp_path / "flat" / "model_001.pt")
    with pytest.raises(PolicyLoadError, match="no convolution"):
        policy.load(tmp_path / "flat")


def test_a_config_with_other_quantiles_than_the_weights_raises_before_building(tmp_path):
    """A config.json's n_quantiles is not trusted with memory: 10**12 quantiles per action
    would be a layer of terabytes."""
    config = config_json(head="quantile", n_quantiles=3)
    config["n_quantiles"] = 10**12
    save_run(tmp_path / "run", QuantileNetwork(4, n_quantiles=3), config)
    with pytest.raises(PolicyLoadError, match="do not fit the run's settings"):
        policy.load(tmp_path / "run")
    save_run(tmp_path / "scalar", QuantileNetwork(4, n_quantiles=3), config_json(head="scalar"))
    with pytest.raises(PolicyLoadError, match="do not fit the run's settings"):
        policy.load(tmp_path / "scalar")


class Pickled:
    """Not a tensor: torch.load(weights_only=True) refuses a file holding one."""


def test_a_pickle_of_other_objects_is_refused_in_our_words(tmp_path):
    torch.save({"features.0.weight": Pickled()}, tmp_path / "object.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "object.pt").read_bytes()[:100])
    for name in ("object.pt", "cut.pt"):
        with pytest.raises(PolicyLoadError) as error:
            policy.load(tmp_path / name)
        message = str(error.value)
        assert message == f"{tmp_path / name}: not a model file, or a damaged one"
        assert "weights_only" not in message


def test_an_iqn_run_loads_and_its_q_values_are_the_mean_over_its_fixed_taus(tmp_path):
    """config.json says head iqn: the network maps frames to (B, n_actions), the same every call
    (forward's K fixed taus, not a draw), the mean of its quantile values at those taus."""
    network = IQNNetwork(5, dueling=True)
    save_run(tmp_path / "run", network, config_json(head="iqn", dueling=True),
             name="final_model.pt")
    loaded = policy.load(tmp_path / "run")
    assert isinstance(loaded, IQNNetwork)
    with torch.no_grad():
        q = loaded(FRAMES)
        assert q.shape == (3, 5) and torch.equal(q, loaded(FRAMES))
        taus = loaded.fixed_taus.expand(3, -1)
        assert taus.shape == (3, 32)
        torch.testing.assert_close(q, network.eval().at(FRAMES, taus).mean(dim=2))


def test_iqn_weights_do_not_load_as_another_head(tmp_path):
    save_run(tmp_path / "run", IQNNetwork(4), config_json(head="quantile"))
    with pytest.raises(PolicyLoadError, match="do not fit the run's settings"):
        policy.load(tmp_path / "run")
    save_run(tmp_path / "scalar", QNetwork(4), config_json(head="iqn"))
    with pytest.raises(PolicyLoadError, match="do not fit the run's settings"):
        policy.load(tmp_path / "scalar")
