"""The report's statistics against slow references, and its tables built from real evaluation outputs.

The evaluation outputs are real: bicubic scored by bsr.evaluate.eval_bicubic on Set5, and in place of trained
models (minutes of training) a real upscaler that differs from bicubic image by image (bicubic plus an unsharp
mask), scored by bsr.evaluate.score_set and written by bsr.evaluate.write_scores like any evaluation.
"""
import itertools
import json
import re
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from scipy.ndimage import gaussian_filter

from bsr import BsrError, layout
from bsr.degrade import to_uint8, upscale_bicubic
from bsr.evaluate import eval_bicubic, score_set, write_scores
from bsr.report import write_report, write_tables
from bsr.stats import bootstrap_ci, paired_bootstrap_ci, win_rate
from tests.conftest import command_env, tiny_pipeline_config

# Unsharp-mask strength per experiment of tiny_pipeline_config, and the iterations its train.json records:
# BD_x3 is a short run (under a tenth of the paper's 300,000), the others are not.
SHARPEN = {"BI_x2": 0.6, "BD_x3": 1.0, "ablation_baseline": 0.6, "ablation_wo_rfs": 0.3}
ITERATIONS = {"BI_x2": 300_000, "BD_x3": 300, "ablation_baseline": 100_000, "ablation_wo_rfs": 100_000}


def sharpened_bicubic(scale: int, amount: float):
    def super_resolve(lr):
        up = upscale_bicubic(lr, scale).astype(np.float64)
        sigma = (1.0, 1.0, 0.0)[:up.ndim]
        return to_uint8(up + amount * (up - gaussian_filter(up, sigma)))
    return super_resolve


def write_evaluation(cfg: dict, name: str, dataset: str, scores: pd.DataFrame) -> None:
    exp = cfg["experiments"][name]
    write_scores(layout.eval_json(cfg["data_dir"], name, dataset), scores, verb="evaluate", scale=exp["scale"],
                 kind=exp["degradation"], space="y", method="BSR", experiment=name, dataset=dataset,
                 mlflow_run_id=f"run-{name}")


def score_experiment(cfg: dict, name: str, dataset: str, amount: float) -> pd.DataFrame:
    exp = cfg["experiments"][name]
    return score_set(layout.hr_dir(cfg["data_dir"], dataset), exp["scale"], exp["degradation"],
                     sharpened_bicubic(exp["scale"], amount))


@pytest.fixture(scope="module")
def evaluated(shared_data, tmp_path_factory) -> dict:
    """tiny_pipeline_config's evaluation outputs on Set5, in a fresh data_dir: the config."""
    return write_evaluated(shared_data, tmp_path_factory.mktemp("report") / "data")


def write_evaluated(shared_data, data_dir: Path) -> dict:
    cfg = tiny_pipeline_config(shared_data, str(data_dir))
    hr = layout.hr_dir(data_dir, "Set5")
    (data_dir / "hr").mkdir(parents=True)
    (data_dir / "hr" / "Set5").symlink_to(shared_data / "Set5" / "HR")
    for kind, scale in (("BI", 2), ("BD", 3)):
        eval_bicubic(hr, scale, kind, layout.bicubic_json(data_dir, "Set5", kind, scale))
    for name, amount in SHARPEN.items():
        write_evaluation(cfg, name, "Set5", score_experiment(cfg, name, "Set5", amount))
        summary = Path(layout.run_file(data_dir, name, layout.RUN_SUMMARY))  # what the report reads of a training
        summary.parent.mkdir(parents=True)
        summary.write_text(json.dumps({"name": name, "iterations": ITERATIONS[name]}))
    return cfg


def per_image(cfg: dict, summary_json: str, metric: str = "psnr") -> pd.Series:
    return pd.read_csv(layout.scores_csv(summary_json), index_col="image")[metric]


def model_and_bicubic(cfg: dict, name: str, metric: str = "psnr") -> tuple[np.ndarray, np.ndarray]:
    exp = cfg["experiments"][name]
    ours = per_image(cfg, layout.eval_json(cfg["data_dir"], name, "Set5"), metric)
    bicubic = per_image(cfg, layout.bicubic_json(cfg["data_dir"], "Set5", exp["degradation"], exp["scale"]), metric)
    return ours.to_numpy(), bicubic[ours.index].to_numpy()


