"""Variant configs: a config that says `extends: PARENT` and gives only what it changes.

A variant is its parent's file deep-merged with its own (mappings merge key by key, any other value replaces the
parent's, as `bases` do); its `name` defaults to its file's stem. It keeps its parent's `data_dir`, and so shares
its data, unless it gives its own.

What a change leaves alone is computed once, by the parent's jobs, and never rewritten: a variant's job table
takes the parent's own record of every job whose work is the same (its command still names the parent's
config, so Snakemake finds nothing to rerun and DVC finds the stage in the parent's dvc.yaml). That is each
download, degraded set, PIC table set and bicubic score of the shared `data_dir`, each training run whose
resolved experiment (all but its MLflow names) is unchanged, and the evaluations and replicate summaries of
those runs. They are reused in place, neither copied nor linked. Every other job of the variant writes under
`<data_dir>/variants/<name>/` (runs, evaluations, logs), and its report goes to reports/<name>.

Plan time (Snakemake, `bsr dvc-yaml`) refuses a config whose outputs would overwrite another config's, naming
both and a path: two configs of one `data_dir` or one `name` that do not extend one another, and a dvc.yaml
stage that another dvc.yaml declares.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import yaml

from bsr import BsrError, layout
from bsr.config import check_pipeline, deep_merge, load_yaml, resolve_experiment

# A variant's own runs, evaluations and logs: <data_dir>/variants/<name>/.
VARIANTS_FOLDER = "variants"
# Where `plan_checks` looks for other configs besides the config's own folder.
CONFIG_FOLDER = "config"


def config_chain(path) -> list[tuple[str, dict]]:
    """(path, file as written) of a config and each config it extends, the root first."""
    chain, seen = [], []
    while True:
        raw = load_yaml(path)
        if Path(path).resolve() in seen:
            raise BsrError(f"{chain[0][0]}: extends itself ({' → '.join(str(p) for p, _ in chain)} → {path})")
        seen.append(Path(path).resolve())
        chain.append((str(path), raw))
        parent = raw.get("extends")
        if parent is None:
            return chain[::-1]
        if not isinstance(parent, str) or not parent.strip():
            raise BsrError(f"{path}: extends: expected the path of a config file, got {parent!r}")
        if not Path(parent).is_file():
            raise BsrError(f"{path}: extends: {parent}: no such config file (relative to the project folder, "
                           f"{Path.cwd()})")
        path = parent


def merged_config(chain: list[tuple[str, dict]]) -> dict:
    """The chain's files deep-merged, root first; each variant named after its file unless it says otherwise."""
    merged = {}
    for i, (path, raw) in enumerate(chain):
        own = {key: value for key, value in raw.items() if key != "extends"}
        if i and "name" not in own:
            own["name"] = Path(path).stem
        merged = deep_merge(merged, own)
    return merged


def load_variant(path) -> dict:
    """A variant config, checked like any config, with what it shares with its parent (`add_shared_jobs`) in
    cfg["_variant"] (a key no config file may have)."""
    from bsr.config import load_pipeline

    chain = config_chain(path)
    cfg = check_pipeline(merged_config(chain), str(path))
    parent_path = chain[-2][0]
    parent = load_pipeline(parent_path)
    if cfg["name"] == parent["name"]:
        raise BsrError(f"{path}: name: {cfg['name']!r} is its parent's ({parent_path}): the two reports and MLflow "
                       "experiments would be one; leave name out (it defaults to the file's stem) or give another")
    shared = cfg["data_dir"] == parent["data_dir"]
    cfg["extends"] = parent_path
    cfg["_variant"] = {"parent": parent, "parent_path": parent_path, "files": dict(chain), "shared": set(),
                       "work_dir": str(PurePosixPath(cfg["data_dir"]) / VARIANTS_FOLDER / cfg["name"])
                       if shared else cfg["data_dir"]}
    if shared:
        check_shared_datasets(cfg, parent, str(path), parent_path)
        add_shared_jobs(cfg, parent)
    return cfg


def check_shared_datasets(cfg: dict, parent: dict, path: str, parent_path: str) -> None:
    """A dataset (or released output set) of the shared data_dir is the parent's download: a variant may add
    them, not change one."""
    for method in cfg.get("published", {}).keys() & parent.get("published", {}).keys():
        ours, theirs = cfg["published"][method], parent["published"][method]
        for entry in ours:
            where = (entry["dataset"], entry["degradation"], entry["scale"])
            same = [e for e in theirs if (e["dataset"], e["degradation"], e["scale"]) == where]
            if same and same[0] != entry:
                raise BsrError(f"{path}: published.{method} {where[0]} {where[1]} ×{where[2]} differs from its "
                               f"parent's ({parent_path}), which downloads it into the shared data_dir; give the "
                               "variant a data_dir of its own to change it")
    for name in cfg["datasets"].keys() & parent["datasets"].keys():
        if cfg["datasets"][name] != parent["datasets"][name]:
            raise BsrError(f"{path}: datasets.{name} differs from its parent's ({parent_path}), whose download "
                           f"writes {layout.hr_dir(cfg['data_dir'], name)}: a variant shares its parent's data; give "
                           "it a data_dir of its own to change a dataset")


