"""`bsr report`: what we measured against the paper, whether each difference is real, and the paper's tables.

Four tables, rendered as Markdown, an `\\input`-able LaTeX fragment (with a standalone wrapper) and HTML:
1. reproduction: every (set, degradation, scale) we measured, our BSR and bicubic against the paper's, with
   intervals and per-image win counts;
2., 3. the paper's BI and BD tables, our rows ranked among the published ones on the sets the paper has;
4. ablation: each arm against our own Baseline, image by image, beside the paper's deltas; with replicates,
   a verdict that takes the seeds' noise into account.

Every measured number is read from a summary JSON that records the MLflow run it was logged to (bsr.scores),
so the tables and MLflow are one source; the intervals come from the per-image CSVs beside them, over the
images for a row trained once and over images and seeds for a row with replicates (bsr.stats). Published rows
come from the paper's tables, shipped with the package.
"""
from __future__ import annotations

import contextlib
import csv
import re
import shutil
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
import yaml

from bsr import BsrError, layout, stats
from bsr.changes import build_moved, config_changes, training_line
from bsr.config import experiment_entry, experiment_test_sets, published_entries, published_entry, replicate_count
from bsr.dvc_stages import dvc_yaml_path
from bsr.files import atomic_path, check_against_inputs, check_output, check_writer, mark_folder, write_text
from bsr.images import list_images, read_image
from bsr.scores import (METRICS, Replicated, paired, read_bicubic, read_evaluation, read_replicated, read_rescored,
                        read_training)
from bsr.stages import (comparison_jobs, eval_path, experiment_degradation, figure_paths, pic_jobs, report_inputs,
                        run_path)
from bsr.tables import (DIGITS, METRIC_LABELS, Bootstrap, Row, Table, Text, cell, listing, number, optional,
                        verdict, with_interval, with_seeds)

OURS_BICUBIC = "Bicubic (ours)"
OURS_BSR = "BSR (ours)"
SELF_ENSEMBLE = "+"  # the literature's mark of the ×8 self-ensemble: "BSR+ (ours)"
PAPER_BICUBIC, PAPER_BSR, PAPER_BASELINE = "Bi-cubic", "BSR", "Baseline"
DEGRADATION_TITLES = {"BI": "bicubic (BI) degradation", "BD": "blur-downscale (BD) degradation"}
DEGRADATIONS = {"BI": "LR = MATLAB bicubic imresize (a = −0.5, antialiased)",
                "BD": "LR = 7×7 Gaussian blur σ = 1.6 (replicate borders), then every 3rd pixel from the 2nd"}
# The paper states no schedule; config/config.yaml assumes EDSR's 300 epochs of 1000 iterations. A run under
# a tenth of it is far from converged: its numbers test the pipeline, not the method.
PAPER_ITERATIONS = 300_000
SHORT_RUN = 0.1
# A percentile bootstrap over fewer images than this has few distinct resamples and too narrow intervals.
FEW_IMAGES = 10
# Our score of a method's released outputs matches its published cell within the cell's rounding and these.
RESCORED_TOLERANCE = {"psnr": 0.01, "ssim": 0.0005}
RESCORED_MARK = "‡"


def paper_rows(name: str) -> list[dict]:
    text = resources.files("bsr.paper").joinpath(name).read_text()
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def paper_values(kind: str, method: str) -> dict[tuple[int, str], dict[str, float]]:
    """(scale, dataset) -> {metric: value} of one method's row in the paper's table of one degradation."""
    return {(int(r["scale"]), r["dataset"]): {m: float(r[m]) for m in METRICS}
            for r in paper_rows("bsr_tables.tsv") if r["degradation"] == kind and r["method"] == method}


def trained_iterations(cfg: dict, name: str) -> int:
    return read_training(run_path(cfg, name, layout.RUN_SUMMARY))["iterations"]


def main_experiments(cfg: dict) -> list[str]:
    """The BSR experiments outside the ablation."""
    return [name for name, exp in cfg["experiments"].items() if "ablation" not in exp and "method" not in exp]