def exact_bootstrap_quantiles(a: np.ndarray, b: np.ndarray | None, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the exact bootstrap distribution: every one of the n^n resamples, one by one.
    With `b`, the resample picks pairs (a[i], b[i]) and the statistic is mean(a) − mean(b)."""
    n = len(a)
    stats = []
    for picks in itertools.product(range(n), repeat=n):
        mean_a = sum(a[i] for i in picks) / n
        stats.append(mean_a - sum(b[i] for i in picks) / n if b is not None else mean_a)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def close_to(ours: tuple[float, float], reference: tuple[float, float], spread: float) -> bool:
    """Both bounds within 0.15 standard errors: about 5 Monte Carlo standard deviations at 10,000 resamples."""
    return all(abs(x - y) <= 0.15 * spread for x, y in zip(ours, reference))


def test_bootstrap_ci_of_a_mean_matches_the_exact_bootstrap_on_set5(evaluated):
    ours, _ = model_and_bicubic(evaluated, "BI_x2")
    interval = bootstrap_ci(ours, resamples=10_000, seed=0)
    assert close_to(interval, exact_bootstrap_quantiles(ours, None), ours.std() / np.sqrt(len(ours)))
    assert interval[0] < ours.mean() < interval[1]


def test_paired_bootstrap_ci_matches_the_exact_bootstrap_of_pairs_on_set5(evaluated):
    ours, bicubic = model_and_bicubic(evaluated, "BI_x2")
    interval = paired_bootstrap_ci(ours, bicubic, resamples=10_000, seed=0)
    diff = ours - bicubic
    assert close_to(interval, exact_bootstrap_quantiles(ours, bicubic), diff.std() / np.sqrt(len(diff)))


def test_paired_bootstrap_ci_matches_scipy(evaluated):
    ours, bicubic = model_and_bicubic(evaluated, "BD_x3")
    reference = scipy_stats.bootstrap((ours, bicubic), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True,
                                      vectorized=True, method="percentile", n_resamples=10_000,
                                      confidence_level=0.95, random_state=np.random.default_rng(1))
    interval = paired_bootstrap_ci(ours, bicubic, resamples=10_000, seed=0)
    spread = (ours - bicubic).std() / np.sqrt(len(ours))
    assert close_to(interval, (reference.confidence_interval.low, reference.confidence_interval.high), spread)


def test_bootstrap_is_deterministic_for_a_seed(evaluated):
    ours, bicubic = model_and_bicubic(evaluated, "BI_x2", "ssim")
    assert paired_bootstrap_ci(ours, bicubic, 10_000, 3) == paired_bootstrap_ci(ours, bicubic, 10_000, 3)
    assert paired_bootstrap_ci(ours, bicubic, 10_000, 3) != paired_bootstrap_ci(ours, bicubic, 10_000, 4)
    with pytest.raises(ValueError, match="one value per image"):
        paired_bootstrap_ci(ours, bicubic[:-1])


def test_win_rate_counts_images_strictly_better(evaluated):
    ours, bicubic = model_and_bicubic(evaluated, "BD_x3")
    assert win_rate(ours, bicubic) == (sum(1 for x, y in zip(ours, bicubic) if x > y), 5)
    assert win_rate(ours, ours) == (0, 5)


def interval_text(value: float, interval: tuple[float, float], digits: int, signed: bool = False) -> str:
    """The report's `+0.12 [0.08, 0.16]`, written out independently; negative numbers take a minus sign."""
    sign = "+" if signed else ""
    text = f"{value:{sign}.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text.replace("-", "−")


def test_reproduction_table_shows_ours_paper_and_bicubic_with_intervals_and_wins(evaluated, tmp_path):
    write_tables(evaluated, "tiny.yaml", tmp_path)
    md = (tmp_path / "tables.md").read_text()
    d = evaluated["data_dir"]
    bsr = json.loads(open(layout.eval_json(d, "BI_x2", "Set5")).read())
    bicubic = json.loads(open(layout.bicubic_json(d, "Set5", "BI", 2)).read())
    ours, theirs = model_and_bicubic(evaluated, "BI_x2")
    wins = sum(ours > theirs)
    expected = (f"| Set5 BI ×2 | BI_x2 (300,000) | PSNR (dB) | 38.30 | "
                f"{interval_text(bsr['psnr'], bootstrap_ci(ours), 2)} | {bsr['psnr'] - 38.30:+.2f} | 33.66 | "
                f"{bicubic['psnr']:.2f} | {interval_text(bsr['psnr'] - bicubic['psnr'], paired_bootstrap_ci(ours, theirs), 2, True)}"
                f" | {wins}/5 |").replace("-", "−")
    assert expected in md
    ours_ssim, theirs_ssim = model_and_bicubic(evaluated, "BI_x2", "ssim")
    ssim_delta = interval_text(bsr["ssim"] - bicubic["ssim"], paired_bootstrap_ci(ours_ssim, theirs_ssim), 4, True)
    assert "|  |  | SSIM | 0.9616 | " in md and f"| {ssim_delta} | {sum(ours_ssim > theirs_ssim)}/5 |" in md
    assert "Set5 BD ×3 | BD_x3 (300) | PSNR (dB) | 34.76 |" in md
    assert "10,000 resamples, seed 0" in md
    # the rule for short runs names BD_x3 (300 iterations) and not BI_x2 (300,000)
    short = next(line for line in md.splitlines() if line.startswith("Too short to mean anything"))
    assert "BD_x3 trained 300 iterations" in short and "BI_x2" not in short
    assert "Set5 has 5 images: intervals over so few images are rough" in md


def test_literature_table_ranks_our_rows_only_on_the_sets_we_measured(evaluated, tmp_path):
    write_tables(evaluated, "tiny.yaml", tmp_path)
    md = (tmp_path / "tables.md").read_text()
    bicubic = json.loads(open(layout.bicubic_json(evaluated["data_dir"], "Set5", "BI", 2)).read())
    row = next(line for line in md.splitlines() if line.startswith("| **Bicubic (ours)** | ×2 |"))
    assert row == f"| **Bicubic (ours)** | ×2 | {bicubic['psnr']:.2f} / {bicubic['ssim']:.4f} | – | – | – | – |"
    assert abs(bicubic["psnr"] - 33.66) <= 0.03  # the paper's bicubic cell, as tests/test_metrics.py checks
    assert "| **BSR (ours)** | ×3 | " in md and "| **BSR (ours)** | ×4 |" not in md  # BD ×3; no BI ×3 run
    assert "We measured none of these sets" not in md
    assert "Δ Bicubic (ours) − paper" not in md  # the reproduction table holds every Δ


def test_ablation_compares_each_arm_with_our_baseline_image_by_image(evaluated, tmp_path):
    write_tables(evaluated, "tiny.yaml", tmp_path)
    md = (tmp_path / "tables.md").read_text()
    d = evaluated["data_dir"]
    arm = per_image(evaluated, layout.eval_json(d, "ablation_wo_rfs", "Set5"))
    base = per_image(evaluated, layout.eval_json(d, "ablation_baseline", "Set5"))[arm.index]
    means = {name: json.loads(open(layout.eval_json(d, name, "Set5")).read())["psnr"]
             for name in ("ablation_wo_rfs", "ablation_baseline")}
    delta = interval_text(means["ablation_wo_rfs"] - means["ablation_baseline"],
                          paired_bootstrap_ci(arm.to_numpy(), base.to_numpy()), 2, True)
    assert (f"| **w/o RFS** | uniform random patch sampling | "
            f"{interval_text(means['ablation_wo_rfs'], bootstrap_ci(arm.to_numpy()), 2)} | {delta} | "
            f"{sum(arm > base)}/5 | −0.05 |") in md
    assert "| w/o SC | without the skip connections | – | – | – | −0.10 |" in md
    assert "Our arms: Set5 BI ×2, each compared with our Baseline image by image (paired)" in md
    assert "| **Baseline** | full BSR: RFS + skip connections + L2+alpha\\*L1+beta\\*Lp |" in md  # * is not emphasis


def test_an_arm_no_different_from_the_baseline_is_said_to_be_so(evaluated, tmp_path):
    cfg = dict(evaluated, data_dir=str(tmp_path / "data"))
    shutil.copytree(evaluated["data_dir"], cfg["data_dir"], symlinks=True)
    write_evaluation(cfg, "ablation_wo_rfs", "Set5", score_experiment(cfg, "ablation_wo_rfs", "Set5",
                                                                      SHARPEN["ablation_baseline"]))
    write_tables(cfg, "tiny.yaml", tmp_path / "reports")
    md = (tmp_path / "reports" / "tables.md").read_text()
    assert "| +0.00 [0.00, 0.00] | 0/5 | −0.05 |" in md
    assert "The interval includes 0 for w/o RFS: no measurable difference from our Baseline." in md


def test_image_names_that_are_numbers_stay_names(tmp_path):
    from bsr.scores import read_scores

    summary = str(tmp_path / "BSD100.json")
    write_scores(summary, pd.DataFrame({"image": ["101085", "3096"], "psnr": [30.0, 31.0], "ssim": [0.9, 0.8]}),
                 verb="eval-bicubic", scale=2, kind="BI", space="y", method="Bicubic")
    assert read_scores(summary).images.loc["3096", "psnr"] == 31.0  # BSD100's names, as the HR file stems


def test_evaluations_of_different_images_are_not_paired(evaluated, tmp_path):
    cfg = dict(evaluated, data_dir=str(tmp_path / "data"))
    shutil.copytree(evaluated["data_dir"], cfg["data_dir"], symlinks=True)
    scores = score_experiment(cfg, "ablation_wo_rfs", "Set5", 0.3)
    write_evaluation(cfg, "ablation_wo_rfs", "Set5", scores[scores["image"] != "bird"])
    with pytest.raises(BsrError, match="score different images"):
        write_tables(cfg, "tiny.yaml", tmp_path / "reports")


def test_tables_are_deterministic_for_a_seed_and_refuse_too_few_resamples(evaluated, tmp_path):
    first = [Path(path).read_text() for path in write_tables(evaluated, "tiny.yaml", tmp_path / "a")]
    again = [Path(path).read_text() for path in write_tables(evaluated, "tiny.yaml", tmp_path / "b")]
    other = Path(write_tables(evaluated, "tiny.yaml", tmp_path / "c", seed=1)[0]).read_text()
    assert first == again and other != first[0] and "seed 1" in other
    with pytest.raises(BsrError, match="at least 10,000"):
        write_tables(evaluated, "tiny.yaml", tmp_path / "d", resamples=1000)


def test_latex_is_a_fragment_and_html_holds_every_table(evaluated, tmp_path):
    write_tables(evaluated, "tiny.yaml", tmp_path)
    tex = (tmp_path / "tables.tex").read_text()
    assert r"\documentclass" not in tex and tex.count(r"\begin{tabular}") == 4 and r"\toprule" in tex
    assert r"\textbf{Bicubic (ours)} & $\times$2" in tex
    assert r"\input{tables}" in (tmp_path / "tables_standalone.tex").read_text()
    html = (tmp_path / "tables.html").read_text()
    assert html.count("<table>") == 4 and "<b>Bicubic (ours)</b>" in html and "<caption>" in html


def pdf_font_types(pdf) -> set[str]:
    """The /Subtype of every font of a PDF (Type1, Type3, TrueType...), read from its streams as pdfTeX
    writes them (font dictionaries in zlib-compressed object streams): the type column of poppler's
    `pdffonts`, which is not installed here."""
    data = open(pdf, "rb").read()
    texts = [data]
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            texts.append(zlib.decompress(stream))
        except zlib.error:
            pass  # a stream that is not zlib (an image, a font program's other filters)
    fonts = re.findall(rb"/Type\s*/Font\s*/Subtype\s*/(\w+)|/Subtype\s*/(\w+)\s*/Type\s*/Font", b"".join(texts))
    return {(a or b).decode() for a, b in fonts}


def compile_standalone(report_dir) -> set[str]:
    """pdflatex on tables_standalone.tex: the PDF's font types."""
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables_standalone.tex"],
                   cwd=report_dir, check=True, capture_output=True)
    pdf = report_dir / "tables_standalone.pdf"
    assert pdf.stat().st_size > 10_000
    return pdf_font_types(pdf)


