"""MLflow logging, and the registration of trained models in the tracking store's model registry. The tracking URI
comes from the config, else MLFLOW_TRACKING_URI; with neither, nothing is logged and nothing is imported (mlflow
takes seconds to import)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from bsr.files import file_lock


def resolve_uri(configured: str | None, default: str | None = None) -> str | None:
    """The config's URI, else $MLFLOW_TRACKING_URI, else `default` (the pipeline's project sqlite store),
    made absolute: `train.json` records it, and `bsr evaluate` may run from another folder."""
    from bsr import BsrError

    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default
    if uri and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if uri and (uri.startswith("file:") or "://" not in uri and not uri.startswith("databricks")):
        # MLflow 3 refuses its file store (a folder, or file://) with a traceback.
        key = "tracking_uri" if configured else "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") \
            else "the default tracking URI"
        raise BsrError(f"{key}: {uri} is MLflow's file store, which MLflow 3 no longer opens; expected "
                       f"sqlite:///PATH/mlflow.db or an http(s):// tracking server")
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside the database file, not into whatever folder we run from."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


def provenance(tracking: dict) -> dict:
    """MLflow tags that tell runs apart: the pipeline config a run came from (its sha256 when the run started),
    the config that one extends, the git commit and whether the work tree had uncommitted changes."""
    import hashlib
    import subprocess

    config = tracking.get("config")
    config_file = Path(config) if config else None
    tags = {"bsr.config": config or "none",
            "bsr.config_sha256": hashlib.sha256(config_file.read_bytes()).hexdigest()
            if config_file and config_file.is_file() else "none",
            "bsr.parent_config": tracking.get("parent_config") or "none"}
    try:
        git = {"capture_output": True, "text": True, "check": True, "timeout": 30}
        tags["bsr.git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], **git).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **git).stdout.strip()
        tags["bsr.git_dirty"] = "true" if dirty else "false"
    except (OSError, subprocess.SubprocessError):
        tags["bsr.git_commit"] = tags["bsr.git_dirty"] = "unknown"  # not a git checkout, or no git
    return tags


# MLflow retries an unreachable server for minutes (7 tries, backoff factor 2, 120 s per request); these bound a
# request's wait, unless the user's environment sets them. The probe below fails a dead server at once.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
PROBE_SECONDS = 10


def connect(uri: str) -> None:
    """Before the first call to a tracking server: bound MLflow's HTTP waits, and make sure the server answers,
    else one error naming the URI (within PROBE_SECONDS) rather than minutes of retries and a traceback."""
    import urllib.error
    import urllib.request

    from bsr import BsrError

    if not uri.startswith(("http://", "https://")):
        return
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError:
        pass  # it answers (a proxy may not serve /health): MLflow's own calls say what is wrong, if anything
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise BsrError(f"{uri}: the MLflow tracking server does not answer ({reason}); start it, or point "
                       f"tracking_uri / MLFLOW_TRACKING_URI at one that runs") from None


def store_lock(uri: str):
    """Parallel jobs must not create (migrate) one sqlite store, nor one experiment, at the same time."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    db = Path(uri[len("sqlite:///"):])
    return file_lock(db.with_name(db.name + ".lock"))