@dataclass(frozen=True)
class Measured:
    """A row label of ours: an experiment, scored plain or as its ×8 self-ensemble."""
    name: str
    label: str
    self_ensemble: bool = False

    def eval_json(self, cfg: dict, dataset: str) -> str:
        return eval_path(cfg, self.name, dataset, self.self_ensemble)


def measured_rows(cfg: dict) -> list[Measured]:
    """Our rows: BSR's, then the baselines trained alongside (`method`), e.g. EDSR-baseline on the same data,
    schedule and sampler; then the self-ensembles of those with self_ensemble: true ("BSR+ (ours)")."""
    main = main_experiments(cfg)
    degradations = [experiment_degradation(cfg, name) for name in main]
    # BSR's label names the experiment only where two BSR runs share a degradation and scale.
    rows = [Measured(name, OURS_BSR if degradations.count(where) == 1 else f"{OURS_BSR}: {name}")
            for name, where in zip(main, degradations)]
    rows += [Measured(name, exp["method"]) for name, exp in cfg["experiments"].items() if "method" in exp]
    return rows + [Measured(row.name, plus_label(row.label), True) for row in rows
                   if experiment_entry(cfg, row.name).get("self_ensemble")]


def plus_label(label: str) -> str:
    """"BSR (ours)" -> "BSR+ (ours)": the mark goes on the method's name."""
    method, space, rest = label.partition(" (")
    return f"{method}{SELF_ENSEMBLE}{space}{rest}"


def short_run_note(iterations: dict[str, int], consequence: str) -> list[str]:
    """A note naming the runs trained for under SHORT_RUN of the paper's schedule (none when there are none)."""
    short = {name: n for name, n in iterations.items() if n < SHORT_RUN * PAPER_ITERATIONS}
    if not short:
        return []
    counts = listing(sorted(set(short.values())))
    return [f"Too short to mean anything: {listing(short)} trained {counts} iterations, under {SHORT_RUN:.0%} of "
            f"the paper run's {PAPER_ITERATIONS:,} ({consequence})."]


def validation_note(cfg: dict, names) -> str:
    """Which set training validated on, and whether a row is scored on that same set."""
    on_test = [name for name in names if cfg["val_set"] in experiment_test_sets(cfg, name)]
    note = f"Training validated on {cfg['val_set']} (val_psnr in metrics.csv; no checkpoint is chosen by it)"
    if on_test:
        note += (f", which {listing(on_test)} {'is' if len(on_test) == 1 else 'are'} also scored on: its validation "
                 "curve is that set's, though nothing was tuned on it")
    return note + "."


def few_images_note(sizes: dict[str, int]) -> list[str]:
    few = {dataset: n for dataset, n in sizes.items() if n < FEW_IMAGES}
    if not few:
        return []
    return [f"{listing(f'{d} has {n} images' for d, n in few.items())}: intervals over so few images are rough "
            "(too narrow) and a win count says little."]


def metric_convention(spaces: set[str]) -> str:
    space = "RGB channels" if spaces == {"rgb"} else "Y channel of BT.601 (kept as float)"
    return (f"PSNR (dB) / SSIM on the {space}, HR cropped to a multiple of the scale s, s border pixels shaved, "
            "mean of per-image values")