# A label with every character LaTeX reads as markup, and HTML with a line break for Markdown.
TEX_LABEL = "w/o RFS $_%#{}~^&\\"
HTML_LABEL = "<script>alert(1)</script>\nL2"


@pytest.mark.slow
def test_standalone_latex_compiles_with_type1_fonts_and_notes_as_wide_as_the_table(evaluated, tmp_path):
    """Any label compiles, and no table is wider than the page (an overfull box: its right columns would fall
    off it); Table 1 of this config is wider than the line before it is scaled."""
    if not shutil.which("pdflatex"):
        pytest.fail("pdflatex is not installed: .ci/run installs texlive to compile the report's tables_standalone.tex")
    cfg = dict(evaluated, experiments={**evaluated["experiments"], "ablation_wo_rfs": {
        **evaluated["experiments"]["ablation_wo_rfs"], "ablation": TEX_LABEL}})
    write_tables(cfg, "tiny.yaml", tmp_path)
    assert compile_standalone(tmp_path) == {"Type1"}
    log = (tmp_path / "tables_standalone.log").read_text()
    assert "Overfull" not in log and "Underfull" not in log
    assert r"w/o RFS \$\_\%\#\{\}\textasciitilde{}\textasciicircum{}\&\textbackslash{}" in \
        (tmp_path / "tables.tex").read_text()


