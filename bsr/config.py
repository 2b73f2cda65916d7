"""Loading YAML configs and validating them against JSON schemas, with errors that name the key."""
from __future__ import annotations

import csv
import math
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from bsr import BsrError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `2e-4` (no dot) as a string; researchers write learning rates that way.

    YAML's `<<` merge is shallow: `{<<: *arm, train: {lr: 5e-4}}` replaces the whole `train` mapping of the
    anchor, silently dropping its other keys. Such a merge is refused; experiments extend a named base with
    `base:`, which is deep-merged."""

    def flatten_mapping(self, node):
        merged = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    self.flatten_mapping(source)
                    merged.update({k.value: v for k, v in source.value})
        for key_node, value_node in node.value:
            shadowed = merged.get(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(value_node, yaml.MappingNode) \
                    or not isinstance(shadowed, yaml.MappingNode):
                continue
            lost = sorted({k.value for k, _ in shadowed.value} - {k.value for k, _ in value_node.value})
            if lost:
                raise ShallowMerge(f"line {key_node.start_mark.line + 1}: '{key_node.value}' replaces the whole "
                                   f"'{key_node.value}' mapping merged in with '<<' (a YAML merge is shallow), so "
                                   f"{', '.join(key_node.value + '.' + k for k in lost)} would be lost; give the "
                                   f"experiment 'base: <an entry of bases>' instead, which is deep-merged")
        super().flatten_mapping(node)

    def compose_mapping_node(self, anchor):
        """A mapping as written, refused if it gives a key twice: YAML would keep the last one silently. Checked
        once per mapping, before any `<<` merge adds its keys."""
        node = super().compose_mapping_node(anchor)
        first_line = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in first_line:
                raise DuplicateKey(f"line {line}: a second '{key_node.value}' key (the first is on line "
                                   f"{first_line[key]}): YAML would keep the last one alone; give each key once")
            first_line[key] = line
        return node


class DuplicateKey(yaml.YAMLError):
    """Valid YAML that gives one key twice in a mapping."""


class ShallowMerge(yaml.YAMLError):
    """Valid YAML whose `<<` merge would silently drop nested keys."""


class TooLarge(yaml.YAMLError):
    """Valid YAML that would expand to more values than any config holds."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


# A config is a few hundred values; YAML aliases can make a 2 KB file expand to billions ("billion laughs").
MAX_YAML_NODES = 100_000


def expanded_nodes(node: yaml.Node, sizes: dict) -> int:
    """How many nodes `node` stands for once every alias is expanded, counted without expanding any (each node
    once: an alias is the node it names)."""
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a node that contains itself counts once
        children = node.value if isinstance(node, yaml.SequenceNode) else \
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
        sizes[id(node)] = 1 + sum(expanded_nodes(child, sizes) for child in children)
    return sizes[id(node)]


