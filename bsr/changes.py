"""What a config changed and what moved: the report's account of "change one thing and see what moves".

Every report lists, in full, each value where its config differs from the one it is compared with: a variant's
parent, else the paper's config (both as checked, defaults filled and bases merged, so the list holds
differences in effect, not in spelling). A variant's report leads with "What moved": each cell that it and
its parent both measured from different runs, the parent's value, the variant's, and the change with its
interval, paired by image and, with replicates, seed-aware (bsr.stats). The cells a variant shares with its
parent are the same files: they are named, not tabulated.
"""
from __future__ import annotations

import yaml

from bsr import layout, stats
from bsr.config import EXPERIMENT_SECTIONS, load_pipeline, resolve_experiment, run_names
from bsr.scores import Replicated, paired, read_replicated
from bsr.stages import experiment_degradation, job_key, moved_cells
from bsr.tables import DIGITS, METRIC_LABELS, Bootstrap, Row, Table, cell, listing, verdict, with_interval, with_seeds

ABSENT = "∅"


def shown(value) -> str:
    """A config value as YAML writes it in one line: [DIV2K], {scale: 2, degradation: BI}, null, 0.0005."""
    if value is ABSENT:
        return ABSENT
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...")


def differences(old: dict, new: dict, prefix: str = ""):
    """(dotted key, old value, new value) of every leaf that differs, a mapping on one side only leaf by leaf."""
    for key in dict.fromkeys([*old, *new]):
        if key.startswith("_") or (not prefix and key == "extends"):  # derived by bsr, or said in the sentence
            continue
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if isinstance(a, dict) or isinstance(b, dict):
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict) or a is ABSENT or b is ABSENT:
                yield from differences({} if a is ABSENT else a, {} if b is ABSENT else b, f"{prefix}{key}.")
                continue
        if a != b:
            yield f"{prefix}{key}", a, b


def effective(cfg: dict, key: str):
    """What an experiment's absent section key stands for: the value `defaults` gives it (ABSENT otherwise)."""
    parts = key.split(".")
    if len(parts) > 3 and parts[0] == "experiments" and parts[1] in cfg["experiments"] \
            and parts[2] in EXPERIMENT_SECTIONS:
        value = cfg["defaults"][parts[2]]
        for part in parts[3:]:
            if not isinstance(value, dict) or part not in value:
                return ABSENT
            value = value[part]
        return value
    return ABSENT


def shown_in(cfg: dict, key: str, value) -> str:
    """A value of the list; an experiment's key it leaves to `defaults` shows the default it takes."""
    if value is ABSENT and (default := effective(cfg, key)) is not ABSENT:
        return f"{shown(default)} (defaults)"
    return shown(value)


def compared_config(cfg: dict, config_path: str) -> tuple[str, dict] | None:
    """(file, config) that a report lists its differences from: a variant's parent, else the paper's config;
    None for the paper's config itself."""
    if "_variant" in cfg:
        return cfg["_variant"]["parent_path"], cfg["_variant"]["parent"]
    if layout.is_paper_config(config_path):
        return None
    return layout.PAPER_CONFIG, load_pipeline(layout.PAPER_CONFIG)


def config_changes(cfg: dict, config_path: str) -> tuple[str, list[str]]:
    """A sentence saying which config the report is of and what it is compared with, and the differences, each
    as `key: old → new`."""
    compared = compared_config(cfg, config_path)
    if compared is None:
        return f"Config: {config_path} ({cfg['name']}), the paper config.", []
    path, other = compared
    changed = [f"{key}: {shown_in(other, key, a)} → {shown_in(cfg, key, b)}" for key, a, b in differences(other, cfg)]
    relation = f"a variant of {path} ({other['name']})" if "_variant" in cfg else "compared with the paper config"
    return (f"Config: {config_path} ({cfg['name']}), {relation}. It differs from {path} in {len(changed)} "
            f"value{'s' * (len(changed) != 1)} ({path} → this; {ABSENT}: absent):", changed)