@pytest.mark.slow
def test_the_demo_tables_fit_the_page(demo_run, tmp_path):
    """The demo's Table 1 is 62 pt wider than the page unscaled, and its right columns would fall off."""
    project, _ = demo_run
    for name in ("tables.tex", "tables_standalone.tex"):
        shutil.copy(project / "reports" / "bsr-demo" / name, tmp_path / name)
    compile_standalone(tmp_path)
    assert "Overfull" not in (tmp_path / "tables_standalone.log").read_text()


def test_markdown_cells_hold_html_and_line_breaks_as_text(evaluated, tmp_path):
    cfg = dict(evaluated, experiments={**evaluated["experiments"], "ablation_wo_rfs": {
        **evaluated["experiments"]["ablation_wo_rfs"], "ablation": HTML_LABEL}})
    write_tables(cfg, "tiny.yaml", tmp_path)
    md = (tmp_path / "tables.md").read_text()
    assert "<script>" not in md and "| **&lt;script&gt;alert(1)&lt;/script&gt; L2** |" in md
    assert "&lt;script&gt;" in (tmp_path / "tables.html").read_text()


@pytest.mark.slow
def test_demo_report_renders_in_under_five_seconds(demo_run, tmp_path, monkeypatch):
    from bsr.config import load_pipeline

    project, _ = demo_run
    monkeypatch.chdir(project)
    cfg = load_pipeline("config/demo.yaml")
    start = time.perf_counter()
    write_report(cfg, "config/demo.yaml", str(tmp_path / "reports"))
    seconds = time.perf_counter() - start
    print(f"demo report: {seconds:.2f} s")
    assert seconds < 5
    md = (tmp_path / "reports" / "tables.md").read_text()
    assert "| demo_test BI ×2 | BI_x2 (300) | PSNR (dB) | – |" in md
    assert "the arms' differences describe this short schedule, not the paper's" in md and "(2 seeds)" not in md
    assert "| **w/o RFS** | uniform random patch sampling |" in md and "| within noise |" in md
    assert "| demo_test BI ×2 | BSR+ (ours): BI_x2 (300) | PSNR (dB) | – |" in md