def build_reproduction(cfg: dict, boot: Bootstrap) -> Table:
    """One block per measured (set, degradation, scale) and experiment (BSR's, or a baseline's trained alongside):
    ours against the paper's values."""
    d = cfg["data_dir"]
    table = Table("Reproduction: our BSR and bicubic against the paper",
                  ["Test set", "Run (iterations)", "Metric", "Paper BSR", "Ours [95% CI]", "Ours − paper",
                   "Paper bicubic", "Our bicubic", "Ours − bicubic [95% CI]", "Wins"],
                  "lllrrrrrrr")
    iterations, kinds, spaces, sizes, ties, seeds = {}, [], set(), {}, [], {}
    plain = main_experiments(cfg)
    for row, dataset in [(row, s) for row in measured_rows(cfg) for s in experiment_test_sets(cfg, row.name)]:
        name = row.name
        kind, scale = experiment_degradation(cfg, name)
        iterations[name] = trained_iterations(cfg, name)
        ours = read_replicated(cfg, name, dataset, row.self_ensemble)
        bicubic = Replicated([read_bicubic(d, dataset, kind, scale)])
        # A baseline trained here (method), or a self-ensemble, has no paper value: the paper publishes BSR alone.
        paper_bsr = paper_values(kind, PAPER_BSR).get((scale, dataset), {}) \
            if name in plain and not row.self_ensemble else {}
        paper_bicubic = paper_values(kind, PAPER_BICUBIC).get((scale, dataset), {})
        kinds.append(kind)
        spaces |= {ours.runs[0].summary["space"], bicubic.runs[0].summary["space"]}
        sizes[dataset] = ours.runs[0].summary["n"]
        seeds[f"{name}{SELF_ENSEMBLE if row.self_ensemble else ''}"] = ours.seeds
        for metric in METRICS:
            digits, mine, theirs = DIGITS[metric], ours.value(metric), paper_bsr.get(metric)
            first = metric == METRICS[0]  # the block's later rows leave the set and run to the first
            a, b = paired(ours, bicubic, metric)
            over_bicubic = boot.paired(a, b, b_trained=False)  # bicubic has no seeds
            wins, n = stats.win_rate(a.mean(axis=0), b[0])
            if over_bicubic[0] <= 0 <= over_bicubic[1]:
                ties.append(f"{name} on {dataset} {kind} ×{scale} ({METRIC_LABELS[metric]})")
            table.rows.append(Row([
                cell(f"{dataset} {kind} ×{scale}" if first else ""),
                cell((f"{name} ({iterations[name]:,})" if name in plain and not row.self_ensemble
                      else f"{row.label}: {name} ({iterations[name]:,})") if first else ""),
                cell(METRIC_LABELS[metric]), cell(optional(theirs, digits)),
                cell(with_seeds(with_interval(mine, boot.mean(a), digits), ours, metric)),
                cell(optional(None if theirs is None else mine - theirs, digits, signed=True)),
                cell(optional(paper_bicubic.get(metric), digits)), cell(number(bicubic.value(metric), digits)),
                cell(with_interval(mine - bicubic.value(metric), over_bicubic, digits, signed=True)),
                cell(f"{wins}/{n}")], rule=first))
    if not table.rows:
        table.notes.append("No BSR experiment outside the ablation in this config.")
        return table
    table.notes += [
        f"{metric_convention(spaces)}; " + "; ".join(f"{k}: {DEGRADATIONS[k]}" for k in dict.fromkeys(kinds)) +
        "; bicubic upsampling is MATLAB's. "
        "“–”: the paper has no such value: not that set, no bicubic row for it, or no BSR value for a baseline or "
        "self-ensemble row (the paper publishes plain BSR alone).",
        boot.note(seeds),
        "Ours − bicubic (our bicubic) is paired, the same images at the same degradation and scale: its interval "
        "is that of the mean per-image difference, and Wins counts the images where the row's network scores "
        "higher. Ours − paper is not paired (the paper publishes set means, no per-image scores), so it gets no "
        "interval; the interval beside our BSR is that of our mean alone.",
        validation_note(cfg, iterations),
        *([f"Rows marked {SELF_ENSEMBLE} (e.g. BSR+): the same network scored as the mean of its outputs over the 8 flips and "
           "rotations of the input (EDSR's self-ensemble); the paper publishes no such results."]
          if any(row.self_ensemble for row in measured_rows(cfg)) else []),
        training_line(cfg, iterations),
        *short_run_note(iterations, "these rows show that the pipeline runs, not how well BSR does"),
        *few_images_note(sizes),
    ]
    if ties:
        table.notes.append(f"The interval of ours − bicubic includes 0 for {listing(ties)}: there our "
                           "network is not distinguishable from bicubic.")
    return table


def rank_styles(values: list[float]) -> list[str]:
    """'bold' for the best of a column, 'underline' for the second, '' for the others."""
    ordered = sorted(set(values), reverse=True)
    return ["bold" if v == ordered[0] else "underline" if len(ordered) > 1 and v == ordered[1] else ""
            for v in values]


