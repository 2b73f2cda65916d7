"""Config loading: experiments that extend a base keep every key they do not override."""
import re

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


# ---- issue 22 (helper E): integers are integers; labels compared as the report shows them ---------------

def integer_keys(schema: dict, root: dict | None = None, path: tuple = ()):
    """(key path, subschema) of every integer key of a schema; "*" stands for any name of a mapping, 0 for any
    item of an array. References (#/...) are followed within the schema."""
    root = root or schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    types = schema.get("type", [])
    if "integer" in ([types] if isinstance(types, str) else types):
        yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from integer_keys(sub, root, (*path, key))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from integer_keys(schema["additionalProperties"], root, (*path, "*"))
    if isinstance(schema.get("items"), dict):
        yield from integer_keys(schema["items"], root, (*path, 0))


def set_as_float(cfg: dict, path: tuple, schema: dict) -> str:
    """Give the key at `path` (wildcards: the mapping's first name, the array's first item) a whole number as a
    float, its own value if it has one; its dotted path."""
    node, names = cfg, []
    for part in path[:-1]:
        part = next(iter(node)) if part == "*" else part
        node = node[part] if isinstance(node, list) else node.setdefault(part, {})
        names.append(str(part))
    last = next(iter(node)) if path[-1] == "*" else path[-1]
    whole = node.get(last) if isinstance(node.get(last), int) else schema.get("enum", [schema.get("minimum", 1)])[0]
    node[last] = float(whole)
    return ".".join([*names, str(last)])


def test_every_integer_key_of_the_config_schema_refuses_a_float(shared_data, tmp_path):
    """jsonschema's `integer` takes 2.0, which became paths like BIx2.0 and tracebacks in training."""
    from bsr.config import check_pipeline, package_schema
    from tests.conftest import tiny_pipeline_config

    def full_config() -> dict:  # every optional section present, so that each integer key has a place
        cfg = tiny_pipeline_config(shared_data)
        cfg["defaults"]["replicates"] = 1
        cfg["bases"] = {"x2": {"scale": 2, "replicates": 1}}
        cfg["experiments"]["BI_x2"].update(base="x2", replicates=2)
        cfg["published"] = {"RCAN": [{"dataset": "Set5", "degradation": "BI", "scale": 2, "source": "manual"}]}
        return cfg

    check_pipeline(full_config())
    keys = list(integer_keys(package_schema("config")))
    assert len(keys) >= 10, keys
    for path, schema in keys:
        cfg = full_config()
        key = set_as_float(cfg, path, schema)
        with pytest.raises(BsrError) as refused:
            check_pipeline(cfg, "x.yaml")
        assert str(refused.value).startswith(f"x.yaml: {key}: ") and "is not an integer" in str(refused.value)
        assert "\n" not in str(refused.value)


def test_every_integer_key_of_the_experiment_schema_refuses_a_float(shared_data):
    from bsr.config import check_experiment, check_pipeline, package_schema
    from tests.conftest import tiny_pipeline_config

    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"]["BI_x2"]["replicates"] = 2
    cfg["defaults"]["model"]["n_blocks"] = 4
    resolved = resolve_experiment(check_pipeline(cfg), "BI_x2-r1")  # a replicate: replicate.* are set
    keys = list(integer_keys(package_schema("experiment")))
    assert {".".join(map(str, path)) for path, _ in keys} >= {"scale", "model.channels", "train.batch",
                                                               "train.seed", "replicate.index", "train.threads"}
    for path, schema in keys:
        exp = yaml.safe_load(yaml.safe_dump(resolved))
        key = set_as_float(exp, path, schema)
        with pytest.raises(BsrError, match=rf"^x.yaml: {key}: [0-9.e+]+ is not an integer"):
            check_experiment(exp, "x.yaml")


@pytest.mark.parametrize("text, key", [
    ("experiments:\n  BI_x2: {replicates: 1e2}\n", "experiments.BI_x2.replicates"),
    ("experiments:\n  BI_x2: {scale: 2.0}\n", "experiments.BI_x2.scale"),
    ("defaults:\n  model: {channels: 8.0}\n", "experiments.BD_x3: model.channels"),
    ("defaults:\n  train: {batch: 4.0}\n", "experiments.BD_x3: train.batch"),
])
def test_a_whole_number_written_as_a_float_is_refused_naming_the_file_and_key(shared_data, tmp_path, text, key):
    from bsr.config import deep_merge
    from tests.conftest import tiny_pipeline_config

    path = tmp_path / "floats.yaml"
    path.write_text(yaml.safe_dump(deep_merge(tiny_pipeline_config(shared_data), yaml.safe_load(text))))
    with pytest.raises(BsrError, match=rf"^{path}: {key}: [0-9.]+ is not an integer \(write [0-9]+\)$"):
        load_pipeline(path)


@pytest.mark.parametrize("label", ["RCAN ", "rcan", " Rcan", "BSR  (ours)", "bsr (Ours)", "Bi-Cubic"])
def test_a_method_label_that_differs_from_a_paper_row_only_in_case_or_spaces_is_refused(shared_data, label):
    from bsr.config import check_pipeline
    from tests.conftest import tiny_pipeline_config

    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"]["other"] = {"scale": 2, "degradation": "BI", "method": label}
    with pytest.raises(BsrError, match=rf"^config: experiments.other.method: {re.escape(repr(label))} .*row of the "
                                       r"paper's tables or one of ours"):
        check_pipeline(cfg)


@pytest.mark.parametrize("method, paper", [("rcan", "RCAN"), ("Edsr", "EDSR"), ("bi-cubic", "Bi-cubic")])
def test_a_published_method_spelled_unlike_the_paper_names_the_paper_spelling(shared_data, method, paper):
    from bsr.config import check_pipeline
    from tests.conftest import tiny_pipeline_config

    cfg = tiny_pipeline_config(shared_data)
    cfg["published"] = {method: [{"dataset": "Set5", "degradation": "BI", "scale": 2, "source": "manual"}]}
    with pytest.raises(BsrError, match=rf"^config: published.{method}: not a method of the paper's tables; "
                                       rf"the paper writes it {paper!r}$"):
        check_pipeline(cfg)


def test_two_ablation_labels_that_differ_only_in_case_or_spaces_are_one_row(shared_data):
    from bsr.config import check_pipeline
    from tests.conftest import tiny_pipeline_config

    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"]["ablation_wo_rfs"]["ablation"] = "BaseLine "
    with pytest.raises(BsrError, match=r"^config: experiments.ablation_baseline.ablation and experiments."
                                       r"ablation_wo_rfs.ablation are 'Baseline' and 'BaseLine ', which read as one"):
        check_pipeline(cfg)


def test_a_dataset_named_like_a_published_entrys_lock_key_is_refused(shared_data):
    """`published-RCAN-Set5-BIx2` is the datasets.lock key (and manual folder) of RCAN's released Set5 ×2 outputs."""
    from bsr.config import check_pipeline
    from tests.conftest import tiny_pipeline_config

    cfg = tiny_pipeline_config(shared_data)
    cfg["datasets"]["published-RCAN-Set5-BIx2"] = cfg["datasets"]["Set5"]
    with pytest.raises(BsrError, match=r"^config: datasets.published-RCAN-Set5-BIx2: a name starting 'published-' "):
        check_pipeline(cfg)
    cfg["datasets"]["published_RCAN"] = cfg["datasets"].pop("published-RCAN-Set5-BIx2")
    check_pipeline(cfg)