@pytest.mark.slow
def test_the_report_reads_only_the_inputs_the_stage_table_lists(demo_run, tmp_path):
    """`bsr report` in a folder holding nothing but its job's inputs writes what it writes in the demo."""
    from bsr import stages
    from bsr.config import load_pipeline

    project, _ = demo_run
    job = stages.job(load_pipeline(project / "config" / "demo.yaml"), "config/demo.yaml", "report", {})
    for path in job.input_paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (project / path).is_dir() else shutil.copy)(project / path, tmp_path / path)
    subprocess.run(job.args, cwd=tmp_path, check=True, capture_output=True, env=command_env())
    for path in job.outputs.values():
        if path.endswith((".md", ".tex", ".html")):
            assert (tmp_path / path).read_text() == (project / path).read_text(), path
        else:
            assert (tmp_path / path).stat().st_size > 1000, path


def test_a_rescored_cell_shows_only_beside_its_own_scale(evaluated, tmp_path):
    """One published RCAN entry, at Set5 BI ×2 (fewer scales than the paper's ×2, ×3 and ×4): its score is
    beside RCAN's ×2 cell alone."""
    cfg = dict(evaluated, data_dir=str(tmp_path / "data"), published={"RCAN": [
        {"dataset": "Set5", "degradation": "BI", "scale": 2, "source": "file:///released/RCAN"}]})
    shutil.copytree(evaluated["data_dir"], cfg["data_dir"], symlinks=True)
    write_scores(layout.rescored_json(cfg["data_dir"], "RCAN", "Set5", "BI", 2),
                 pd.DataFrame({"image": ["baby"], "psnr": [33.68], "ssim": [0.9]}), verb="score", scale=2, kind="BI",
                 space="y", method="RCAN", dataset="Set5")
    write_tables(cfg, "tiny.yaml", tmp_path / "reports")
    table2 = (tmp_path / "reports" / "tables.md").read_text().split("## Table 2.")[1].split("## Table 3")[0]
    rcan = {line.split(" | ")[1]: line for line in table2.splitlines() if line.startswith("| RCAN |")}
    assert "38.27 (33.68)‡" in rcan["×2"]
    assert "(33.68)" not in rcan["×3"] + rcan["×4"] and "‡" not in rcan["×3"] + rcan["×4"]
    assert "re-scored: RCAN Set5 ×2 from file:///released/RCAN" in table2


