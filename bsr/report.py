"""`bsr report`: the paper's tables with our measured rows, as Markdown and LaTeX, plus figures.

Every measured number is read from a summary JSON that records the MLflow run it was logged to, so the
tables and MLflow are one source. Published rows come from the paper's tables, shipped with the package.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from bsr import BsrError, layout
from bsr.config import experiment_test_sets
from bsr.degrade import degrade, modcrop, upscale_bicubic
from bsr.files import write_text
from bsr.images import list_images, read_image
from bsr.metrics import psnr
from bsr.plan import evaluate_jobs, experiment_degradation, figure_paths

OURS_BICUBIC = "Bicubic (ours)"
OURS_BSR = "BSR (ours)"
PAPER_BICUBIC, PAPER_BSR = "Bi-cubic", "BSR"
METRICS = ("psnr", "ssim")
DEGRADATION_TITLES = {"BI": "bicubic (BI) degradation", "BD": "blur-downscale (BD) degradation"}


@dataclass
class Cell:
    value: float | None
    rank: int | None = None      # 1: best in its column and scale, 2: second
    flag: str | None = None      # footnote mark
    delta: bool = False

    def text(self, digits: int) -> str:
        if self.value is None:
            return "–"
        return f"{self.value:+.{digits}f}" if self.delta else f"{self.value:.{digits}f}"


@dataclass
class Row:
    label: str
    scale: int
    measured: bool = False
    delta: bool = False
    cells: dict = field(default_factory=dict)  # (dataset, metric) -> Cell


def paper_rows(name: str) -> list[dict]:
    text = resources.files("bsr.paper").joinpath(name).read_text()
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def read_summary(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BsrError(f"{path}: missing; run the pipeline stage that writes it first")
    return json.loads(path.read_text())


def main_experiments(cfg: dict) -> list[str]:
    return [name for name, exp in cfg["experiments"].items() if "ablation" not in exp]


def build_table(cfg: dict, kind: str) -> tuple[list[str], list[Row], list[str], set[str]]:
    """Rows (paper, ours, and Δ of ours against the paper's same method) for one degradation."""
    d = cfg["data_dir"]
    published = [r for r in paper_rows("bsr_tables.tsv") if r["degradation"] == kind]
    flags = {(f["method"], int(f["scale"]), f["dataset"], f["metric"]): f["note"]
             for f in paper_rows("flags.tsv") if f["degradation"] == kind}
    ours = {name: experiment_degradation(cfg, name) for name in main_experiments(cfg)}
    ours = {name: scale for name, (k, scale) in ours.items() if k == kind}
    scales = sorted({int(r["scale"]) for r in published} | set(ours.values()))
    datasets = list(dict.fromkeys([r["dataset"] for r in published] +
                                  [s for name in ours for s in experiment_test_sets(cfg, name)]))
    rows, notes, spaces = [], [], set()
    for scale in scales:
        by_method: dict[str, Row] = {}
        for r in published:
            if int(r["scale"]) != scale:
                continue
            row = by_method.setdefault(r["method"], Row(r["method"], scale))
            for metric in METRICS:
                note = flags.get((r["method"], scale, r["dataset"], metric))
                mark = None
                if note:
                    notes.append(note)
                    mark = "†" * len(notes)
                row.cells[(r["dataset"], metric)] = Cell(float(r[metric]), flag=mark)
        measured = []
        bicubic = Row(OURS_BICUBIC, scale, measured=True)
        for name, s in ours.items():
            if s != scale:
                continue
            bsr_row = Row(OURS_BSR if len(ours) == len(set(ours.values())) else f"{OURS_BSR}: {name}", scale,
                          measured=True)
            for dataset in experiment_test_sets(cfg, name):
                summary = read_summary(layout.eval_json(d, name, dataset))
                b = read_summary(layout.bicubic_json(d, dataset, kind, scale))
                spaces |= {summary["space"], b["space"]}
                for metric in METRICS:
                    bsr_row.cells[(dataset, metric)] = Cell(summary[metric])
                    bicubic.cells[(dataset, metric)] = Cell(b[metric])
            measured.append(bsr_row)
        if measured:
            measured.insert(0, bicubic)
        rank_columns(list(by_method.values()) + measured, datasets)
        rows += list(by_method.values())
        for row in measured:
            rows.append(row)
            delta = delta_row(row, by_method.get(PAPER_BICUBIC if row is bicubic else PAPER_BSR), datasets)
            if any(cell.value is not None for cell in delta.cells.values()):
                rows.append(delta)
    return datasets, rows, notes, spaces


def delta_row(row: Row, paper: Row | None, datasets: list[str]) -> Row:
    delta = Row(f"Δ {row.label} − paper", row.scale, delta=True)
    for dataset in datasets:
        for metric in METRICS:
            ours, theirs = row.cells.get((dataset, metric)), paper.cells.get((dataset, metric)) if paper else None
            if ours and theirs and theirs.flag is None:
                delta.cells[(dataset, metric)] = Cell(ours.value - theirs.value, delta=True)
    return delta


def rank_columns(rows: list[Row], datasets: list[str]) -> None:
    """Mark the best (1) and second (2) value of every column; flagged cells are not ranked."""
    for dataset in datasets:
        for metric in METRICS:
            cells = [r.cells[(dataset, metric)] for r in rows
                     if (dataset, metric) in r.cells and r.cells[(dataset, metric)].flag is None]
            values = sorted({c.value for c in cells}, reverse=True)
            for cell in cells:
                if values and cell.value == values[0]:
                    cell.rank = 1
                elif len(values) > 1 and cell.value == values[1]:
                    cell.rank = 2


def build_ablation(cfg: dict) -> tuple[list[dict], str]:
    d = cfg["data_dir"]
    ours, where = {}, set()
    for name, exp in cfg["experiments"].items():
        if "ablation" in exp:
            dataset = experiment_test_sets(cfg, name)[0]
            summary = read_summary(layout.eval_json(d, name, dataset))
            ours[exp["ablation"]] = summary["psnr"]
            where.add(f"{dataset} ×{exp['scale']} ({exp['degradation']})")
    rows = []
    published = {r["variant"]: r for r in paper_rows("bsr_ablation.tsv")}
    for variant in dict.fromkeys([*published, *ours]):
        paper = float(published[variant]["psnr"]) if variant in published else None
        mine = ours.get(variant)
        rows.append({"variant": variant, "note": published.get(variant, {}).get("note", ""), "paper": paper,
                     "ours": mine, "delta": mine - paper if mine is not None and paper is not None else None})
    return rows, ", ".join(sorted(where)) or "not run"


def convention(spaces: set[str], kind: str) -> str:
    space = "RGB channels" if spaces == {"rgb"} else "Y channel of BT.601 (kept as float)"
    degradation = ("LR = MATLAB bicubic imresize (a = −0.5, antialiased)" if kind == "BI" else
                   "LR = 7×7 Gaussian blur σ = 1.6 (replicate borders), then every 3rd pixel from the 2nd")
    return (f"PSNR (dB) / SSIM on the {space}, HR cropped to a multiple of the scale, `s` border pixels shaved, "
            f"mean of per-image values; {degradation}; bicubic rows upsample with the same MATLAB bicubic. "
            "Best value of each column and scale in bold, second underlined; Δ rows compare our measurement "
            "with the paper's row of the same method.")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("bsr", "templates"), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["tex"] = lambda s: (str(s).replace("\\", r"\textbackslash{}").replace("&", r"\&")
                                    .replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")
                                    .replace("Δ", r"$\Delta$").replace("−", "$-$").replace("×", r"$\times$")
                                    .replace("σ", r"$\sigma$").replace("†", r"$^\dagger$").replace("`", ""))
    return env


def training_curves(cfg: dict, out_png: str) -> None:
    from bsr.figures import plt, save_figure

    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for name in cfg["experiments"]:
        log = Path(layout.run_file(cfg["data_dir"], name, layout.RUN_METRICS))
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


def comparison(cfg: dict, dataset: str, out_png: str) -> None:
    """HR, bicubic and BSR crops of the set's first image, for the first experiment tested on the set."""
    from bsr.figures import plt, save_figure

    d = cfg["data_dir"]
    name = next(e for e, s in evaluate_jobs(cfg) if s == dataset)
    kind, scale = experiment_degradation(cfg, name)
    hr_path = list_images(layout.hr_dir(d, dataset))[0]
    hr = modcrop(read_image(hr_path), scale)
    bicubic = upscale_bicubic(degrade(hr, scale, kind), scale)
    sr = read_image(layout.sample_png(layout.eval_json(d, name, dataset)))
    h, w = hr.shape[:2]
    size = max(16, min(h, w) // 3)
    y, x = (h - size) // 2, (w - size) // 2
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    panels = [("HR", hr, None), ("Bicubic", bicubic, psnr(bicubic, hr, scale)), (f"BSR ({name})", sr, psnr(sr, hr, scale))]
    for ax, (title, img, value) in zip(axes, panels):
        ax.imshow(img[y:y + size, x:x + size], cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title if value is None else f"{title}\n{value:.2f} dB", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{dataset}: {hr_path.name}, ×{scale} {kind}", fontsize=10)
    save_figure(fig, out_png)


def write_report(cfg: dict, report_dir="reports") -> list[str]:
    """Render tables.md, tables.tex and the figures into `report_dir`; return the files written."""
    report_dir = str(report_dir)
    tables = []
    for kind in DEGRADATION_TITLES:
        datasets, rows, notes, spaces = build_table(cfg, kind)
        tables.append({"kind": kind, "title": DEGRADATION_TITLES[kind], "datasets": datasets, "rows": rows,
                       "notes": notes, "convention": convention(spaces, kind), "metrics": METRICS})
    ablation, ablation_where = build_ablation(cfg)
    context = {"name": cfg["name"], "tables": tables, "ablation": ablation, "ablation_where": ablation_where,
               "figures": {k: Path(v).relative_to(report_dir).as_posix() for k, v in figure_paths(report_dir, cfg).items()}}
    env = environment()
    written = []
    for template, out in (("tables.md.j2", "tables.md"), ("tables.tex.j2", "tables.tex")):
        write_text(Path(report_dir) / out, env.get_template(template).render(**context))
        written.append(f"{report_dir}/{out}")
    figures = figure_paths(report_dir, cfg)
    training_curves(cfg, figures["training_curves"])
    for dataset in dict.fromkeys(s for _, s in evaluate_jobs(cfg)):
        comparison(cfg, dataset, figures[f"compare_{dataset}"])
    return written + [figures["training_curves"]]