def training_line(cfg: dict, names) -> str:
    """What each row was trained with: iterations, lr, batch, patch and model size, in one line."""
    def about(name):
        exp = resolve_experiment(cfg, name)
        t, m = exp["train"], exp["model"]
        size = (f"{m['n_blocks']} block{'s' * (m['n_blocks'] > 1)}" if m.get("arch") == "edsr"
                else f"{m['n_fmg']} FMG{'s' * (m['n_fmg'] > 1)}")
        gpus = f" × {t['gpus']} GPUs" if t["gpus"] > 1 else ""
        return (f"{name}: {t['iterations']:,} iterations, lr {t['lr']:g}, batch {t['batch']}{gpus}, "
                f"patch {exp['sampling']['patch']}, {size} × {m['channels']} channels")
    return "Trained with: " + "; ".join(about(name) for name in dict.fromkeys(names)) + "."


def build_moved(cfg: dict, boot: Bootstrap) -> Table | None:
    """A variant's "What moved": its cells against its parent's, the intervals that exclude 0 first."""
    if "_variant" not in cfg:
        return None
    parent, parent_path = cfg["_variant"]["parent"], cfg["_variant"]["parent_path"]
    table = Table(f"What moved: this variant against {parent['name']} ({parent_path})",
                  ["Experiment", "Test set", "Metric", f"{parent['name']} [95% CI]", "This [95% CI]",
                   "This − parent [95% CI]", "Verdict", "Wins"], "lllrrrlr")
    rows, seeds, once = [], {}, []
    for name, dataset, plus in moved_cells(cfg):
        ours, theirs = read_replicated(cfg, name, dataset, plus), read_replicated(parent, name, dataset, plus)
        kind, scale = experiment_degradation(cfg, name)
        label = f"{name}{'+' if plus else ''}"
        # each side's N, as its column shows it: a variant may add seeds to runs its parent trained once
        seeds |= {f"{label} ({parent['name']})": theirs.seeds, f"{label} (this)": ours.seeds}
        if ours.seeds == theirs.seeds == 1:
            once.append(label)
        for metric in METRIC_LABELS:
            a, b = paired(ours, theirs, metric)
            interval, digits = boot.paired(a, b), DIGITS[metric]
            wins, n = stats.win_rate(a.mean(axis=0), b.mean(axis=0))
            rows.append((interval[0] > 0 or interval[1] < 0, Row([
                cell(label), cell(f"{dataset} {kind} ×{scale}"), cell(METRIC_LABELS[metric]),
                cell(value(theirs, metric, boot)), cell(value(ours, metric, boot)),
                cell(with_interval(ours.value(metric) - theirs.value(metric), interval, digits, signed=True)),
                cell(verdict(interval).replace("better", "higher").replace("worse", "lower")), cell(f"{wins}/{n}")],
                rule=metric == "psnr")))
    table.rows = [row for _, row in sorted(rows, key=lambda r: not r[0])]  # stable: moved cells first
    same = [name for name in cfg["experiments"] if shares_runs(cfg, name)]
    if not table.rows:
        table.notes.append("No cell that both configs measured comes from different runs: nothing can have moved.")
    else:
        table.notes += [
            "Each change is paired: the same images, this config's score minus its parent's; Verdict says higher or "
            "lower when the interval excludes 0 (those cells come first), within noise when it holds 0; Wins "
            "counts the images where this config scores higher.",
            boot.note(seeds)]
        if once:
            table.notes.append(f"{listing(once)}: one training on each side, so a change can be that of the "
                               "training seed, which these intervals do not cover; give the experiment "
                               "`replicates: N` in both configs to tell the two apart.")
        table.notes.append(training_line(cfg, [c[0] for c in moved_cells(cfg)]))
    if same:
        table.notes.append(f"Reused from {parent['name']}, the same runs and scores (so unchanged): {listing(same)}.")
    added = [name for name in cfg["experiments"] if name not in parent["experiments"]]
    if added:
        table.notes.append(f"Only in this config, so not compared: {listing(added)}.")
    return table


def shares_runs(cfg: dict, name: str) -> bool:
    """Whether a variant trains none of an experiment's runs itself: they are its parent's."""
    return all(job_key("train", {"experiment": run}) in cfg["_variant"]["shared"] for run in run_names(cfg, name))


def value(scores: Replicated, metric: str, boot: Bootstrap) -> str:
    """`30.12 [29.8, 30.4]`, with ` ±sd (N seeds)` for replicates."""
    return with_seeds(with_interval(scores.value(metric), boot.mean(scores.matrix(metric)), DIGITS[metric]),
                      scores, metric)