def build_literature(cfg: dict, kind: str) -> Table:
    """The paper's table of one degradation, with our measured rows where we tested a set it reports.

    Sets the paper does not report (the demo's) stay out: a column of "–" ranks nothing, and the
    reproduction table holds every measured set.
    """
    d = cfg["data_dir"]
    published = [r for r in paper_rows("bsr_tables.tsv") if r["degradation"] == kind]
    flags = {(f["method"], int(f["scale"]), f["dataset"], f["metric"]): f["note"]
             for f in paper_rows("flags.tsv") if f["degradation"] == kind}
    datasets = list(dict.fromkeys(r["dataset"] for r in published))
    table = Table(f"The paper's table, {DEGRADATION_TITLES[kind]}: PSNR / SSIM", ["Method", "Scale", *datasets],
                  "ll" + "r" * len(datasets))
    footnotes, spaces, ours, elsewhere, rescored = [], set(), set(), [], {}
    for scale in sorted({int(r["scale"]) for r in published}):
        block: dict[str, dict] = {}  # row label -> (dataset, metric) -> (value, footnote mark)
        for r in published:
            if int(r["scale"]) == scale:
                for metric in METRICS:
                    note = flags.get((r["method"], scale, r["dataset"], metric))
                    if note:
                        footnotes.append(f"{'†' * (len(footnotes) + 1)} {note}")
                    block.setdefault(r["method"], {})[(r["dataset"], metric)] = (float(r[metric]),
                                                                                 "†" * len(footnotes) if note else "")
        for row in measured_rows(cfg):
            label = row.label
            if experiment_degradation(cfg, row.name) != (kind, scale):
                continue
            for dataset in experiment_test_sets(cfg, row.name):
                if dataset not in datasets:
                    elsewhere.append(dataset)
                    continue
                bsr = read_replicated(cfg, row.name, dataset, row.self_ensemble)  # the mean over its seeds
                bicubic = read_bicubic(d, dataset, kind, scale).summary
                spaces |= {bsr.runs[0].summary["space"], bicubic["space"]}
                ours |= {OURS_BICUBIC, label}
                for metric in METRICS:
                    block.setdefault(OURS_BICUBIC, {})[(dataset, metric)] = (bicubic[metric], "")
                    block.setdefault(label, {})[(dataset, metric)] = (bsr.value(metric), "")
        # keyed by the whole cell: an entry at one scale is nothing to the method's cells at the others
        for entry in [e for e in published_entries(cfg) if e[2:] == (kind, scale)]:
            rescored[entry] = read_rescored(d, *entry)
            spaces.add(rescored[entry]["space"])
        styles = {}
        for column in [(dataset, metric) for dataset in datasets for metric in METRICS]:
            ranked = [(label, values[column][0]) for label, values in block.items()
                      if column in values and not values[column][1]]
            styles |= {(label, column): style
                       for (label, _), style in zip(ranked, rank_styles([value for _, value in ranked]))}
        for i, (label, values) in enumerate(block.items()):
            row = [cell(Text(label, "bold" if label in ours else "")), cell(f"×{scale}")]
            for dataset in datasets:
                row.append([literature_text(values[(dataset, m)], rescored.get((label, dataset, kind, scale)), m,
                                            styles.get((label, (dataset, m)), "")) for m in METRICS]
                           if (dataset, "psnr") in values else cell("–"))
            table.rows.append(Row(row, rule=i == 0))
    table.notes.append(f"{metric_convention(spaces or {'y'})}; {DEGRADATIONS[kind]}. Best value of each column "
                       "and scale in bold, second underlined; our measured rows (bold names) are ranked with the "
                       "published ones; flagged cells are not ranked.")
    if not ours:
        where = f" (our {kind} sets, {listing(dict.fromkeys(elsewhere))}, are in the reproduction table)" \
            if elsewhere else ""
        table.notes.append(f"We measured none of these sets under {kind}{where}: this table is the paper's alone.")
    table.notes += footnotes
    table.notes += rescored_notes(cfg, kind, rescored)
    return table


