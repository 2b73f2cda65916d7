"""Variant configs: a config that says `extends: PARENT` and gives only what it changes.

A variant is its parent's file deep-merged with its own (mappings merge key by key, any other value replaces the
parent's, as `bases` do); its `name` defaults to its file's stem. It keeps its parent's `data_dir`, and so shares
its data, unless it gives its own. Every path of a chain is the project's (`project_path`), however `extends:`
spells it; each file of the chain is read once, and a chain is at most MAX_EXTENDS configs deep.

What a change leaves alone is computed once, by the parent's jobs, and never rewritten: a variant's job table
takes the parent's own record of every job whose work is the same (its command still names the parent's
config, so Snakemake finds nothing to rerun and DVC finds the stage in the parent's dvc.yaml). That is each
download, degraded set, PIC table set and bicubic score of the shared `data_dir`, each training run whose
resolved experiment (all but its MLflow names) is unchanged, and the evaluations and replicate summaries of
those runs. They are reused in place, neither copied nor linked. Every other job of the variant writes under
`<data_dir>/variants/<name>/` (runs, evaluations, logs), and its report goes to reports/<name>. A variant with
a data_dir of its own shares nothing, and its report compares no scores with its parent's.

Plan time (Snakemake, `bsr dvc-yaml`) refuses a config whose outputs would overwrite another config's, naming
both and a path: two configs of one `data_dir` or one `name` that do not extend one another (among the configs
under config/ and beside the config), and a dvc.yaml stage that another dvc.yaml declares. Whatever files
exist, each work folder and report folder records the config that writes it (OWNER_MARKER, written when a run
starts), and a config that another's record names is refused.
"""
from __future__ import annotations

import copy
from pathlib import Path, PurePosixPath

import yaml

from bsr import BsrError, layout
from bsr.config import check_pipeline, deep_merge, load_yaml, project_path, resolve_experiment

# A variant's own runs, evaluations and logs: <data_dir>/variants/<name>/.
VARIANTS_FOLDER = "variants"
# Where `plan_checks` looks for other configs (in every folder below it) besides the config's own folder.
CONFIG_FOLDER = "config"
# The most `extends:` a chain may follow: each level is a config checked and its jobs compared with its parent's.
MAX_EXTENDS = 10
# In each work folder and report folder: the config file whose outputs it holds.
OWNER_MARKER = ".bsr-config"
OWNER_TEXT = ("config: {config}\n# bsr writes the outputs of this config here and refuses any other config that would "
              "write here; delete this file only if that config is gone for good\n")


def config_chain(path: str) -> list[tuple[str, dict]]:
    """(path, file as written) of a config and each config it extends, the root first; `path` the project's."""
    chain = []
    while True:
        raw = load_yaml(path)
        chain.append((path, raw))
        parent = raw.get("extends")
        if parent is None:
            return chain[::-1]
        if not isinstance(parent, str) or not parent.strip():
            raise BsrError(f"{path}: extends: expected the path of a config file, got {parent!r}")
        parent, seen = project_path(parent), [p for p, _ in chain]
        if parent in seen:
            cycle = " → ".join([*seen[seen.index(parent):], parent])
            raise BsrError(f"{seen[0]}: extends itself" if len(seen) == 1 else
                           f"{seen[0]}: extends: {cycle} is a cycle")
        if len(chain) > MAX_EXTENDS:
            raise BsrError(f"{seen[0]}: extends: more than {MAX_EXTENDS} configs deep ({path} extends {parent}); "
                           "extend a config nearer the root")
        if not Path(parent).is_file():
            raise BsrError(f"{path}: extends: {parent}: no such config file (relative to the project folder, "
                           f"{Path.cwd()})")
        path = parent


def merged_config(chain: list[tuple[str, dict]]) -> dict:
    """The chain's files deep-merged, root first; each variant named after its file unless it says otherwise.
    A copy: the files as written stay as written (dvc.yaml's params say which file holds a key)."""
    merged = {}
    for i, (path, raw) in enumerate(chain):
        own = {key: value for key, value in raw.items() if key != "extends"}
        if i and "name" not in own:
            own["name"] = Path(path).stem
        merged = deep_merge(merged, own)
    return copy.deepcopy(merged)


