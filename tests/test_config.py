"""Config loading: experiments that extend a base keep every key they do not override."""
import pytest
import yaml

from bsr import BsrError
from bsr.config import load_pipeline, load_yaml, resolve_experiment
from tests.conftest import REPO


def paper_config_with(tmp_path, old: str, new: str):
    text = (REPO / "config" / "config.yaml").read_text()
    assert old in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_an_arm_that_overrides_one_training_key_keeps_its_base_iterations(tmp_path):
    path = paper_config_with(tmp_path, "ablation_wo_rfs: {base: ablation, ablation: w/o RFS,",
                             "ablation_wo_rfs: {base: ablation, train: {lr: 5.0e-4}, ablation: w/o RFS,")
    arm = resolve_experiment(load_pipeline(path), "ablation_wo_rfs")
    assert arm["train"]["lr"] == 5e-4 and arm["train"]["iterations"] == 100_000
    assert arm["train"]["lr_step_epochs"] == 50 and arm["scale"] == 4 and arm["sampling"]["rfs"] is False


def test_a_shallow_yaml_merge_that_drops_keys_is_refused(tmp_path):
    """YAML's `<<` replaces a nested mapping whole: with the paper config, 100k iterations became 300k."""
    path = tmp_path / "config.yaml"
    path.write_text("arm: &arm\n  scale: 4\n  train: {iterations: 200, lr_step_epochs: 50}\n"
                    "experiments:\n  wo_rfs: {<<: *arm, train: {lr: 5.0e-4}}\n")
    with pytest.raises(BsrError, match=r"config.yaml: line 5: 'train' replaces the whole 'train' mapping .* so "
                                       r"train.iterations, train.lr_step_epochs would be lost"):
        load_yaml(path)
    path.write_text("arm: &arm\n  scale: 4\n  train: {iterations: 200}\nexperiments:\n  ok: {<<: *arm, scale: 2}\n"
                    "  restated: {<<: *arm, train: {iterations: 100, lr: 5.0e-4}}\n")
    experiments = load_yaml(path)["experiments"]  # nothing dropped: accepted
    assert experiments["ok"] == {"scale": 2, "train": {"iterations": 200}}
    assert experiments["restated"]["train"] == {"iterations": 100, "lr": 5e-4}


def test_an_unknown_base_names_the_key(tmp_path):
    path = paper_config_with(tmp_path, "ablation_l2: {base: ablation,", "ablation_l2: {base: ablaton,")
    with pytest.raises(BsrError, match="experiments.ablation_l2.base: 'ablaton' is not a key of bases"):
        load_pipeline(path)


def test_bases_are_expanded_once_and_stay_named(tmp_path):
    cfg = load_pipeline(REPO / "config" / "config.yaml")
    arm = cfg["experiments"]["ablation_l2"]
    assert arm["base"] == "ablation" and arm["train"]["iterations"] == 100_000 and arm["test_sets"] == ["Set5"]
    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text())["experiments"]["ablation_l2"]["base"]