def test_what_moved_compares_the_replicate_means_a_variant_of_replicates_shows(evaluated, tmp_path, monkeypatch):
    """A variant that gives BI_x2 a second seed: replicate 0 is its parent's run, yet the row's value (the mean
    over the seeds) and N moved."""
    import yaml

    from bsr.config import load_pipeline
    from bsr.stages import eval_path, run_path

    monkeypatch.chdir(tmp_path)
    shutil.copytree(evaluated["data_dir"], "data", symlinks=True)
    Path("config").mkdir()
    Path("config/tiny.yaml").write_text(yaml.safe_dump(dict(evaluated, data_dir="data")))
    Path("config/tiny_seeds.yaml").write_text("extends: config/tiny.yaml\nexperiments:\n  BI_x2: {replicates: 2}\n")
    cfg = load_pipeline("config/tiny_seeds.yaml")
    second = eval_path(cfg, "BI_x2-r1", "Set5")
    assert second.startswith("data/variants/tiny_seeds/") and eval_path(cfg, "BI_x2", "Set5") == "data/eval/BI_x2/Set5.json"
    exp = cfg["experiments"]["BI_x2"]
    write_scores(second, score_experiment(cfg, "BI_x2", "Set5", 1.2), verb="evaluate", scale=exp["scale"],
                 kind=exp["degradation"], space="y", method="BSR", experiment="BI_x2-r1", dataset="Set5", mlflow_run_id="run-BI_x2-r1")
    Path(run_path(cfg, "BI_x2-r1", layout.RUN_SUMMARY)).parent.mkdir(parents=True)
    Path(run_path(cfg, "BI_x2-r1", layout.RUN_SUMMARY)).write_text(json.dumps({"iterations": 300_000}))
    write_tables(cfg, "config/tiny_seeds.yaml", "out")
    moved = Path("out/tables.md").read_text().split("## Table 2.")[0].split("What moved")[1]
    row = next(line for line in moved.splitlines() if line.startswith("| BI_x2 | Set5 BI ×2 | PSNR (dB) |"))
    means = [json.loads(Path(path).read_text())["psnr"] for path in ("data/eval/BI_x2/Set5.json", second)]
    assert f"| {np.mean(means) - means[0]:+.2f} [".replace("-", "−") in row and "(2 seeds)" in row
    assert "nothing can have moved" not in moved and "one training on each side" not in moved
    assert "Rows trained once (BI_x2 (bsr-tiny))" in moved and "(BI_x2 (this) 2 seeds)" in moved


def bicubic_scores(cfg: dict, kind: str = "BI", scale: int = 2) -> pd.DataFrame:
    return pd.read_csv(layout.scores_csv(layout.bicubic_json(cfg["data_dir"], "Set5", kind, scale)), dtype={"image": str})