def literature_text(published: tuple[float, str], rescored: dict | None, metric: str, style: str) -> Text:
    """A published cell, with our score of the method's released outputs beside it when we have one, marked
    where the two differ by more than RESCORED_TOLERANCE."""
    value, flag = published
    text = number(value, DIGITS[metric])
    if rescored is not None:
        text += f" ({number(rescored[metric], DIGITS[metric])})"
        flag += RESCORED_MARK if abs(rescored[metric] - value) > RESCORED_TOLERANCE[metric] else ""
    return Text(text, style, flag)


def rescored_notes(cfg: dict, kind: str, rescored: dict) -> list[str]:
    """What the numbers in parentheses are, which cells were re-scored and from where, and what the mark says."""
    if not rescored:
        return []
    sources = listing(f"{method} {dataset} ×{scale} from {published_entry(cfg, method, dataset, kind, scale)['source']}"
                      for method, dataset, k, scale in published_entries(cfg) if k == kind)
    return [f"(x): our score of the method's released outputs (bsr score: the protocol above, each SR file paired "
            f"with its HR image by name), beside the published value; re-scored: {sources}. {RESCORED_MARK}: ours "
            f"differs from the published value by more than {RESCORED_TOLERANCE['psnr']} dB or "
            f"{RESCORED_TOLERANCE['ssim']} SSIM, more than its rounding: those outputs, or that protocol, are not "
            "the ones behind the paper's cell."]


