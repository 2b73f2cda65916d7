import os
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BSR_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "Set5" / "HR").is_dir():
        pytest.skip(f"the benchmark images are not at {DATA} (set BSR_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def paper_dir() -> Path:
    if not (SHARED / "paper" / "bsr_tables.tsv").is_file():
        pytest.skip(f"the paper's tables are not at {SHARED / 'paper'} (set BSR_SHARED)")
    return SHARED / "paper"
