"""Matplotlib for files only (no display), and figures saved atomically."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bsr.files import atomic_path  # noqa: E402


def save_figure(fig, out_png, dpi: int = 110) -> None:
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