def pipeline_of_chain(chain: list[tuple[str, dict]]) -> dict:
    """The checked config of the chain's last file, built on its parent's (the chain but its last file): a
    variant's, with what it shares with its parent (`add_shared_jobs`) in cfg["_variant"] (a key no config file
    may have)."""
    path = chain[-1][0]
    cfg = check_pipeline(merged_config(chain), path)
    cfg["_file"] = path  # what bsr derives starts with "_", which no config key may
    if len(chain) == 1:
        return cfg
    parent_path, parent = chain[-2][0], pipeline_of_chain(chain[:-1])
    if cfg["name"] == parent["name"]:
        raise BsrError(f"{path}: name: {cfg['name']!r} is its parent's ({parent_path}): the two reports and MLflow "
                       "experiments would be one; leave name out (it defaults to the file's stem) or give another")
    shared = cfg["data_dir"] == parent["data_dir"]
    cfg["extends"] = parent_path
    cfg["_variant"] = {"parent": parent, "parent_path": parent_path, "files": dict(chain), "shared": set(),
                       "work_dir": str(PurePosixPath(cfg["data_dir"]) / VARIANTS_FOLDER / cfg["name"])
                       if shared else cfg["data_dir"]}
    if shared:
        check_shared_datasets(cfg, parent, path, parent_path)
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
    """The pipeline configs under the project folder's config/ (at any depth) and of the config's own folder, but
    itself: whichever of two configs runs, each finds the other."""
    candidates = sorted({project_path(path) for path in [*Path(CONFIG_FOLDER).rglob("*.yaml"),
                                                          *Path(config_path).parent.glob("*.yaml")]})
    found = []
    for path in candidates:
        if path == config_path:
            continue
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(raw, dict) and ("experiments" in raw or "extends" in raw):
            found.append(path)
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
    folder and the MLflow experiment): its own jobs, and those of the configs it extends whose jobs its run does
    too (`stages.sharing_lineage`), against every other config found, and its folders against their records
    (`check_owners`). Configs that fail to load are skipped: they can write nothing."""
    from bsr import stages
    from bsr.config import load_pipeline

    check_owners(cfg, config_path)
    extended = {path for _, path in stages.lineage(cfg, config_path)}
    ours = [(path, owned_outputs(c, path)) for c, path in stages.sharing_lineage(cfg, config_path)]
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
        for path, outputs in ours:
            if (path != config_path and other in extended) or not (written := overlap(outputs, theirs)):
                continue
            if path == config_path:
                raise BsrError(f"{config_path} and {other} would both write {written}: give {config_path} a "
                               f"data_dir of its own, or say `extends: {other}` in it to share what the two have "
                               "in common")
            raise BsrError(f"{path} (extended by {config_path}) and {other} would both write {written}: extend "
                           f"{other} instead, or give {path} a data_dir of its own")


def owned_folders(cfg: dict, config_path: str) -> dict[str, str]:
    """Folder -> the config file whose outputs it holds, of every folder that the config's run writes in: its
    report folder, its work folder, and those of the configs it extends whose jobs it runs too."""
    from bsr import stages

    folders = {stages.work_dir(c): path for c, path in stages.sharing_lineage(cfg, config_path)}
    return folders | {layout.report_dir(cfg["name"]): config_path}


def recorded_owner(folder: str) -> str | None:
    """The config file that a folder's OWNER_MARKER names; None where there is none."""
    marker = Path(folder) / OWNER_MARKER
    if not marker.is_file():
        return None
    first = marker.read_text(errors="replace").partition("\n")[0]
    return first.removeprefix("config: ").strip()


def check_owners(cfg: dict, config_path: str) -> None:
    """Refuse a run that would write in a folder whose record names another config."""
    for folder, config in owned_folders(cfg, config_path).items():
        recorded = recorded_owner(folder)
        if recorded is not None and recorded != config:
            remedy = "another name" if folder == layout.report_dir(cfg["name"]) else "a data_dir of its own"
            raise BsrError(f"{folder}: holds the outputs of {recorded} ({folder}/{OWNER_MARKER}); {config} may not "
                           f"write there: give it {remedy}, or make it a variant (`extends: {recorded}`)")


def claim_folders(cfg: dict, config_path: str) -> None:
    """Record in each folder that the config's run writes in which config owns it (once: the first run's)."""
    from bsr.files import write_text

    check_owners(cfg, config_path)
    for folder, config in owned_folders(cfg, config_path).items():
        if recorded_owner(folder) is None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            write_text(Path(folder) / OWNER_MARKER, OWNER_TEXT.format(config=config))


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
