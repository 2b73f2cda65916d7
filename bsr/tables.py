"""The building blocks of the report's tables, before any format's markup: cells of styled text, rows, tables
with notes, and how their numbers and intervals are written. bsr.report renders them; bsr.changes builds the
tables of what a config changed and what moved."""
from __future__ import annotations

from dataclasses import dataclass, field

from bsr import stats
from bsr.scores import Replicated

METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM"}
DIGITS = {"psnr": 2, "ssim": 4}


@dataclass
class Text:
    """One piece of a table cell, before a format's markup: a cell is a list of them, joined by " / "."""
    text: str
    style: str = ""  # "bold" or "underline"
    flag: str = ""   # footnote mark


@dataclass
class Row:
    cells: list[list[Text]]
    rule: bool = False  # a rule above: the row starts a block (a scale, a measured set)


@dataclass
class Table:
    title: str
    header: list[str]
    align: str  # one LaTeX column type per column: l or r
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Bootstrap:
    """How every interval of one report is drawn; the same seed gives the same report."""
    resamples: int = stats.RESAMPLES
    seed: int = stats.SEED
    level: float = stats.LEVEL

    def mean(self, scores) -> tuple[float, float]:
        """Of replicates × images: over the images for one replicate, over images and seeds for more."""
        return stats.replicate_ci(scores, self.resamples, self.seed, self.level)

    def paired(self, a, b, b_trained: bool = True) -> tuple[float, float]:
        return stats.replicate_difference_ci(a, b, b_trained, self.resamples, self.seed, self.level)

    def note(self, seeds: dict[str, int] | None = None) -> str:
        """What the intervals cover, given the replicates of each row (label -> N)."""
        images = (f"{self.level:.0%} percentile bootstrap interval over the test set's images ({self.resamples:,} "
                  f"resamples, seed {self.seed})")
        several = {label: n for label, n in (seeds or {}).items() if n > 1}
        if not several:
            return (f"Intervals [a, b]: {images}. It covers which images a set holds, not the randomness of "
                    "training (one training run per row).")
        once = [label for label, n in seeds.items() if n == 1]
        counts = listing(f"{label} {n}" for label, n in several.items())
        return (f"Intervals [a, b], {self.level:.0%}. Rows trained with several seeds ({counts} seeds): the value "
                "is the mean over the trainings of their set means, ±sd the seed standard deviation of a set "
                "mean, and the interval covers both which images the set holds and which seeds were drawn "
                "(mean ± t·se, se from the replicate × image variance components, Welch–Satterthwaite degrees of "
                "freedom: bsr/stats.py); wins count the images where the mean over the seeds scores higher. " + (
                    f"Rows trained once ({listing(once)}): a {images}, which covers the images, not training "
                    "randomness; compared with a row that has seeds, such a row borrows that row's seed variance."
                    if once else "Every row has seeds."))


def number(value: float, digits: int, signed: bool = False) -> str:
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")


def with_interval(value: float, interval: tuple[float, float], digits: int, signed: bool = False) -> str:
    """`+0.12 [0.08, 0.16]`"""
    low, high = interval
    return f"{number(value, digits, signed)} [{number(low, digits)}, {number(high, digits)}]"


def optional(value: float | None, digits: int, signed: bool = False) -> str:
    return "–" if value is None else number(value, digits, signed)


def cell(*texts: str | Text) -> list[Text]:
    return [t if isinstance(t, Text) else Text(t) for t in texts]


def with_seeds(text: str, scores: Replicated, metric: str) -> str:
    """`30.12 [29.8, 30.4]`, and ` ±0.03 (3 seeds)` for a row with replicates."""
    if scores.seeds == 1:
        return text
    sd = stats.seed_sd(scores.matrix(metric))
    return f"{text} ±{number(sd, DIGITS[metric])} ({scores.seeds} seeds)"


def verdict(interval: tuple[float, float]) -> str:
    low, high = interval
    return "better" if low > 0 else "worse" if high < 0 else "within noise"


def listing(items) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
