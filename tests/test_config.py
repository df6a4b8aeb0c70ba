import dataclasses
import json
import subprocess
import sys

import pytest

import main
from atari_dqn.config import (SECTION_STARTS, Config, ConfigError, default_run_dir, flag_of,
                              sections)


def test_defaults_are_valid_and_every_field_has_a_doc_and_a_flag():
    config = Config(out_dir="x")
    flags = set()
    settings = 0
    for f in dataclasses.fields(config):
        assert f.metadata["doc"]
        if f.metadata.get("recorded"):  # what an offline run records of its dataset: no flag
            assert f.name.startswith("offline_") and f.metadata["flag"] == ""
            continue
        assert f.metadata["flag"].startswith("--")
        flags.add(f.metadata["flag"])
        settings += 1
    assert len(flags) == settings
    required = {"--env", "--steps", "--memory-size", "--batch-size", "--lr", "--learning-starts",
                "--target-update", "--eps-start", "--eps-end", "--eps-decay", "--eval-every",
                "--eval-episodes", "--eval-eps", "--prioritized", "--render", "--out",
                "--resume", "--seed", "--device", "--tensorboard", "--double", "--dueling",
                "--n-step", "--gamma"}
    assert required <= flags


@pytest.mark.parametrize("bad, flag", [
    (dict(total_steps=-5), "--steps"),
    (dict(total_steps=0), "--steps"),
    (dict(eps_start=1.5), "--eps-start"),
    (dict(eps_end=-0.1), "--eps-end"),
    (dict(eval_eps=2.0), "--eval-eps"),
    (dict(lr=0.0), "--lr"),
    (dict(gamma=1.2), "--gamma"),
    (dict(batch_size=64, memory_capacity_transitions=32), "--batch-size"),
    (dict(device="tpu"), "--device"),
    (dict(envs=0), "--envs must be a positive integer"),
    (dict(env_processes=-1), "--env-processes must not be negative"),
    (dict(envs=8, total_steps=1_004), "--steps must be a multiple of --envs 8"),
    (dict(envs=3, eval_every_steps=1_000, total_steps=3_000),
     "--eval-every must be a multiple of --envs 3"),
    # issue 12, defects 6 and 7: each of these used to start a run (and crash inside it)
    (dict(lr=float("inf")), "--lr must be a finite number"),
    (dict(adam_eps=float("inf")), "--adam-eps must be a finite number"),
    (dict(per_alpha=float("inf"), prioritized=True), "--per-alpha must be a finite number"),
    (dict(gamma=float("nan")), "--gamma must be a finite number"),
    (dict(seed=-1), "--seed must be in"),
    (dict(n_step=1001, memory_capacity_transitions=2000), "--n-step must be at most 1000"),
    (dict(memory_capacity_transitions=6, batch_size=1), r"--memory-size must be at least 4 \+"),
    (dict(n_step=10, memory_capacity_transitions=13, batch_size=1), "--memory-size"),
    (dict(eval_max_steps=600_000_000), "--eval-max-steps must be at most"),
    (dict(head="categorical"), "--head"),
    (dict(head="quantile", n_quantiles=0), "--quantiles"),
    (dict(network="resnet"), "--network"),
    (dict(reset_every_steps=-1), "--reset-every"),
    # defects 11 and 12: sizes beyond what the code can hold, refused before a run starts
    (dict(n_quantiles=10_001), "--quantiles must be at most 10000"),
    (dict(envs=2_000, total_steps=2_000, eval_every_steps=2_000),
     r"--envs must be at most 1024 \(games made at once"),
    (dict(eval_episodes=10_000), "--eval-episodes must be at most 1024"),
    (dict(actors=65, envs=1_024, total_steps=1_024, eval_every_steps=1_024),
     "--actors 65 x --envs 1024 is 66560 training games, more than the replay memory's 65536"),
])
def test_bad_values_raise_a_config_error_naming_the_flag(bad, flag):
    with pytest.raises(ConfigError, match=flag):
        Config(out_dir="x", **bad)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_config_is_a_plain_value_that_imports_no_environment_code():
    code = ("import sys, atari_dqn.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('gymnasium', 'ale_py', 'torch', 'atari_dqn')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    # and the torch-free registry of heads and loss terms, whose names --head takes
    assert done.stdout.strip() == ("['atari_dqn', 'atari_dqn.config', 'atari_dqn.learn', "
                                   "'atari_dqn.learn.registry']")
    assert Config(env_id="NoSuchGame", out_dir="x").env_id == "NoSuchGame"  # checked elsewhere


def test_default_run_dir():
    assert default_run_dir("Pong", 3).startswith("rewards/Pong-seed3-")


def test_json_round_trip():
    config = Config(out_dir="x", lr=3e-4, prioritized=True)
    assert Config.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["lr"] == 3e-4


def test_flag_of():
    assert flag_of("target_update_steps") == "--target-update"


def test_nature_preset_sets_the_paper_schedule_and_explicit_flags_win():
    nature = Config.from_flags({"preset": "nature", "out_dir": "x"})
    assert (nature.memory_capacity_transitions, nature.learning_starts_steps,
            nature.target_update_steps, nature.eps_end, nature.eps_decay_steps) == (
        1_000_000, 50_000, 10_000, 0.1, 250_000)
    assert (nature.n_step, nature.double, nature.dueling) == (1, False, False)
    mixed = Config.from_flags({"preset": "nature", "target_update_steps": 500, "out_dir": "x"})
    assert mixed.target_update_steps == 500 and mixed.memory_capacity_transitions == 1_000_000


def test_tuned_preset_is_the_field_defaults():
    assert Config.from_flags({"out_dir": "x"}) == Config(out_dir="x")
    tuned = Config(out_dir="x")
    assert (tuned.n_step, tuned.double, tuned.dueling) == (3, True, True)


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="--preset"):
        Config.from_flags({"preset": "rainbow", "out_dir": "x"})