def read_yaml(text: str):
    """`text` parsed, refusing one whose aliases expand past MAX_YAML_NODES before anything is built of it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            nodes = expanded_nodes(node, {})
        except RecursionError:
            nodes = math.inf
        if nodes > MAX_YAML_NODES:
            raise TooLarge(f"its aliases expand to over {MAX_YAML_NODES:,} values (nested aliases, a 'billion "
                           f"laughs'?); a config needs a few hundred")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(path) -> dict:
    path = Path(path)
    try:
        data = read_yaml(path.read_text())
    except FileNotFoundError:
        raise BsrError(f"{path}: no such config file") from None
    except (DuplicateKey, ShallowMerge, TooLarge) as err:
        raise BsrError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise BsrError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise BsrError(f"{path}: expected a mapping at the top level")
    return data


def key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


# JSON Schema counts 2.0 as an integer; bsr does not: `scale: 2.0` named paths BIx2.0, and `batch: 4.0` failed in
# training with a traceback.
StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))


def integer_as_float(err: jsonschema.ValidationError) -> bool:
    """A whole number written as a float (2.0) where the schema wants an integer."""
    expected = err.validator_value if err.validator == "type" else []
    return "integer" in ([expected] if isinstance(expected, str) else expected) \
        and isinstance(err.instance, float) and err.instance.is_integer()


def validate(cfg: dict, schema: dict, source: str) -> dict:
    """Validate `cfg` in place, filling schema defaults; raise one readable error naming the key (of a key's
    errors, "write it as an integer" last: a range error says what to write instead)."""
    validator = StrictValidator(schema)
    errors = sorted(validator.iter_errors(cfg),
                    key=lambda e: (len(e.absolute_path), str(e.absolute_path), integer_as_float(e)))
    if errors:
        err = errors[0]
        if integer_as_float(err):
            raise BsrError(f"{source}: {key_path(err)}: {err.instance} is not an integer (write {int(err.instance)})")
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            where = key_path(err)
            keys = ", ".join(f"{where}.{k}" if where != "<top level>" else k for k in extra)
            raise BsrError(f"{source}: unknown key {keys} (allowed: {', '.join(sorted(err.schema['properties']))})")
        raise BsrError(f"{source}: {key_path(err)}: {err.message}")
    fill_defaults(cfg, schema)
    return cfg


def fill_defaults(cfg: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in cfg and "default" in sub:
            cfg[key] = sub["default"]
        if isinstance(cfg.get(key), dict):
            fill_defaults(cfg[key], sub)


@lru_cache(maxsize=None)
def package_schema(name: str) -> dict:
    """A schema shipped with the package, parsed once (experiments are resolved many times per DAG); read-only."""
    return yaml.safe_load(resources.files("bsr.schemas").joinpath(f"{name}.schema.yaml").read_text())


EXPERIMENT_SECTIONS = ("model", "loss", "sampling", "train")
# Relative to the folder the pipeline runs in: the project folder.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# The registry's model name of an experiment, when the config's `registry.model` does not say.
DEFAULT_REGISTERED_MODEL = "bsr-{experiment}"


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


def experiment_entry(cfg: dict, name: str, source: str = "config") -> dict:
    """An experiment as written, deep-merged over the entry of `bases` that its `base` names (the `base` key
    stays, so that dvc.yaml can track that entry too)."""
    exp = cfg["experiments"][name]
    if "base" not in exp:
        return exp
    if exp["base"] not in cfg.get("bases", {}):
        raise BsrError(f"{source}: experiments.{name}.base: {exp['base']!r} is not a key of bases "
                       f"(have: {', '.join(cfg.get('bases', {})) or 'none'})")
    return deep_merge(cfg["bases"][exp["base"]], exp)


def expand_bases(cfg: dict, source: str) -> None:
    """Every experiment merged over its base, in place (idempotent), for the code that reads them raw."""
    for name in cfg["experiments"]:
        cfg["experiments"][name] = experiment_entry(cfg, name, source)


def experiment_test_sets(cfg: dict, name: str) -> list[str]:
    return experiment_entry(cfg, name).get("test_sets", cfg["test_sets"])


# ---- replicates: one experiment trained with N seeds --------------------------------------------------------
# Replicate 0 is the experiment itself (its run, paths and resolved config are those of `replicates: 1`, so that
# raising N trains only the new seeds); replicate k >= 1 is the run "<experiment>-r<k>".
REPLICATE_MARK = "-r"


def replicate_count(cfg: dict, name: str) -> int:
    """N of an experiment: its own (or its base's) `replicates`, else `defaults.replicates`, else 1."""
    return experiment_entry(cfg, name).get("replicates", cfg["defaults"].get("replicates", 1))


def run_names(cfg: dict, name: str) -> list[str]:
    """The training runs of an experiment, replicate 0 first."""
    return [name] + [f"{name}{REPLICATE_MARK}{k}" for k in range(1, replicate_count(cfg, name))]


def split_run(cfg: dict, run: str, source: str = "config") -> tuple[str, int]:
    """(experiment, replicate index) of a run name."""
    if run in cfg["experiments"]:
        return run, 0
    name, mark, index = run.rpartition(REPLICATE_MARK)
    if mark and name in cfg["experiments"] and index.isdigit() and run in run_names(cfg, name):
        return name, int(index)
    raise BsrError(f"{source}: no experiment {run!r} (have: {', '.join(cfg['experiments'])}; replicate k of an "
                   f"experiment with replicates: N > k is <experiment>{REPLICATE_MARK}<k>)")


def replicate_seed(seed: int, index: int) -> int:
    """The training seed of replicate `index` (0: `seed` itself): a 63-bit draw of numpy's SeedSequence keyed by
    (seed, index), so that no replicate shares a stream with another, nor with an experiment seeded `seed + k`."""
    if index == 0:
        return seed
    import numpy as np

    high, low = np.random.SeedSequence(seed, spawn_key=(REPLICATE_SPAWN_KEY, index)).generate_state(2, np.uint32)
    return int((int(high) << 32 | int(low)) >> 1)


# Keeps the replicates' streams apart from the DDP ranks', which spawn from a seed with the key (rank,).
REPLICATE_SPAWN_KEY = 0x5EED


def resolve_experiment(cfg: dict, name: str, source: str = "config", keys: list | None = None) -> dict:
    """One experiment of a pipeline config, merged over `defaults`, with its data paths: what `bsr train` reads.
    `keys` receives the config keys read (that exist), as dotted paths: dvc.yaml's params of the experiment."""
    from bsr import layout

    read = [] if keys is None else keys
    run, (name, replicate) = name, split_run(cfg, name, source)
    exp = experiment_entry(cfg, name, source)
    read += [f"experiments.{name}", *([f"bases.{exp['base']}"] if "base" in exp else [])]
    d, scale, kind = cfg["data_dir"], exp.get("scale"), exp.get("degradation")
    resolved = {"name": run, "scale": scale, "degradation": kind}
    for section in EXPERIMENT_SECTIONS:
        resolved[section] = deep_merge(cfg["defaults"][section], exp.get(section, {}))
        read.append(f"defaults.{section}")
    if replicate:
        seed = resolved["train"]["seed"]
        resolved["train"]["seed"] = replicate_seed(seed, replicate)
        resolved["replicate"] = {"experiment": name, "index": replicate, "base_seed": seed}
        read += [key for key in ("defaults.replicates",) if "replicates" in cfg["defaults"]]
    resolved["data"] = {
        "train_hr": [layout.hr_dir(d, s) for s in cfg["train_sets"]],
        "train_lr": [layout.lr_dir(d, s, kind, scale) for s in cfg["train_sets"]],
        "train_pic": [layout.pic_dir(d, s, kind, scale, resolved["sampling"]["pic_reduce"]) for s in cfg["train_sets"]],
        "val_hr": layout.hr_dir(d, cfg["val_set"]),
        "val_lr": layout.lr_dir(d, cfg["val_set"], kind, scale),
    }
    read += ["data_dir", "train_sets", "val_set"]
    registry = cfg.get("registry", {})
    model_name = registry.get("model", DEFAULT_REGISTERED_MODEL)  # null: models are logged, none registered
    # Replicate 0 alone is registered: bsr upscale and export of models:/NAME@ALIAS take the experiment's model.
    registered = model_name.replace("{experiment}", name) if model_name and not replicate else None
    resolved["tracking"] = {"uri": cfg.get("tracking_uri"), "default_uri": DEFAULT_TRACKING_URI,
                            "experiment": cfg["name"], "registered_model": registered,
                            "model_alias": (registry.get("alias") or cfg["name"]) if registered else None,
                            # which file the run came from, which training tags its MLflow run with
                            "config": cfg.get("_file"), "parent_config": cfg.get("extends")}
    read += ["name", *(key for key in ("tracking_uri", "registry") if key in cfg)]
    return check_experiment(resolved, f"{source}: experiments.{name}")


def non_finite_keys(value, path: str = ""):
    """Key paths of NaN and infinite numbers, which JSON schema comparisons let through."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        if isinstance(value, float) and not math.isfinite(value):
            yield path
        return
    for key, item in items:
        yield from non_finite_keys(item, f"{path}.{key}" if path else str(key))


def check_experiment(exp: dict, source: str) -> dict:
    """Validate a resolved experiment against its schema, then what a schema cannot say; each error names
    the key. Everything refused here would fail later in training, or silently do the wrong thing."""
    validate(exp, package_schema("experiment"), source)
    s = exp["sampling"]
    problems = [(key, "must be a finite number") for key in non_finite_keys(exp)]
    if exp["degradation"] == "BD" and exp["scale"] % 2 == 0:
        problems.append(("degradation", f"BD is defined for odd scales (it keeps every s-th pixel from s // 2, "
                                        f"the blur's centre only when s is odd), not x{exp['scale']}"))
    if not s["range_quantiles"][0] < s["range_quantiles"][1]:
        problems.append(("sampling.range_quantiles", f"must increase, got {s['range_quantiles']}"))
    quota = s.get("quota")
    if quota is not None and len(quota) != s["intervals"]:
        problems.append(("sampling.quota", f"has {len(quota)} weights for {s['intervals']} intervals"))
    elif quota is not None and sum(quota) <= 0:
        problems.append(("sampling.quota", "weights sum to 0: no interval would get a patch"))
    if problems:
        key, message = problems[0]
        raise BsrError(f"{source}: {key}: {message}")
    return exp


def check_pipeline(cfg: dict, source: str = "config") -> dict:
    """Validate a pipeline config against its schema, then resolve every experiment (which checks the
    experiment sections key by key) and every dataset reference: all errors before any job starts."""
    validate(cfg, package_schema("config"), source)
    expand_bases(cfg, source)
    for name, exp in cfg["experiments"].items():
        validate(exp, package_schema("config")["$defs"]["complete_experiment"], f"{source}: experiments.{name}")
    references = [("val_set", cfg["val_set"])]
    references += [(f"{key}.{i}", d) for key in ("train_sets", "test_sets") for i, d in enumerate(cfg[key])]
    references += [(f"experiments.{name}.test_sets.{i}", d) for name, exp in cfg["experiments"].items()
                   for i, d in enumerate(exp.get("test_sets", []))]
    for key, dataset in references:
        if dataset not in cfg["datasets"]:
            raise BsrError(f"{source}: {key}: {dataset!r} is not a key of datasets")
    check_run_names(cfg, source)
    check_labels(cfg, source)
    check_published(cfg, source)
    for name, exp in cfg["experiments"].items():
        resolve_experiment(cfg, name, source)
        if exp.get("self_ensemble") and "ablation" in exp:
            raise BsrError(f"{source}: experiments.{name}.self_ensemble: the ablation compares plain arms; the ×8 "
                           "self-ensemble is a row of BSR or of a baseline (method) only")
    return cfg


def check_run_names(cfg: dict, source: str) -> None:
    """No experiment may be named like a replicate run of another (<experiment>-r<k>): the two would be one run."""
    for name in cfg["experiments"]:
        for index, run in enumerate(run_names(cfg, name)[1:], 1):
            if run in cfg["experiments"]:
                raise BsrError(f"{source}: experiments.{run}: is the name of replicate {index} of experiments.{name} "
                               f"(replicates: {replicate_count(cfg, name)}); rename the experiment")


@lru_cache(maxsize=None)
def published_methods() -> frozenset[str]:
    """The method rows of the paper's tables (bsr/paper/bsr_tables.tsv)."""
    text = resources.files("bsr.paper").joinpath("bsr_tables.tsv").read_text()
    return frozenset(row["method"] for row in csv.DictReader(text.splitlines(), delimiter="\t"))


def published_label_key(label: str) -> str:
    """A row label as the report's reader tells it apart: case and runs of spaces are no difference."""
    return " ".join(label.split()).casefold()


def published_spelling(label: str) -> str | None:
    """The paper's method row that `label` reads as (case and spaces aside), in the paper's spelling; else None."""
    return next((m for m in published_methods() if published_label_key(m) == published_label_key(label)), None)


def published_entries(cfg: dict) -> list[tuple[str, str, str, int]]:
    """(method, test set, degradation, scale) of every released output set the config re-scores."""
    return [(method, e["dataset"], e["degradation"], e["scale"])
            for method, entries in cfg.get("published", {}).items() for e in entries]


def published_entry(cfg: dict, method: str, dataset: str, kind: str, scale) -> dict:
    return next(e for e in cfg["published"][method]
                if (e["dataset"], e["degradation"], str(e["scale"])) == (dataset, kind, str(scale)))


def check_published(cfg: dict, source: str) -> None:
    """Each released output set is a paper method's, for a cell the paper's table holds, scored against one of the
    config's datasets, once, with a --match pattern that `bsr score` takes. No dataset is named like the
    released outputs' download (bsr.stages: published-<method>-<set>-<BIx2>): the two would share their
    datasets.lock entry and manual folder."""
    for name in cfg["datasets"]:
        if name.startswith("published-"):
            raise BsrError(f"{source}: datasets.{name}: a name starting 'published-' is that of released outputs "
                           "(their datasets.lock entry and manual folder); rename the dataset")
    if not cfg.get("published"):
        return
    from bsr.score import check_pattern

    text = resources.files("bsr.paper").joinpath("bsr_tables.tsv").read_text()
    cells = {(r["method"], r["dataset"], r["degradation"], int(r["scale"]))
             for r in csv.DictReader(text.splitlines(), delimiter="\t")}
    seen = set()
    for method, entries in cfg.get("published", {}).items():
        for i, entry in enumerate(entries):
            key, where = f"published.{method}.{i}", (method, entry["dataset"], entry["degradation"], entry["scale"])
            if method not in published_methods():
                paper = published_spelling(method)
                raise BsrError(f"{source}: published.{method}: not a method of the paper's tables; " + (
                    f"the paper writes it {paper!r}" if paper else f"have: {', '.join(sorted(published_methods()))}"))
            if entry["dataset"] not in cfg["datasets"]:
                raise BsrError(f"{source}: {key}.dataset: {entry['dataset']!r} is not a key of datasets")
            if where not in cells:
                raise BsrError(f"{source}: {key}: the paper's table has no {method} cell for {entry['dataset']} "
                               f"{entry['degradation']} ×{entry['scale']} to compare with")
            if where in seen:
                raise BsrError(f"{source}: {key}: a second entry for {method} on {entry['dataset']} "
                               f"{entry['degradation']} ×{entry['scale']}")
            seen.add(where)
            try:
                check_pattern(entry.get("match", "{stem}"))
            except BsrError as err:
                raise BsrError(f"{source}: {key}.match: {err}") from None


def check_labels(cfg: dict, source: str) -> None:
    """Row labels that the report keys its tables by must not collide: a `method` named like a published method
    (or like our own rows, "... (ours)") would overwrite the paper's cells with ours, and two arms of one
    `ablation` label, or two baselines of one `method` at one degradation and scale, would hide one of them.
    Labels are compared as a reader tells them apart (published_label_key): "rcan " is the paper's RCAN row."""
    taken: dict[tuple, str] = {}
    for name, exp in cfg["experiments"].items():
        if "method" in exp and (published_spelling(exp["method"])
                                or published_label_key(exp["method"]).endswith("(ours)")):
            raise BsrError(f"{source}: experiments.{name}.method: {exp['method']!r} is a row of the paper's tables "
                           "or one of ours; name the baseline otherwise (e.g. EDSR-baseline)")
        for key, label in [(k, exp[k]) for k in ("method", "ablation") if k in exp]:
            read = published_label_key(label)
            where = (key, read) if key == "ablation" else (key, read, exp.get("degradation"), exp.get("scale"))
            if where in taken:
                other, first = taken[where]
                both = f"both {label!r}" if first == label else f"{first!r} and {label!r}, which read as one"
                raise BsrError(f"{source}: experiments.{other}.{key} and experiments.{name}.{key} are {both}: "
                               "each row of the report needs its own label")
            taken[where] = name, label


def snakemake_config_path(configfiles, overrides, cwd=".") -> str:
    """The config file of a Snakemake run, as the jobs name it: every job runs a `bsr` verb that reads the file
    itself (as under DVC), so the file must hold the whole config."""
    if overrides:
        raise BsrError(f"--config {' '.join(f'{k}=...' for k in overrides)}: the jobs read the config file, which "
                       "would not have this value; put it in a copy of the config and pass that with --configfile")
    if len(configfiles) != 1:
        raise BsrError(f"{len(configfiles)} config files ({', '.join(map(str, configfiles))}): pass one "
                       "--configfile; the jobs read the file, and bsr does not merge several")
    return project_path(configfiles[0], cwd)


def project_path(path, cwd=".") -> str:
    """A config file's path as every job, record and check names it: relative to the project folder (the
    working folder), in POSIX form, with no `.` or doubled `/` (`./config//x.yaml`, and its absolute path, are
    `config/x.yaml`); absolute only outside the project. Two spellings of one file would be two configs whose
    job commands differ, so that each run would redo the other's jobs."""
    cwd = Path(os.path.abspath(cwd))
    absolute = Path(os.path.normpath(cwd / path))
    if not absolute.is_relative_to(cwd):  # a link to the project folder, or the folder through a link
        absolute, cwd = (cwd / path).resolve(), cwd.resolve()
    return absolute.relative_to(cwd).as_posix() if absolute.is_relative_to(cwd) else absolute.as_posix()


def load_pipeline(path) -> dict:
    """A pipeline config, checked; a variant (`extends:`) merged over its parent, its jobs shared with it. Its
    path (cfg["_file"]) is the project's (`project_path`)."""
    from bsr.variants import config_chain, pipeline_of_chain

    return pipeline_of_chain(config_chain(project_path(path)))


def experiment_from_file(path, experiment: str | None = None) -> dict:
    """An experiment config file, or one experiment of a pipeline config (default: its first)."""
    cfg = load_yaml(path)
    if "experiments" not in cfg and "extends" not in cfg:
        if experiment:
            raise BsrError(f"{path}: an experiment config; --experiment applies to pipeline configs only")
        return check_experiment(cfg, str(path))
    cfg = load_pipeline(path)
    return resolve_experiment(cfg, experiment or next(iter(cfg["experiments"])))


def write_experiment(resolved: dict, path) -> None:
    from bsr.files import write_text

    write_text(path, yaml.safe_dump(resolved, sort_keys=False))


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params and table columns."""
    flat = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