@pytest.mark.parametrize("where,record,problem", [
    # `bsr eval-bicubic --out` onto BSR's evaluation: Table 1 would show bicubic's numbers as BSR's
    ("eval", {"verb": "eval-bicubic", "method": "Bicubic", "scale": 2, "kind": "BI"},
     "verb is 'eval-bicubic', expected 'evaluate'"),
    # `bsr score --out` onto an arm's evaluation: a peer's score in the arm's seed mean
    ("arm", {"verb": "score", "method": "RCAN", "dataset": "Set5", "scale": 2, "kind": "BI"},
     "verb is 'score', expected 'evaluate'"),
    # written before records named their verb: its method and experiment still tell
    ("eval", {"method": "Bicubic", "scale": 2, "kind": "BI"}, "method is 'Bicubic', expected 'BSR'"),
    ("arm", {"verb": "evaluate", "method": "BSR", "experiment": "ablation_baseline", "dataset": "Set5",
             "scale": 2, "kind": "BI", "mlflow_run_id": "run-ablation_baseline"},
     "experiment is 'ablation_baseline', expected 'ablation_wo_rfs'"),
    ("bicubic", {"verb": "evaluate", "method": "BSR", "experiment": "BI_x2", "dataset": "Set5", "scale": 2,
                 "kind": "BI", "mlflow_run_id": "run-BI_x2"}, "verb is 'evaluate', expected 'eval-bicubic'"),
    ("bicubic", {"verb": "eval-bicubic", "method": "Bicubic", "scale": 3, "kind": "BD"},
     "kind is 'BD', expected 'BI'"),
    ("rescored", {"verb": "score", "method": "SRCNN", "dataset": "Set5", "scale": 2, "kind": "BI"},
     "method is 'SRCNN', expected 'RCAN'"),
])
def test_the_report_refuses_a_record_that_is_not_the_one_its_row_reads(evaluated, tmp_path, where, record, problem):
    """A summary replaced by another verb's, method's or run's (a mistyped --out before evaluation folders were
    marked) is one error naming the file and what its row expected, never another row's numbers."""
    cfg = dict(evaluated, data_dir=str(tmp_path / "data"), published={"RCAN": [
        {"dataset": "Set5", "degradation": "BI", "scale": 2, "source": "file:///released/RCAN"}]})
    shutil.copytree(evaluated["data_dir"], cfg["data_dir"], symlinks=True)
    d = cfg["data_dir"]
    rescored = layout.rescored_json(d, "RCAN", "Set5", "BI", 2)
    write_scores(rescored, bicubic_scores(cfg), verb="score", method="RCAN", dataset="Set5", scale=2, kind="BI",
                 space="y")
    path = {"eval": layout.eval_json(d, "BI_x2", "Set5"), "arm": layout.eval_json(d, "ablation_wo_rfs", "Set5"),
            "bicubic": layout.bicubic_json(d, "Set5", "BI", 2), "rescored": rescored}[where]
    verb = record.pop("verb", None)
    write_scores(path, bicubic_scores(cfg), verb=verb, space="y", **record)
    if verb is None:
        legacy = json.loads(Path(path).read_text())
        del legacy["verb"]
        Path(path).write_text(json.dumps(legacy))
    with pytest.raises(BsrError) as err:
        write_tables(cfg, "tiny.yaml", tmp_path / "reports")
    message = str(err.value)
    assert message.startswith(f"{path}: not the record its row reads ({problem}") and "\n" not in message
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_the_latex_compiles_for_labels_beyond_what_pdflatex_reads(evaluated, tmp_path):
    """`≥`, `∅` (the report's own mark of an absent setting) and an emoji compile; the label stays recognisable
    and Latin letters keep their accents."""
    if not shutil.which("pdflatex"):
        pytest.fail("pdflatex is not installed: .ci/run installs texlive to compile the report's tables_standalone.tex")
    cfg = dict(evaluated, experiments={**evaluated["experiments"], "ablation_wo_rfs": {
        **evaluated["experiments"]["ablation_wo_rfs"], "ablation": "RFS ≥ 2 ∅ café 🚀"}})
    write_tables(cfg, "tiny.yaml", tmp_path)
    compile_standalone(tmp_path)
    assert r"RFS $\geq$ 2 $\emptyset$ café [rocket]" in (tmp_path / "tables.tex").read_text()