def without_tracking(resolved: dict) -> dict:
    """A resolved experiment but for its MLflow names: the same training under another config's experiment."""
    return {key: value for key, value in resolved.items() if key != "tracking"}


def add_shared_jobs(cfg: dict, parent: dict) -> None:
    """Into cfg["_variant"]["shared"], the (stage, wildcards) jobs of `cfg` that its parent's records do: the
    same work on the same files. The replicate summaries come last, as their inputs are found through the rest."""
    from bsr import stages

    ours, theirs = stages.job_matrix(cfg), stages.job_matrix(parent)
    shared = cfg["_variant"]["shared"]
    for stage in ("download", "degrade", "pic", "bicubic", "published", "score"):  # outputs: the wildcards
        shared |= {stages.job_key(stage, w) for w in ours[stage] if w in theirs[stage]}
    same_runs = {w["experiment"] for w in ours["train"] if w in theirs["train"]
                 and without_tracking(resolve_experiment(cfg, w["experiment"]))
                 == without_tracking(resolve_experiment(parent, w["experiment"]))}
    for stage in ("experiment_config", "train", "evaluate", "evaluate_self_ensemble"):
        shared |= {stages.job_key(stage, w) for w in ours[stage] if w in theirs[stage]
                   and w["experiment"] in same_runs}
    shared |= {stages.job_key("aggregate", w) for w in ours["aggregate"] if w in theirs["aggregate"]
               and stages.aggregate_inputs(cfg, w["experiment"]) == stages.aggregate_inputs(parent, w["experiment"])}


# ---- plan-time checks: no config overwrites another's outputs ----------------------------------------------

def owned_outputs(cfg: dict, config_path: str) -> dict[str, str]:
    """Output (and log) path -> job name, of the jobs that this config's own records do (not those it shares)."""
    from bsr import stages

    return {path: job.name for job in stages.jobs(cfg, config_path) if job.config == config_path
            for path in [*job.outputs.values(), job.log]}


def other_configs(config_path: str) -> list[str]:
    """The pipeline configs of the project folder's config/ and of the config's own folder, but itself."""
    own = Path(config_path).resolve()
    candidates = sorted({*Path(CONFIG_FOLDER).glob("*.yaml"), *Path(config_path).parent.glob("*.yaml")})
    found = []
    for path in candidates:
        if path.resolve() == own:
            continue
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(raw, dict) and ("experiments" in raw or "extends" in raw):
            found.append(str(path))
    return found


def overlap(ours: dict[str, str], theirs: dict[str, str]) -> str | None:
    """A path that both write: one output of each, or one inside a folder output of the other."""
    for path in ours:
        for candidate in [path, *map(str, PurePosixPath(path).parents)]:
            if candidate in theirs:
                return candidate
    for path in theirs:
        if any(str(parent) in ours for parent in PurePosixPath(path).parents):
            return path
    return None


def plan_checks(cfg: dict, config_path: str) -> None:
    """Refuse a config that would overwrite another config's outputs or share its name (which names the report
    folder and the MLflow experiment). Configs that fail to load are skipped: they can write nothing."""
    from bsr.config import load_pipeline

    ours = owned_outputs(cfg, config_path)
    for other in other_configs(config_path):
        try:
            their_cfg = load_pipeline(other)
        except BsrError:
            continue
        if their_cfg["name"] == cfg["name"]:
            raise BsrError(f"{config_path} and {other} are both named {cfg['name']!r}: their reports "
                           f"({layout.report_dir(cfg['name'])}) and MLflow experiments would be one; give one "
                           "another name, or make it a variant (`extends:`), whose name is its file's stem")
        theirs = owned_outputs(their_cfg, other)
        if path := overlap(ours, theirs):
            raise BsrError(f"{config_path} and {other} would both write {path}: give {config_path} a data_dir "
                           f"of its own, or say `extends: {other}` in it to share what the two have in common")


def check_dvc_outputs(stages_: dict, out_path: str) -> None:
    """Refuse a dvc.yaml whose stages declare an output that another dvc.yaml of the project declares (DVC
    allows one per repository, and running one would overwrite the other's)."""
    ours = {out: name for name, stage in stages_.items() for out in stage.get("outs", [])}
    for other in sorted({Path("dvc.yaml"), *Path(CONFIG_FOLDER).glob("**/dvc.yaml")}):
        if not other.is_file() or other.resolve() == Path(out_path).resolve():
            continue
        try:
            declared = yaml.safe_load(other.read_text())["stages"]
            theirs = {(out if isinstance(out, str) else next(iter(out))): name
                      for name, stage in declared.items() for out in stage.get("outs", [])}
        except (OSError, yaml.YAMLError, TypeError, KeyError, AttributeError, StopIteration):
            continue
        if path := overlap(ours, theirs):
            raise BsrError(f"{out_path}: would declare {path}, which {other} declares (stage {theirs.get(path, '?')}):"
                           " DVC allows an output in one dvc.yaml only; make this config a variant (`extends:`) of "
                           "that file's config, or give it a data_dir of its own")