def test_configs_from_before_the_architecture_flags_load_with_todays_architecture():
    values = json.loads(Config(out_dir="x").to_json())
    for name in ("head", "n_quantiles", "network", "augment", "reset_every_steps"):
        del values[name]
    config = Config.from_json(json.dumps(values))
    assert (config.head, config.network, config.augment, config.reset_every_steps) == (
        "scalar", "nature", False, 0)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_saved_config_with_the_retired_overlap_setting_loads_without_it(overlap):
    values = {**json.loads(Config(out_dir="x").to_json()), "overlap": overlap}
    assert Config.from_json(json.dumps(values)) == Config(out_dir="x")


def test_a_saved_config_with_an_unknown_setting_is_refused():
    values = {**json.loads(Config(out_dir="x").to_json()), "no_such_setting": 1}
    with pytest.raises(ConfigError, match="unknown settings in the saved config"):
        Config.from_json(json.dumps(values))


def test_every_setting_is_in_one_section_and_help_lists_the_flags_by_section():
    by_section = sections()
    names = [name for section in by_section.values() for name in section]
    assert names == [f.name for f in dataclasses.fields(Config)]  # each once, in order
    assert list(by_section) == list(SECTION_STARTS.values())
    assert by_section["Ape-X"] == ["actors", "ray_address"]
    assert "n_quantiles" in by_section["network and head"]
    help_text = main.build_parser().format_help()
    groups = [line[:-1] for line in help_text.splitlines() if line.endswith(":")
              and line[:-1] in by_section]
    assert groups == list(by_section)
    # a flag is listed under its own section's heading
    assert help_text.index("\n  --quantiles") > help_text.index("network and head:")
    assert help_text.index("\n  --quantiles") < help_text.index("replay memory:")


def test_a_new_run_refuses_the_flags_of_the_other_kind_of_run_in_one_place():
    with pytest.raises(ConfigError, match="--updates is for offline training"):
        Config.from_flags({"total_updates": 5})
    with pytest.raises(ConfigError, match="--steps, --envs cannot be given with --offline"):
        Config.from_flags({"offline": "data.bin", "total_steps": 5, "envs": 2})
    with pytest.raises(ConfigError, match="--prioritized cannot be used with --loss bc"):
        Config.from_flags({"offline": "data.bin", "loss": "bc", "prioritized": True})
    assert Config.from_flags({"offline": "data.bin", "total_updates": 5}).total_updates == 5
