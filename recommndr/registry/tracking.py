"""MLflow tracking and Model Registry: every training run is logged; the retrieval index and the
ranker are registered as versions; a new version gets the alias ``challenger``. The primitives the
promotion gate (``recommndr.lifecycle.gate``) needs are here: the champion's metric and moving an
alias; the decision is not.

SQLite tracking and registry in the working directory by default (``sqlite:///mlflow.db``, run
artifacts under ``mlruns/``); any ``MLFLOW_TRACKING_URI`` is honoured. Nothing is set at import.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recommndr.params import TrainConfig

log = logging.getLogger(__name__)
EXPERIMENT = "recommndr"
RETRIEVAL_MODEL = "recommndr-retrieval"
RANKER_MODEL = "recommndr-ranker"
PIP_REQUIREMENTS = ["onnxruntime", "numpy"]
_ALIAS_NOT_FOUND = re.compile(r"\bRegistered model alias \S+ not found\b")  # MLflow 3's wording


@dataclass(frozen=True)
class RegisteredRun:
    """A training run logged to MLflow, its models registered and aliased ``challenger``."""

    run_id: str
    versions: dict[str, str]  # registered model -> version
    metrics: dict[str, float]  # the run's metrics as logged (``@`` written ``_at_``)
    tracking_uri: str


def metric_key(name: str) -> str:
    """How a metric such as ``two_stage.ndcg@10`` is named in MLflow."""
    return name.replace("@", "_at_")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _metric_name(text: str) -> str:
    """A name MLflow accepts: letters, digits and _-. only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _flat(prefix: str, d: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flat(f"{key}.", v, out)
        else:
            out[key] = v
    return out


def log_and_register(
    artifacts: Path,
    cfg: TrainConfig,
    timings: dict[str, float],
    metrics: dict[str, Any] | None,
    uri: str | None = None,
) -> RegisteredRun:
    """Log a training run (parameters, timings, metrics, plots, the whole bundle) and register
    its retrieval index and ranker, aliased ``challenger``. Whether it becomes ``champion`` is the
    promotion gate's decision (``recommndr.lifecycle``), not this function's."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    import onnx
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    exp_id = _experiment(mlflow, uri)
    flat_metrics = _flat("", {k: v for k, v in (metrics or {}).items() if not k.startswith("_")}, {})
    flat_metrics = {metric_key(k): float(v) for k, v in flat_metrics.items() if isinstance(v, (int, float))}
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in _flat("", cfg.model_dump(), {}).items()})
        mlflow.log_metrics({f"time.{_metric_name(k)}_s": v for k, v in timings.items()})
        if flat_metrics:
            mlflow.log_metrics(flat_metrics)
        _log_plots(mlflow, artifacts, metrics)
        mlflow.log_artifacts(str(artifacts), artifact_path="bundle")
        versions = {}
        for name, file in ((RETRIEVAL_MODEL, "retrieval.onnx"), (RANKER_MODEL, "ranker.onnx")):
            info = mlflow.onnx.log_model(
                onnx.load(str(Path(artifacts) / file)),
                name=file.removesuffix(".onnx"),
                registered_model_name=name,
                pip_requirements=PIP_REQUIREMENTS,
                save_as_external_data=False,
            )
            versions[name] = str(info.registered_model_version)
        run_id = run.info.run_id
    client = MlflowClient(tracking_uri=uri)
    for name, v in versions.items():
        client.set_registered_model_alias(name, "challenger", v)
    log.info("registered %s (run %s) as challenger", versions, run_id)
    return RegisteredRun(run_id, versions, flat_metrics, uri)


def log_experiment(
    name: str,
    kind: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    figures: dict[str, Any],
    files: dict[str, str],
    uri: str | None = None,
) -> tuple[str, str]:
    """One run that is not a training run (an offline A/B test, say): its parameters, every
    number of ``metrics`` (nested dicts flattened to ``a.ctr``, ``diff.ctr.ci_low``), plots
    (``name.png`` -> matplotlib figure, under ``plots/``) and text files; tagged
    ``recommndr.kind``. Returns the run id and the tracking URI."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = uri or tracking_uri()
    exp_id = _experiment(mlflow, uri)
    flat = _flat("", metrics, {})
    numbers = {
        _metric_name(metric_key(k)): float(v)
        for k, v in flat.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=name) as run:
        mlflow.set_tag("recommndr.kind", kind)
        mlflow.log_params({k: str(v)[:500] for k, v in _flat("", params, {}).items()})
        mlflow.log_metrics(numbers)
        for fname, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{fname}")
        for fname, text in files.items():
            mlflow.log_text(text, fname)
        run_id = str(run.info.run_id)
    log.info("logged %s run %s", kind, run_id)
    return run_id, uri


def _experiment(mlflow: Any, uri: str) -> str:
    """The experiment's id at ``uri`` (created with its artifacts under ./mlruns for SQLite)."""
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        location = (Path.cwd() / "mlruns").resolve().as_uri() if uri.startswith("sqlite") else None
        return str(mlflow.create_experiment(EXPERIMENT, artifact_location=location))
    return str(exp.experiment_id)


class SearchLog:
    """A parameter search in MLflow: one parent run (the search's settings, the best trial, its
    plots) and, nested under it, one child run per trial (its parameters, metrics and state)."""

    def __init__(self, name: str, settings: dict[str, Any], uri: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        self._mlflow = mlflow
        self.uri = uri or tracking_uri()
        self._exp_id = _experiment(mlflow, self.uri)
        self._parent = mlflow.start_run(experiment_id=self._exp_id, run_name=name)
        self.run_id: str = self._parent.info.run_id
        mlflow.set_tag("recommndr.kind", "search")
        mlflow.log_params({k: str(v)[:500] for k, v in settings.items()})

    def trial(self, number: int, params: dict[str, Any], metrics: dict[str, float], state: str) -> None:
        mlflow = self._mlflow
        with mlflow.start_run(experiment_id=self._exp_id, run_name=f"trial {number}", nested=True):
            mlflow.set_tag("recommndr.trial_state", state)
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({_metric_name(metric_key(k)): float(v) for k, v in metrics.items()})

    def finish(self, best: dict[str, float], figures: dict[str, Any], files: dict[str, str]) -> None:
        """The best trial's metrics, the plots (``name.png`` -> matplotlib figure) and text files."""
        mlflow = self._mlflow
        mlflow.log_metrics({f"best.{_metric_name(metric_key(k))}": float(v) for k, v in best.items()})
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}")
        for name, text in files.items():
            mlflow.log_text(text, name)

    def close(self, failed: bool = False) -> None:
        self._mlflow.end_run(status="FAILED" if failed else "FINISHED")


def is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is MLflow saying that a registered model or alias does not exist.

    MLflow 3 reports a missing model as ``RESOURCE_DOES_NOT_EXIST`` but a missing alias of an
    existing model as ``INVALID_PARAMETER_VALUE`` "Registered model alias X not found." (the SQL
    and file stores and, through REST, a tracking server). Anything else (a database that cannot
    be opened, a refused login, a server error) is not "absent"."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return exc.error_code == "INVALID_PARAMETER_VALUE" and bool(_ALIAS_NOT_FOUND.search(str(exc.message)))


def alias_version(client: Any, model: str, alias: str) -> Any | None:
    """The model version ``model@alias`` points to; None when the model or the alias does not
    exist. Every other MLflow error is raised."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, alias)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise


def champion_metric(uri: str, metric: str) -> tuple[bool, float | None]:
    """Whether the ranker has a champion, and ``metric`` of the run it came from (None when that
    run did not log it). Only MLflow's "does not exist" means no champion; any other error (a
    locked database, a refused login) is raised: it must never read as "promote"."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    current = alias_version(client, RANKER_MODEL, "champion")
    if current is None:
        return False, None
    value = client.get_run(current.run_id).data.metrics.get(metric_key(metric))
    return True, None if value is None else float(value)


