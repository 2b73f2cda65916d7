import subprocess
import tomllib

import pytest
import yaml

from tests.conftest import REPO


def test_environment_yml_mirrors_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [p for p in pip_section if p != "-e .[dev]"] == pins
    assert all("==" in p for p in pins), "every dependency is pinned exactly"


def test_git_tracks_no_pipeline_state_or_stray_files():
    """What git tracks, not what .gitignore says: no data, run state or scratch files in the repository."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = listed.stdout.split()
    top = {path.split("/")[0] for path in tracked}
    assert top <= {".ci", ".dvc", ".dvcignore", ".gitignore", "README.md", "Snakefile", "bench", "bsr", "config",
                   "docs", "dvc.yaml", "dvc.lock", "environment.yml", "profiles", "pyproject.toml", "reports", "tests",
                   "workflow"}, top
    state = (".snakemake/", "mlruns/", "mlartifacts/", ".device/", "__pycache__/")
    assert not [p for p in tracked if p.startswith("data/") or p.startswith("reports/") and p != "reports/.gitkeep" or any(s in p for s in state)
                or p.startswith("mlflow.db") or p.endswith((".png", ".bmp", ".pt", ".npy"))]