@contextlib.contextmanager
def process_wide_store(uri: str):
    """`uri` as MLflow's process-wide tracking and registry URI for the block, then whatever was there before,
    $MLFLOW_TRACKING_URI and $MLFLOW_REGISTRY_URI included (mlflow.set_tracking_uri sets the variable). Model
    logging takes no URI argument, and a model version looks its logged model up through the process-wide
    URI: this keeps both off the user's default store, and leaves no trace for the code that runs after."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    variables = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    # Private: MLflow's getters resolve a default, and only the unset value restores "not set".
    tracking_before, registry_before = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking_before)
        mlflow.set_registry_uri(registry_before)
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# The logged model's tag that identifies its weights, so that a rerun finds the model it logged before.
WEIGHTS_TAG = "bsr.weights_sha256"


class Tracker:
    """One MLflow run, reopened by id on resume; a no-op when there is no tracking URI.

    A run id (or parent run id) that the store does not hold, say after the tracking URI changed or the data
    moved to another machine, is said on stderr and replaced by a new run (or no parent): the numbers are
    still logged, and training or evaluation goes on. A new run is created with `tags`, so that a process
    killed right after finds it by them on its rerun."""

    def __init__(self, uri: str | None, experiment: str, run_name: str, run_id: str | None = None,
                 parent_run_id: str | None = None, tags: dict | None = None):
        self.client = None
        self.uri, self.experiment, self.run_id, self.parent_run_id = uri, experiment, run_id, parent_run_id
        self.reopened = False
        if uri is None:
            return
        from mlflow.tracking import MlflowClient

        connect(uri)
        with store_lock(uri):
            # Models are registered in the tracking store itself, never in a $MLFLOW_REGISTRY_URI elsewhere.
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            self.reopened = run_id is not None and self._known(run_id, "run")
            if not self._known(parent_run_id, "parent run"):
                self.parent_run_id = parent_run_id = None
            if not self.reopened:
                found = self.client.get_experiment_by_name(experiment)
                experiment_id = found.experiment_id if found else self.client.create_experiment(
                    experiment, artifact_location=artifact_root(uri))
                tags = {**(tags or {}), "mlflow.runName": run_name}
                if parent_run_id:
                    tags["mlflow.parentRunId"] = parent_run_id
                self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def _known(self, run_id: str | None, what: str) -> bool:
        from mlflow.exceptions import MlflowException

        if run_id is None:
            return True
        try:
            self.client.get_run(run_id)
            return True
        except MlflowException:
            print(f"bsr: MLflow {what} {run_id} is not in {self.uri}; "
                  f"{'logging to a new run' if what == 'run' else 'logging without it'}", file=sys.stderr)
            return False

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def mark_running(self) -> None:
        if self.enabled:
            self.client.update_run(self.run_id, status="RUNNING")

    def supersede_reruns(self) -> int:
        """Delete (MLflow's soft delete, which `mlflow gc` purges and the UI can restore) the earlier runs of this
        run's name under its parent, tagging each with the run that replaces it: a rerun of an evaluation leaves
        one run of its name, not a pile. Returns how many."""
        if not self.enabled or not self.parent_run_id:
            return 0
        run = self.client.get_run(self.run_id)
        name = run.info.run_name.replace("'", "\\'")
        earlier = [r for r in self.client.search_runs(
            [run.info.experiment_id],
            f"tags.mlflow.parentRunId = '{self.parent_run_id}' and attributes.run_name = '{name}'")
            if r.info.run_id != self.run_id]
        for old in earlier:
            self.client.set_tag(old.info.run_id, "bsr.superseded_by", self.run_id)
            self.client.delete_run(old.info.run_id)
        return len(earlier)

    def set_tags(self, tags: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: dict, step: int, run_id: str | None = None) -> None:
        """Into this run, or into `run_id` (an evaluation's parent training run)."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id or self.run_id,
                              metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(Path(path)), artifact_path)

    def log_model(self, folder: Path, weights_sha256: str, flavor: dict) -> str | None:
        """The id of this run's logged model with these weights: the files of `folder` (a model folder,
        bsr.model_files) logged now under an MLmodel of flavour `bsr` (`flavor`: what it describes), unless an
        earlier call logged it already, as when the pipeline reruns a finished training to rewrite its outputs.
        No MLflow flavour writes it: theirs save programs or pickles, which load by running code."""
        if not self.enabled:
            return None
        import shutil
        import tempfile

        import yaml
        from mlflow.entities import LoggedModelStatus

        from bsr.model_files import FLAVOR

        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        logged = self.client.search_logged_models(
            [experiment_id], f"source_run_id = '{self.run_id}' AND tags.`{WEIGHTS_TAG}` = '{weights_sha256}'")
        ready = [m.model_id for m in logged if m.status == LoggedModelStatus.READY]
        if ready:
            return ready[0]
        model_id = self.client.create_logged_model(experiment_id, name="model", source_run_id=self.run_id,
                                                   tags={WEIGHTS_TAG: weights_sha256}).model_id
        with tempfile.TemporaryDirectory(prefix="bsr-mlflow-model-") as tmp:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            Path(tmp, "MLmodel").write_text(yaml.safe_dump({
                "artifact_path": "model", "flavors": {FLAVOR: flavor}, "model_id": model_id, "run_id": self.run_id,
                "utc_time_created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}, sort_keys=False))
            self.client.log_model_artifacts(model_id, tmp)
        self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        return model_id

    def register_model(self, model_id: str, name: str, alias: str | None) -> str:
        """models:/NAME/VERSION of the version of registered model `name` made from logged model `model_id`:
        created unless this run registered that model already (a rerun adds no version), with `alias` moved
        onto it, since it holds what the run folder holds now."""
        source = f"models:/{model_id}"
        with store_lock(self.uri), process_wide_store(self.uri):
            versions = self.client.search_model_versions(f"name = '{name}' AND run_id = '{self.run_id}'")
            version = next((v.version for v in versions if v.source == source), None)
            if version is None:
                if not self.client.search_registered_models(f"name = '{name}'"):
                    self.client.create_registered_model(name)
                version = self.client.create_model_version(name, source, run_id=self.run_id,
                                                           model_id=model_id).version
            if alias:
                self.client.set_registered_model_alias(name, alias, version)
        return f"models:/{name}/{version}"

    def finish(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self.client.set_terminated(self.run_id, status=status)