def set_alias(uri: str, versions: dict[str, str], alias: str) -> None:
    """Point ``alias`` of each registered model at its version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for name, v in versions.items():
        client.set_registered_model_alias(name, alias, v)


def _log_plots(mlflow: Any, artifacts: Path, metrics: dict[str, Any] | None) -> None:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imp_path = Path(artifacts) / "feature_importance.json"
    if imp_path.exists():
        imp = json.loads(imp_path.read_text())
        names = sorted(imp, key=imp.__getitem__)
        fig, ax = plt.subplots(figsize=(7, 8))
        ax.barh(names, [imp[n] for n in names])
        ax.set_xlabel("total gain")
        ax.set_title("Ranker feature importance")
        fig.tight_layout()
        mlflow.log_figure(fig, "plots/feature_importance.png")
        plt.close(fig)
    if metrics:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for model in [m for m in metrics if not m.startswith("_")]:
            ks = sorted(int(k.split("@")[1]) for k in metrics[model] if k.startswith("recall@"))
            for ax, m in zip(axes, ("recall", "ndcg"), strict=True):
                ax.plot(ks, [metrics[model][f"{m}@{k}"] for k in ks], marker="o", label=model)
                ax.set_title(f"{m}@k")
                ax.set_xlabel("k")
        axes[0].legend()
        fig.tight_layout()
        mlflow.log_figure(fig, "plots/metrics_by_k.png")
        plt.close(fig)


def log_drift(report: dict[str, Any], tags: dict[str, str], uri: str | None = None) -> str:
    """A drift check that flagged something, as an MLflow run: the verdicts and the figures as
    metrics, the per-feature table as ``drift/features.json`` and a plot of every quantity's PSI
    against its threshold. Returns the run id."""
    import json

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import matplotlib
    import mlflow

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    uri = uri or tracking_uri()
    exp_id = _experiment(mlflow, uri)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"drift {tags.get('variant', '')}".strip()) as run:
        mlflow.set_tags({"recommndr.kind": "drift", **tags})
        metrics: dict[str, float] = {f"drift.{k}": float(v) for k, v in report["kinds"].items()}
        metrics["validation_failure_rate"] = float(report["validation_failure_rate"])
        for name, f in report["features"].items():
            if f["psi"] is not None:
                metrics[_metric_name(f"psi.{name}")] = float(f["psi"])
        for part in ("score", "confidence"):
            if report[part]["psi"] is not None:
                metrics[f"{part}.psi"] = float(report[part]["psi"])
        metrics["confidence.drop"] = float(report["confidence"]["drop"])
        mlflow.log_metrics(metrics)
        mlflow.log_text(json.dumps(report, indent=2), "drift/report.json")
        rows = [
            (n, f["psi"], f["threshold"], f["drift"])
            for n, f in report["features"].items()
            if f["psi"] is not None
        ]
        rows += [(p, report[p]["psi"], report[p]["threshold"], report[p]["drift"]) for p in ("score", "confidence")
                 if report[p]["psi"] is not None]  # fmt: skip
        mlflow.log_text(json.dumps([dict(zip(("name", "psi", "threshold", "drift"), r, strict=True)) for r in rows],
                                   indent=2), "drift/features.json")  # fmt: skip
        if rows:
            rows.sort(key=lambda r: r[1])
            fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * len(rows))))
            ax.barh(
                [r[0] for r in rows],
                [r[1] for r in rows],
                color=["tab:red" if r[3] else "tab:blue" for r in rows],
            )
            ax.scatter(
                [r[2] for r in rows], [r[0] for r in rows], marker="|", color="black", s=80, label="threshold"
            )
            ax.set_xscale("log")
            ax.set_xlabel("PSI (red: flagged)")
            ax.legend(loc="lower right")
            ax.set_title("Drift per quantity")
            fig.tight_layout()
            mlflow.log_figure(fig, "plots/drift_psi.png")
            plt.close(fig)
        return str(run.info.run_id)
