import tomllib

import yaml

from tests.conftest import REPO


def test_environment_yml_mirrors_pyproject_pins():
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [p for p in pip_section if p != "-e ."] == pins
    assert all("==" in p for p in pins), "every dependency is pinned exactly"


def test_gitignore_covers_pipeline_state():
    ignored = (REPO / ".gitignore").read_text().split()
    for entry in ("/data/", "/mlflow.db*", "/mlruns/", ".snakemake/"):
        assert entry in ignored