def build_ablation(cfg: dict, boot: Bootstrap) -> Table:
    """Each arm against our own Baseline, image by image, beside the paper's arm − Baseline deltas: one block
    per test set of the Baseline. With replicates, each difference says whether it is real: its seed-aware
    interval, the seed sd, a verdict in words, and whether the paper's delta lies inside our interval."""
    arms = {exp["ablation"]: name for name, exp in cfg["experiments"].items() if "ablation" in exp}
    seeds = {variant: replicate_count(cfg, name) for variant, name in arms.items()}
    replicated = any(n > 1 for n in seeds.values())
    published = {r["variant"]: r for r in paper_rows("bsr_ablation.tsv")}
    paper_baseline = float(published[PAPER_BASELINE]["psnr"])
    baseline = arms.get(PAPER_BASELINE)
    # every arm is scored where the Baseline is: its test sets, at its degradation and scale
    datasets = experiment_test_sets(cfg, baseline) if baseline else [None]
    where = experiment_degradation(cfg, baseline) if baseline else None
    header = ["Variant", "What changes", "Ours [95% CI]", "Ours − our Baseline [95% CI]", "Wins over Baseline",
              "Paper − paper Baseline"]
    if replicated:
        header[4:4] = ["Seed sd (seeds)", "Verdict"]
        header.append("Paper's Δ in our CI")
    several = len(datasets) > 1
    table = Table("Ablation: each arm against our Baseline (PSNR, dB)", ["Test set"] * several + header,
                  "l" * several + ("llrrrlrrl" if replicated else "llrrrr"))
    iterations, ties, over_bicubic = {}, [], []
    for dataset in datasets:
        base = read_replicated(cfg, baseline, dataset) if baseline else None
        for i, variant in enumerate(dict.fromkeys([*published, *arms])):
            paper, name = published.get(variant), arms.get(variant)
            paper_delta = float(paper["psnr"]) - paper_baseline if paper and variant != PAPER_BASELINE else None
            ours = {key: cell("–") for key in ("mean", "delta", "sd", "verdict", "wins", "inside")}
            if name:
                if baseline and (dataset not in experiment_test_sets(cfg, name) or
                                 experiment_degradation(cfg, name) != where):
                    raise BsrError(f"ablation arm {name}: not tested on {dataset} {where[0]} ×{where[1]} like the "
                                   f"{PAPER_BASELINE} arm ({baseline}); arms are compared with it image by image")
                iterations[name] = trained_iterations(cfg, name)
                scores = read_replicated(cfg, name, dataset or experiment_test_sets(cfg, name)[0])
                ours["mean"] = cell(with_interval(scores.value("psnr"), boot.mean(scores.matrix("psnr")), 2))
                if scores.seeds > 1:
                    ours["sd"] = cell(f"{number(stats.seed_sd(scores.matrix('psnr')), 2)} ({scores.seeds})")
                if baseline and name != baseline:
                    a, b = paired(scores, base, "psnr")
                    interval, (wins, n) = boot.paired(a, b), stats.win_rate(a.mean(axis=0), b.mean(axis=0))
                    if interval[0] <= 0 <= interval[1]:
                        ties.append(f"{variant} on {dataset}" if several else variant)
                    delta = scores.value("psnr") - base.value("psnr")
                    ours |= {"delta": cell(with_interval(delta, interval, 2, signed=True)),
                             "wins": cell(f"{wins}/{n}"), "verdict": cell(verdict(interval))}
                    if paper_delta is not None:
                        ours["inside"] = cell("yes" if interval[0] <= paper_delta <= interval[1] else "no")
            columns = [ours["mean"], ours["delta"], *([ours["sd"], ours["verdict"]] if replicated else []),
                       ours["wins"], cell(optional(paper_delta, 2, signed=True)),
                       *([ours["inside"]] if replicated else [])]
            table.rows.append(Row([*([cell(dataset if i == 0 else "")] if several else []),
                                   cell(Text(variant, "bold" if name else "")), cell(paper["note"] if paper else ""),
                                   *columns], rule=several and i == 0))
        if baseline and replicated:
            over_bicubic.append(baseline_over_bicubic(cfg, boot, base, dataset, where))
    if baseline:
        sets = listing(datasets)
        table.notes += [
            f"Our arms: {sets} {where[0]} ×{where[1]}, each compared with our Baseline image by image (paired); "
            "Wins counts the images where the arm beats it. The paper's deltas are against its own Baseline "
            f"({paper_baseline:.2f} dB); it does not say which set and scale its ablation used, so its absolute "
            "values are not comparable with ours.",
            boot.note(seeds if replicated else None)]
        if replicated:
            table.notes.append(
                "Verdict: better or worse when the interval of ours − our Baseline excludes 0, within noise when it "
                "holds 0; an arm's difference takes the seed variance of both arms (each arm's replicates are "
                "independent of the other's). Paper's Δ in our CI: whether the paper's delta is a value our "
                "interval allows." + (" Arms have different numbers of seeds (" +
                                      listing(f"{v} {n}" for v, n in seeds.items()) + ")."
                                      if len(set(seeds.values())) > 1 else ""))
            table.notes.append(f"Our Baseline − our bicubic: {'; '.join(over_bicubic)}.")
    else:
        table.notes.append(f"No arm is labelled {PAPER_BASELINE}, so ours are not compared." if arms else
                           "This config runs no ablation arm.")
    if arms:
        table.notes.append(f"Bold: the arms this config trains ({listing(arms)}); the others are the paper's alone.")
        table.notes.append(training_line(cfg, arms.values()))
    # Seed-aware verdicts can find a short run's differences real; they are this schedule's, not the paper's.
    table.notes += short_run_note(iterations, "the arms' differences describe this short schedule, not the "
                                  "paper's" if replicated else "an interval over the images that excludes 0 still "
                                  "says nothing about the arms: it covers which images were tested, not the "
                                  "training seed, and a schedule this short is far from converged")
    if ties:
        table.notes.append(f"The interval includes 0 for {listing(ties)}: no measurable difference from our Baseline.")
    return table


def baseline_over_bicubic(cfg: dict, boot: Bootstrap, base: Replicated, dataset: str, where) -> str:
    """`Set5 +3.29 dB [3.1, 3.5], 5/5 images`: whether the arms' network learned anything over bicubic."""
    bicubic = Replicated([read_bicubic(cfg["data_dir"], dataset, *where)])
    a, b = paired(base, bicubic, "psnr")
    wins, n = stats.win_rate(a.mean(axis=0), b[0])
    return (f"{dataset} {with_interval(base.value('psnr') - bicubic.value('psnr'), boot.paired(a, b, b_trained=False), 2, signed=True)}"
            f" dB, {wins}/{n} images")


# Each character LaTeX would read as markup, and the Unicode this report writes, as LaTeX typesets it.
TEX_REPLACEMENTS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                    "Δ": r"$\Delta$", "−": "$-$", "×": r"$\times$", "σ": r"$\sigma$", "†": r"$^\dagger$",
                    "“": "``", "”": "''", "\n": " ", "∅": r"$\emptyset$", "≥": r"$\geq$", "≤": r"$\leq$",
                    "≠": r"$\neq$", "±": r"$\pm$", "≈": r"$\approx$"}
TEX_SPECIAL = re.compile("|".join(map(re.escape, TEX_REPLACEMENTS)))
# What pdflatex's utf8 input reads as text: Latin letters and their accents, general punctuation (– … ‡) and
# arrows. Any other character (a symbol, an emoji) stops it with an error, so a label holding one becomes its
# Unicode name in brackets ("[rocket]"): readable, and the rest of the label as it was.
TEX_READS = re.compile("[\u0000-\u017f\u2010-\u2027\u2190-\u2193]")


def tex_escape(text) -> str:
    """In one pass, so that no replacement's own braces or dollars are escaped again."""
    return TEX_SPECIAL.sub(lambda found: TEX_REPLACEMENTS[found.group()],
                           "".join(map(tex_readable, str(text))))


def tex_readable(char: str) -> str:
    if TEX_READS.match(char) or char in TEX_REPLACEMENTS:
        return char
    return f"[{unicodedata.name(char, f'U+{ord(char):04X}').lower()}]"


def md_escape(text) -> str:
    """`*` (emphasis), `|` (a cell's end) and HTML (which Markdown renders) as literal characters in a Markdown
    table; a line break, which would end the table row, as a space."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", r"\*")
            .replace("|", r"\|").replace("\r", " ").replace("\n", " "))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("bsr", "templates"), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             autoescape=lambda name: name is not None and ".html" in name)
    env.filters["tex"] = tex_escape
    env.filters["md"] = md_escape
    return env


def training_curves(cfg: dict, out_png: str) -> None:
    from bsr.figures import plt, save_figure

    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for name in cfg["experiments"]:
        log = Path(run_path(cfg, name, layout.RUN_METRICS))
        rows = list(csv.DictReader(log.read_text().splitlines()))
        steps = [int(r["step"]) for r in rows]
        ax_loss.plot(steps, [float(r["loss"]) for r in rows], label=name)
        val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r["val_psnr"]]
        if val:
            ax_psnr.plot(*zip(*val), marker="o", label=name)
    ax_loss.set(xlabel="iteration", ylabel="training loss", yscale="log", title="loss")
    ax_psnr.set(xlabel="iteration", ylabel="PSNR (dB, Y)", title=f"validation PSNR on {cfg['val_set']}")
    for ax in (ax_loss, ax_psnr):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    save_figure(fig, out_png)


def comparison(cfg: dict, name: str, dataset: str, out_png: str) -> None:
    """HR, bicubic and BSR centre crops of the set's first image, for experiment `name`: the samples and
    per-image scores that the bicubic and evaluate jobs wrote beside their summaries."""
    from bsr.figures import plt, save_figure

    d = cfg["data_dir"]
    kind, scale = experiment_degradation(cfg, name)
    hr_path = list_images(layout.hr_dir(d, dataset))[0]
    panels = [("HR", read_image(hr_path), None)]
    for title, scores in [("Bicubic", read_bicubic(d, dataset, kind, scale)),
                          (f"BSR ({name})", read_evaluation(cfg, name, dataset))]:
        panels.append((title, read_image(layout.sample_png(scores.path)), scores.images.loc[hr_path.stem, "psnr"]))
    h, w = panels[1][1].shape[:2]  # the samples are of the HR image cropped to a multiple of the scale
    size = max(16, min(h, w) // 3)
    y, x = (h - size) // 2, (w - size) // 2
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.6))
    for ax, (title, img, value) in zip(axes, panels):
        ax.imshow(img[y:y + size, x:x + size], cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title if value is None else f"{title}\n{value:.2f} dB (whole image)", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{dataset}, {DEGRADATION_TITLES[kind]}, ×{scale}: {hr_path.name} (centre crop)", fontsize=10)
    save_figure(fig, out_png)


def check_inputs(cfg: dict, config_path: str) -> None:
    """All the report reads is what the stage table lists for it; name what is missing before writing anything."""
    missing = [p for paths in report_inputs(cfg, config_path).values() for p in paths if not Path(p).exists()]
    if not missing:
        return
    hint = f"paths are relative to the project folder, and bsr runs in {Path.cwd()}"
    dvc_file = Path(dvc_yaml_path(config_path))
    if dvc_file.is_file():
        with contextlib.suppress(yaml.YAMLError, AttributeError, KeyError, TypeError):
            listed = set(yaml.safe_load(dvc_file.read_text())["stages"]["report"]["deps"])
            unlisted = [p for p in missing if p not in listed]
            if unlisted:
                hint = (f"{dvc_file} does not list {unlisted[0]}: the config gained a dataset or experiment since "
                        f"it was generated; regenerate it with `bsr dvc-yaml --config {config_path}`")
    raise BsrError(f"{listing(missing[:5])}{' and more' if len(missing) > 5 else ''}: missing; run the "
                   f"pipeline stages that write them first ({hint})")


def write_tables(cfg: dict, config_path: str, report_dir: str | None = None, resamples: int = stats.RESAMPLES,
                 seed: int = stats.SEED) -> list[str]:
    """Render the tables into `report_dir` (default: the config's, layout.report_dir); return the files written."""
    if resamples < stats.RESAMPLES:
        raise BsrError(f"{resamples} bootstrap resamples: use at least {stats.RESAMPLES:,}, or the intervals' "
                       "second decimal is resampling noise")
    boot = Bootstrap(resamples, seed)
    moved = build_moved(cfg, boot)  # a variant's report leads with what moved
    tables = [*([moved] if moved else []), build_reproduction(cfg, boot),
              *(build_literature(cfg, kind) for kind in DEGRADATION_TITLES), build_ablation(cfg, boot)]
    (about, changes), env = config_changes(cfg, config_path), environment()
    folder = str(report_dir or layout.report_dir(cfg["name"]))
    written = layout.report_tables(folder)
    for path in written.values():
        write_text(path, env.get_template(f"{Path(path).name}.j2").render(
            name=cfg["name"], about=[about], changes=changes, tables=tables, figures=report_figures(cfg)))
    write_text(layout.report_changes(folder), "".join(f"{line}\n" for line in [about, *changes]))
    return [*written.values(), layout.report_changes(folder)]


def report_figures(cfg: dict) -> dict[str, str]:
    """Every figure's path inside the report folder (the tables link them relative to themselves)."""
    folder = layout.report_dir(cfg["name"])
    return {key: Path(path).relative_to(folder).as_posix() for key, path in figure_paths(cfg).items()}


def write_report(cfg: dict, config_path: str, report_dir: str | None = None, resamples: int = stats.RESAMPLES,
                 seed: int = stats.SEED) -> list[str]:
    """Render the tables and the figures into `report_dir` (default: the config's); return the files written."""
    check_inputs(cfg, config_path)
    folder = Path(report_dir or layout.report_dir(cfg["name"]))
    figures = {key: str(folder / path) for key, path in report_figures(cfg).items()}
    inputs = [path for paths in report_inputs(cfg, config_path).values() for path in paths]
    check_against_inputs([folder], inputs)
    check_writer(folder, "report")
    for path in [*layout.report_tables(str(folder)).values(), layout.report_changes(str(folder)), *figures.values()]:
        check_output(path, inputs)
    folder.mkdir(parents=True, exist_ok=True)
    mark_folder(folder, "report")
    written = write_tables(cfg, config_path, report_dir, resamples, seed)
    training_curves(cfg, figures["training_curves"])
    for dataset, kind, scale, reduce in pic_jobs(cfg):  # drawn by the pic stage, beside its tables
        with atomic_path(figures[f"pic_{dataset}_{kind}x{scale}_{reduce}"]) as tmp:
            shutil.copyfile(f"{layout.pic_dir(cfg['data_dir'], dataset, kind, scale, reduce)}.png", tmp)
    for name, dataset in comparison_jobs(cfg):
        kind, scale = experiment_degradation(cfg, name)
        comparison(cfg, name, dataset, figures[f"compare_{dataset}_{kind}x{scale}"])
    return written + list(figures.values())
