"""The ``recommndr`` command. One command per pipeline stage; make, dvc.yaml, Colab and CI call these."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from recommndr.config import get_settings
from recommndr.errors import RecommndrError
from recommndr.logging import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Recommndr: e-commerce recommendations.")
data_app = typer.Typer(no_args_is_help=True, help="Generate, import, validate, profile and split datasets.")
import_app = typer.Typer(no_args_is_help=True, help="Import real data into the dataset schema.")
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")
# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
log = logging.getLogger("recommndr.cli")

Scale = Literal["tiny", "small", "full"]


def _version(value: bool) -> None:
    if value:
        from recommndr import __version__

        out.print(f"recommndr {__version__}")
        raise typer.Exit()


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    configure_logging("DEBUG" if verbose else get_settings().log_level)


@data_app.command("generate")
def data_generate(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder to write the dataset into [default: DATA_DIR/SCALE].")
    ] = None,
    scale: Annotated[
        str, typer.Option(help="tiny, small or full (1M users x 100K products x 10M events).")
    ] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 42,
) -> None:
    """Generate a realistic synthetic shop: catalogue, users, events (and hidden ground truth)."""
    from recommndr.data.synthetic import generate
    from recommndr.data.synthetic.params import SCALES

    if scale not in SCALES:
        raise typer.BadParameter(
            f"unknown scale '{scale}'; choose one of {', '.join(SCALES)}", param_hint="--scale"
        )
    out_dir = out_dir or get_settings().data_dir / scale
    t0 = time.perf_counter()
    with err.status(f"generating the '{scale}' dataset ..."):
        s = generate(scale, out_dir, seed=seed)
    _summary(
        f"Generated '{scale}' (seed {seed}) in {time.perf_counter() - t0:.1f} s",
        {
            "users": f"{s.n_users:,}",
            "products": f"{s.n_items:,}",
            "events": f"{s.n_events:,}",
            "sessions": f"{s.n_sessions:,}",
            "written to": str(out_dir),
            "ground truth": str(out_dir / "ground_truth") + " (never used for training)",
        },
    )


@import_app.command("completejourney")
def import_completejourney(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write the dataset into [default: DATA_DIR/completejourney]."),
    ] = None,
) -> None:
    """dunnhumby 'The Complete Journey' (2,469 households, 2017; educational use) in the schema."""
    from recommndr.data.importers.completejourney import import_completejourney as run

    out_dir = out_dir or get_settings().data_dir / "completejourney"
    with err.status("importing The Complete Journey ..."):
        s = run(out_dir)
    _summary(
        "Imported The Complete Journey",
        {
            "users": f"{s.users:,}",
            "products": f"{s.products:,}",
            "events": f"{s.events:,}",
            "dropped lines": f"{s.dropped_lines:,} (quantity 0 or no sales value)",
            "written to": str(out_dir),
        },
    )


@import_app.command("movielens")
def import_movielens(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write the dataset into [default: DATA_DIR/movielens]."),
    ] = None,
) -> None:
    """MovieLens 100K (943 users, 1,682 movies, 1997-98; GroupLens terms: research use only), read
    from the files the 'recbole' package ships (pip install --no-deps recbole==1.2.1)."""
    from recommndr.data.importers.movielens import TERMS
    from recommndr.data.importers.movielens import import_movielens as run

    out_dir = out_dir or get_settings().data_dir / "movielens"
    t0 = time.perf_counter()
    with err.status("importing MovieLens 100K ..."):
        s = run(out_dir)
    _summary(
        f"Imported MovieLens 100K in {time.perf_counter() - t0:.1f} s",
        {
            "users": f"{s.users:,}",
            "products": f"{s.products:,} movies",
            "events": f"{s.events:,} ({s.views:,} views, {s.add_to_carts:,} carts, {s.purchases:,} purchases)",
            "mapping": "every rating a view; >= 4 stars also a cart; 5 stars also a purchase",
            "sessions": f"{s.sessions:,} (30-minute gap)",
            "period": f"{s.first:%Y-%m-%d} to {s.last:%Y-%m-%d}",
            "prices": "synthetic (a band of the release year)",
            "terms": TERMS,
            "read from": str(s.source),
            "written to": str(out_dir),
        },
    )


@import_app.command("events")
def import_events(
    events: Annotated[Path, typer.Option("--events", help="Events file (CSV or Parquet).")],
    products: Annotated[Path, typer.Option("--products", help="Products file (CSV or Parquet).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the dataset into.")],
    users: Annotated[Path | None, typer.Option("--users", help="Users file (optional).")] = None,
) -> None:
    """Your own events and catalogue, checked and converted; nothing is written if a row is unusable."""
    from recommndr.data.importers.files import import_files

    s = import_files(events, products, out_dir, users)
    rows = {
        "users": f"{s.users:,}",
        "products": f"{s.products:,}",
        "events": f"{s.events:,}",
        "written to": str(out_dir),
    }
    for i, d in enumerate(s.derived):
        rows[f"derived {i + 1}"] = d
    _summary("Imported your files", rows)


@data_app.command("validate")
def data_validate(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    report: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Run the Great Expectations suites; exit 0 when all pass, else 1 with a report of each failure."""
    from recommndr.data.validate import validate_dataset

    t0 = time.perf_counter()
    with err.status(f"validating {dataset} ..."):
        result = validate_dataset(dataset)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    took = time.perf_counter() - t0
    counts = ", ".join(f"{k} {v:,}" for k, v in result.row_counts.items())
    if result.success:
        out.print(f"[green]valid[/green]: {result.evaluated} expectations passed on {counts} ({took:.1f} s)")
        return
    t = Table(title=f"{len(result.failures)} of {result.evaluated} expectations failed on {dataset}")
    for col in ("table", "expectation", "column", "unexpected", "detail", "sample rows"):
        t.add_column(col, overflow="fold")
    for f in result.failures:
        n = "" if f.unexpected_count is None else f"{f.unexpected_count:,} ({f.unexpected_percent or 0:.3g}%)"
        samples = "\n".join(json.dumps(s, default=str) for s in f.samples[:3])
        t.add_row(f.table, f.expectation, f.column or "", n, f.detail, samples)
    out.print(t)
    raise typer.Exit(1)


@data_app.command("profile")
def data_profile(
    datasets: Annotated[list[Path], typer.Argument(help="One or more dataset folders, shown side by side.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write the profile(s) as JSON here.")
    ] = None,
) -> None:
    """Statistics that show realism: popularity skew, funnel, sessions, seasonality, cold start."""
    from recommndr.data.profile import ROWS, format_value, profile, shape_rows

    profiles = [profile(d) for d in datasets]
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        body = (
            profiles[0]
            if len(profiles) == 1
            else {str(d): p for d, p in zip(datasets, profiles, strict=True)}
        )
        out_file.write_text(json.dumps(body, indent=2, default=str) + "\n")
    if as_json:
        out.print_json(json.dumps({str(d): p for d, p in zip(datasets, profiles, strict=True)}, default=str))
        return
    t = Table(title="Dataset profile")
    t.add_column("statistic")
    for d in datasets:
        t.add_column(str(d), justify="right")
    for key, label, fmt in ROWS:
        t.add_row(label, *[format_value(p[key], fmt) for p in profiles])
    for label, values in shape_rows(profiles):
        t.add_row(label, *values)
    out.print(t)


@data_app.command("split")
def data_split(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for train/valid/test events.")],
    valid_days: Annotated[int, typer.Option(help="Days of validation before the test period.")] = 14,
    test_days: Annotated[int, typer.Option(help="Days at the end held out for testing.")] = 14,
    holdout_last_n: Annotated[
        int, typer.Option(help="Also move each user's last N training events to valid.")
    ] = 0,
) -> None:
    """Temporal split of the events into train, validation and test."""
    from recommndr.data.split import SplitConfig, split_dataset

    cfg = SplitConfig(valid_days, test_days, "user_last" if holdout_last_n else "time", holdout_last_n)
    counts = split_dataset(dataset, out_dir, cfg)
    _summary("Split", {k: f"{v:,}" for k, v in counts.items()} | {"written to": str(out_dir)})


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the artifacts.")],
    params: Annotated[Path, typer.Option(help="Parameters file (its 'train' section).")] = Path(
        "params.yaml"
    ),
    track: Annotated[bool, typer.Option(help="Log to MLflow and register the models.")] = True,
    eval_users: Annotated[
        int, typer.Option(help="Held-out users to evaluate on (the registry's gate).")
    ] = 20_000,
) -> None:
    """Fit retrieval, ranking and similarity models; export ONNX; write every artifact the API needs;
    evaluate on the hold-out; log to MLflow and register (challenger, champion if better)."""
    from recommndr.lifecycle.train import train_and_register
    from recommndr.params import load_train_config

    cfg = load_train_config(params)
    done = train_and_register(data, out_dir, cfg, track=track, eval_users=eval_users,
                              step=lambda what: err.print(f"{what} ..."))  # fmt: skip
    result, metrics, reg = done.result, done.metrics, done.registration
    rows = {f"{k} (s)": f"{v:.1f}" for k, v in result.timings.items()}
    rows |= {"ranker rows": f"{result.ranker_rows:,}", "ONNX parity (max abs diff)": f"{result.parity:.2e}",
             "users / products": f"{result.manifest['users']:,} / {result.manifest['items']:,}",
             "artifacts": str(out_dir)}  # fmt: skip
    if metrics:
        from recommndr.evaluation.evaluate import MODELS

        for m in MODELS:
            rows[f"{m} ndcg@10 / recall@50"] = f"{metrics[m]['ndcg@10']:.4f} / {metrics[m]['recall@50']:.4f}"
    if reg is not None:
        rows["MLflow run"] = f"{reg.run_id} ({reg.tracking_uri})"
        rows["registered versions"] = ", ".join(f"{k} v{v}" for k, v in reg.versions.items())
        rows["champion"] = ("yes: " if reg.champion else "no: ") + reg.reason
    _summary("Trained", rows)


@app.command("evaluate")
def evaluate_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder.")],
    artifacts: Annotated[
        Path | None,
        typer.Option(
            "--artifacts", help="Artifacts folder from `recommndr train` (its parameters are evaluated)."
        ),
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="Evaluate these parameters (a params file) instead of a bundle's.")
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="temporal: the last train.holdout_days; random: per-user random 75/25, seen removed."
        ),
    ] = "temporal",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    max_users: Annotated[int, typer.Option(help="Evaluate at most this many test users (sampled).")] = 20_000,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write the metrics as JSON here.")
    ] = None,
) -> None:
    """Offline metrics of two_stage, its first stage (als) and the baselines (global_popularity,
    popularity, sar, als_plain), all fit on the protocol's training part."""
    from recommndr.evaluation.protocols import PROTOCOLS
    from recommndr.lifecycle.assess import evaluate_artifacts, evaluate_params
    from recommndr.params import load_train_config

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}",
                                 param_hint="--protocol")  # fmt: skip
    if (artifacts is None) == (params is None):
        raise typer.BadParameter("give either --artifacts or --params", param_hint="--artifacts")
    step = (lambda what: err.print(f"{what} ...")) if not as_json else None
    if artifacts is not None:
        result = evaluate_artifacts(data, artifacts, protocol, max_users, progress=step)
    else:
        if not params.exists():  # type: ignore[union-attr]
            raise typer.BadParameter(f"{params} does not exist", param_hint="--params")
        result = evaluate_params(data, load_train_config(params), protocol, max_users, progress=step)
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(metrics_table(result, f"{protocol} protocol ({result['_meta']['users']:,} users)"))


def metrics_table(result: dict[str, Any], title: str) -> Table:
    from recommndr.evaluation.evaluate import MODELS

    keys = ["ndcg@10", "recall@10", "recall@50", "map@10", "coverage@10", "novelty@10", "diversity@10"]
    t = Table(title=title)
    t.add_column("model")
    for k in keys:
        t.add_column(k, justify="right")
    t.add_column("cold users ndcg@10", justify="right")
    t.add_column("cold items recall@50", justify="right")
    for m in MODELS:
        if m not in result:
            continue
        r = result[m]
        t.add_row(m, *[f"{r.get(k, 0.0):.4f}" for k in keys], f"{r['cold_users'].get('ndcg@10', 0):.4f}",
                  f"{r['cold_items'].get('recall@50', 0):.4f}")  # fmt: skip
    return t


@app.command("abtest")
def abtest_cmd(
    data: Annotated[
        Path, typer.Option("--data", help="Dataset folder (a synthetic shop's has its ground truth).")
    ],
    a: Annotated[Path, typer.Option("--a", help="Arm a: an artifacts folder (its two-stage lists).")],
    b: Annotated[
        str,
        typer.Option(
            "--b", help="Arm b: another artifacts folder, or 'popularity' (the API's popular list)."
        ),
    ],
    users: Annotated[
        int, typer.Option(help="Simulated visits (replay: held-out buyers, at most), 100 to 1,000,000.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed of the visits, the draws and the bootstrap.")] = 0,
    resamples: Annotated[int, typer.Option(help="Paired bootstrap resamples (100 to 100,000).")] = 2000,
    track: Annotated[bool, typer.Option(help="Log the run to MLflow.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Offline A/B test of a against b. On a synthetic shop: simulated shoppers from its ground
    truth (position-biased clicks, add to cart, purchase; common random numbers), CTR, add-to-cart
    and conversion rate per arm, paired differences with 95 % bootstrap intervals and p-values. On
    data without ground truth: a replay of held-out purchases (hit rate, recall), never a CTR."""
    from recommndr.evaluation.abtest import POPULARITY
    from recommndr.lifecycle.abtest import run_abtest

    for opt, path in (("--data", data), ("--a", a)):
        if not path.is_dir():
            raise typer.BadParameter(f"{path} is not a folder", param_hint=opt)
    arm_b: Path | str = b
    if b != POPULARITY:
        arm_b = Path(b)
        if not arm_b.is_dir():
            raise typer.BadParameter(
                f"{b} is neither an artifacts folder nor '{POPULARITY}'", param_hint="--b"
            )
    if not 100 <= users <= 1_000_000:
        raise typer.BadParameter(f"must be between 100 and 1,000,000 (got {users:,})", param_hint="--users")
    step = (lambda what: err.print(f"{what} ...")) if not as_json else None
    result = run_abtest(data, a, arm_b, users, seed, resamples, track=track, progress=step)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(abtest_table(result))


def abtest_table(result: dict[str, Any]) -> Table:
    meta = result["_meta"]
    if meta["kind"] == "replay":
        title = (f"REPLAY, not a CTR: {meta['a']} vs {meta['b']} on {meta['shoppers']:,} held-out buyers "
                 f"(last {meta['holdout_days']} days)")  # fmt: skip
    else:
        title = f"Simulated A/B: {meta['a']} vs {meta['b']}, {meta['visits']:,} visits"
    t = Table(title=title)
    for col in ("rate", "a", "b", "a - b", "95 % interval", "p-value"):
        t.add_column(col, justify="left" if col == "rate" else "right")
    for name, d in result["diff"].items():
        t.add_row(name, f"{result['a'][name]:.4f}", f"{result['b'][name]:.4f}", f"{d['estimate']:+.4f}",
                  f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]", f"{d['p_value']:.2g}")  # fmt: skip
    notes = []
    if meta.get("few_events"):
        notes.append(
            f"fewer than 30 events in an arm, interval and p-value unreliable: {', '.join(meta['few_events'])}"
        )
    if "mlflow_run" in meta:
        notes.append(f"MLflow run {meta['mlflow_run']}")
    t.caption = "; ".join(notes) or None
    return t


@app.command("tune")
def tune_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder.")],
    minutes: Annotated[
        float, typer.Option(help="Time budget; the trial running at the end finishes.")
    ] = 10.0,
    trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    protocol: Annotated[
        str, typer.Option(help="temporal or random: how validation is carved out.")
    ] = "temporal",
    params: Annotated[Path, typer.Option(help="Starting parameters (its 'train' section).")] = Path(
        "params.yaml"
    ),
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Best parameters file [default: tuned/DATA-PROTOCOL.yaml].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler (and of --users).")] = 42,
    users: Annotated[int | None, typer.Option(help="Tune on a random sample of this many users.")] = None,
    track: Annotated[
        bool, typer.Option(help="Log the search to MLflow (a parent run, a child per trial).")
    ] = True,
) -> None:
    """Search the parameters that matter (ALS, event weights and half-lives, candidate mix, the
    ranker) with Optuna on a validation split carved from the training part; write the best as
    a params file that `recommndr train --params` reads."""
    from recommndr.evaluation.protocols import PROTOCOLS
    from recommndr.lifecycle.tune import tune
    from recommndr.params import load_train_config

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}",
                                 param_hint="--protocol")  # fmt: skip
    if trials is not None and trials < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--trials")
    if minutes < 0:
        raise typer.BadParameter("must not be negative", param_hint="--minutes")
    if users is not None and users < 100:
        raise typer.BadParameter("must be at least 100", param_hint="--users")
    out_file = out_file or Path("tuned") / f"{data.name}-{protocol}.yaml"

    def show(row: dict[str, Any]) -> None:
        value = row["state"] if row["state"] in ("pruned", "fail") else f"{row['value']:.4f}"
        err.print(f"trial {row['number']:3d}  {row['phase']:9s} {row['state']:8s} ndcg@10 {value:>8s}  "
                  f"best {row['best']:.4f}  candidate recall {row['candidate_recall']:.3f}"
                  f"{' (reused)' if row['retrieval'] == 'reused' else '         '}  {row['seconds']:5.1f} s  "
                  f"elapsed {row['elapsed'] / 60:4.1f} min")  # fmt: skip

    r = tune(data, out_file, load_train_config(params), protocol, minutes, trials, seed, users, track, show)
    t = Table(title=f"Best trials: two_stage ndcg@10 on {r.validation_users:,} validation users ({protocol})")
    for col in ("trial", "ndcg@10", "als ndcg@10", "cand. recall", "s", "factors", "reg", "alpha", "trees",
                "leaves", "lr", "candidates"):  # fmt: skip
        t.add_column(col, justify="right")
    for row in [x for x in r.trials if x["state"] == "complete"][:10]:
        p = row["params"]
        t.add_row(str(row["number"]), f"{row['value']:.4f}", f"{row['als_ndcg@10']:.4f}",
                  f"{row['candidate_recall']:.3f}", f"{row['seconds']:.0f}", str(p["als.factors"]),
                  f"{p['als.regularization']:.3g}", f"{p['als.alpha']:.3g}", str(p["ranker.n_estimators"]),
                  str(p["ranker.num_leaves"]), f"{p['ranker.learning_rate']:.3g}",
                  f"{p['candidates.als']}/{p['candidates.copurchase']}/{p['candidates.popularity']}"
                  f" -> {p['candidates.total']}")  # fmt: skip
    out.print(t)
    rows = {"trials": f"{len(r.trials)} ({sum(x['state'] == 'pruned' for x in r.trials)} pruned)",
            "best ndcg@10 (validation)": f"{r.best_value:.4f}",
            "starting parameters": f"{r.start_value:.4f}" if r.start_value is not None else "not finished",
            "time": f"{r.seconds / 60:.1f} min", "written to": str(r.out)}  # fmt: skip
    if r.sampled_users:
        rows["users"] = f"a sample of {r.sampled_users:,}"
    if r.run_id:
        rows["MLflow parent run"] = r.run_id
    _summary("Tuned", rows)


features_app = typer.Typer(no_args_is_help=True, help="The Feast feature repository and its online store.")
app.add_typer(features_app, name="features")


@features_app.command("apply")
def features_apply(
    repo: Annotated[Path, typer.Option(help="Feast repository folder to write and apply.")] = Path(
        "feature_repo"
    ),
) -> None:
    """Write feature_store.yaml for the configured online store (SQLite or Redis) and `feast apply`."""
    from recommndr.features.repo import apply, write_repo

    s = get_settings()
    apply(write_repo(repo, s.online_store, s.online_store_path, s.redis_url))
    where = s.redis_url if s.online_store == "redis" else str(s.online_store_path)
    out.print(f"applied the feature definitions in {repo} (online store: {s.online_store}, {where})")


@features_app.command("push")
def features_push(
    events: Annotated[
        Path, typer.Option(help="The API's event log (folder or .jsonl) or an events Parquet file.")
    ],
    repo: Annotated[Path, typer.Option(help="Feast repository folder.")] = Path("feature_repo"),
) -> None:
    """Recompute users' online features from events and write them through Feast's push source."""
    from recommndr.features.repo import apply, push, read_events, records_from_events, write_repo

    s = get_settings()
    records, latest = records_from_events(read_events(events))  # bad input fails before any write
    fs = apply(write_repo(repo, s.online_store, s.online_store_path, s.redis_url))
    n = push(fs, records, latest)
    out.print(f"pushed the online features of {n:,} users to the {s.online_store} online store")


artifacts_app = typer.Typer(no_args_is_help=True, help="Publish trained artifacts to the artifact store.")
app.add_typer(artifacts_app, name="artifacts")


@artifacts_app.command("publish")
def artifacts_publish(
    artifacts: Annotated[Path, typer.Option("--artifacts", help="Artifacts folder from `recommndr train`.")],
    name: Annotated[str, typer.Option("--name", help="Bundle name in the store, e.g. 'champion'.")],
    store_dir: Annotated[
        Path, typer.Option(help="Local store folder (when no blob connection string is set).")
    ] = Path("artifacts/store"),
) -> None:
    """Upload a bundle to Blob Storage (RECOMMNDR_BLOB_CONNECTION_STRING) or a local store folder."""
    from recommndr.loading import load_bundle
    from recommndr.registry.store import open_store

    load_bundle(artifacts)  # never publish a bundle that does not verify
    s = get_settings()
    open_store(s.blob_connection_string, s.blob_container, store_dir).publish(artifacts, name)
    where = f"blob container '{s.blob_container}'" if s.blob_connection_string else str(store_dir)
    out.print(f"published {artifacts} as '{name}' to {where}")


monitor_app = typer.Typer(
    no_args_is_help=True, help="Monitoring: drift checks against the bundle's reference, Grafana dashboards."
)
app.add_typer(monitor_app, name="monitor")
DASHBOARDS_DIR = Path("infra/monitoring/dashboards")


def _dashboards_module() -> Any:
    try:
        from recommndr.monitoring import dashboards
    except ImportError as exc:  # grafana-foundation-sdk is the dashboards extra, not a core dependency
        raise typer.BadParameter(
            f"{exc.name or exc} is missing: install the dashboards extra (pip install 'recommndr[dashboards]')"
        ) from exc
    return dashboards


@monitor_app.command("dashboards")
def monitor_dashboards(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder of the dashboard JSON files.")
    ] = DASHBOARDS_DIR,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 if a file differs from what would be written."),
    ] = False,
) -> None:
    """Write the Grafana dashboards (grafana-foundation-sdk) as JSON, one file per dashboard."""
    dashboards = _dashboards_module()
    if check:
        stale = dashboards.stale_dashboards(out_dir)
        if stale:
            err.print(f"[red]stale[/red]: {', '.join(f'{n}.json' for n in stale)} in {out_dir} differ from the "
                      "generator; run `recommndr monitor dashboards`")  # fmt: skip
            raise typer.Exit(1)
        out.print(f"{len(dashboards.DASHBOARDS)} dashboards in {out_dir} are up to date")
        return
    for path in dashboards.write_dashboards(out_dir):
        out.print(f"wrote {path}")


@monitor_app.command("render")
def monitor_render(
    dashboard: Annotated[
        Path, typer.Option("--dashboard", help="A dashboard JSON file.", exists=True, dir_okay=False)
    ],
    prometheus: Annotated[
        str, typer.Option("--prometheus", help="Prometheus base URL.")
    ] = "http://127.0.0.1:9090",
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("dashboard.png"),
    minutes: Annotated[float, typer.Option(min=0.1, max=1440, help="Time range: the last N minutes.")] = 15.0,
    rate_interval: Annotated[
        str, typer.Option(help="What $__rate_interval stands for (Grafana: 4 scrape intervals).")
    ] = "1m",
) -> None:
    """Draw a dashboard's panels from Prometheus into a PNG (no Grafana needed)."""
    import re

    if not re.fullmatch(r"[1-9][0-9]{0,5}(ms|s|m|h|d)", rate_interval):
        raise typer.BadParameter(
            f"{rate_interval!r} is not a duration such as 30s or 1m", param_hint="--rate-interval"
        )
    if not prometheus.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{prometheus!r} is not an http(s) URL", param_hint="--prometheus")
    dashboards = _dashboards_module()
    from recommndr.monitoring.render import load_dashboard, render

    data = load_dashboard(dashboard)
    path = render(data, prometheus, out_file, dashboards.default_values(data, rate_interval), minutes)
    out.print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode (serving/metrics.py)


def parse_duration(text: str, option: str) -> float:
    """Seconds from "90", "90s", "30m", "1h" or "2d"; BadParameter naming ``option`` otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):  # (NaN fails it too)
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 300s, 30m, 1h)", param_hint=option)
    return value


def _reference(artifacts: Path) -> tuple[Any, str]:
    """The bundle's monitoring reference (hash-checked) and the version the API serves it as."""
    from recommndr.monitoring.reference import FILE, Reference
    from recommndr.registry.artifacts import model_version, read_manifest

    manifest = read_manifest(artifacts, only=(FILE,))
    if FILE not in manifest["files"]:
        raise typer.BadParameter(
            f"{artifacts} has no monitoring reference ({FILE}): it was trained by an earlier version; retrain it",
            param_hint="--artifacts",
        )
    return Reference.load(artifacts / FILE), model_version(manifest)


def _api_window(seconds: float) -> float:
    from recommndr.monitoring.window import MAX_WINDOW_S

    if seconds > MAX_WINDOW_S:
        raise typer.BadParameter(
            f"the API keeps its last {MAX_WINDOW_S // 60} minutes", param_hint="--window"
        )
    return seconds


@monitor_app.command("drift")
def monitor_drift_cmd(
    artifacts: Annotated[Path, typer.Option("--artifacts", help="The bundle whose reference is compared.")],
    events: Annotated[
        Path | None,
        typer.Option(
            "--events", help="Events to check: .parquet, .csv, .jsonl (the API's event log), or a folder."
        ),
    ] = None,
    api: Annotated[str | None, typer.Option("--api", help="A running API (its /monitoring/window).")] = None,
    window: Annotated[
        str, typer.Option("--window", help="How far back: e.g. 30m, 1h (events: before the last one).")
    ] = "1h",
    variant: Annotated[str, typer.Option(help="With --api: champion or challenger.")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    log_run: Annotated[
        bool, typer.Option("--log/--no-log", help="Log a run that flags drift to MLflow.")
    ] = True,
) -> None:
    """Compare a window of traffic with the bundle's reference: PSI, KS, Wasserstein and
    chi-square per quantity (Holm-corrected), score drift, confidence drop and the validation
    failure rate. Exit code 0 whether or not it drifted: it reports."""
    if (events is None) == (api is None):
        raise typer.BadParameter("give either --events or --api", param_hint="--events")
    if variant not in ("champion", "challenger"):
        raise typer.BadParameter("champion or challenger", param_hint="--variant")
    seconds = parse_duration(window, "--window")
    ref, version = _reference(artifacts)
    if api is not None:
        from recommndr.monitoring.watch import check_api

        report = check_api(ref, api, variant, _api_window(seconds), get_settings(), version)
    else:
        from recommndr.loading import load_bundle
        from recommndr.monitoring import drift, profile

        bundle = load_bundle(artifacts)
        frame = profile.read_events(events)  # type: ignore[arg-type]
        w = profile.events_check_window(bundle, bundle.catalogue, frame, seconds)
        report = drift.check(ref, w)
        report["variant"] = "replay"
    if report["drift"] and log_run:
        from recommndr.registry.tracking import log_drift

        try:
            report["mlflow_run_id"] = log_drift(
                report, {"variant": str(report["variant"]), "artifacts": str(artifacts)}
            )
        except Exception as exc:  # the report stands without its MLflow copy
            err.print(f"[yellow]warning[/yellow]: the drift run was not logged to MLflow: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    from recommndr.monitoring.profile import summary

    out.print(summary(report), markup=False, highlight=False)


@monitor_app.command("watch")
def monitor_watch_cmd(
    artifacts: Annotated[Path, typer.Option("--artifacts", help="The champion's bundle (its reference).")],
    api: Annotated[str, typer.Option("--api", help="The running API.")] = "http://127.0.0.1:8000",
    challenger: Annotated[
        Path | None, typer.Option("--challenger", help="The challenger's bundle, to check its traffic too.")
    ] = None,
    every: Annotated[str, typer.Option("--every", help="How often: e.g. 60s, 5m.")] = "5m",
    window: Annotated[str, typer.Option("--window", help="How far back each check looks.")] = "1h",
    port: Annotated[
        int, typer.Option(help="Serve the gauges on this port (/metrics); 0: not at all.", min=0, max=65535)
    ] = 9109,
    host: Annotated[str, typer.Option(help="Address the gauges listen on.")] = "127.0.0.1",
    count: Annotated[
        int | None, typer.Option(help="Stop after this many rounds (default: until Ctrl-C).", min=1)
    ] = None,
) -> None:
    """Check the API's traffic on a timer: the results as Prometheus gauges
    (recommndr_feature_psi, recommndr_drift, ...) for the alert rules, each alerting check as an
    MLflow run."""
    from recommndr.monitoring.watch import DriftGauges, watch

    every_s, seconds = parse_duration(every, "--every"), parse_duration(window, "--window")
    refs = {"champion": _reference(artifacts)}
    if challenger is not None:
        refs["challenger"] = _reference(challenger)
    gauges = DriftGauges()
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=host, registry=gauges.registry)
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot listen on {host}:{port}: {exc.strerror}", param_hint="--port"
            ) from exc
        err.print(f"drift gauges on http://{host}:{port}/metrics; checking {api} every {every_s:.0f} s")

    def show(report: dict[str, Any]) -> None:
        flagged = [k for k, v in report["kinds"].items() if v]
        err.print(f"{time.strftime('%H:%M:%S')} {report['variant']}: {report['lists']} lists, {report['events']} events"
                  f" - {'DRIFT: ' + ', '.join(flagged) if flagged else 'no drift'}")  # fmt: skip

    try:
        watch(refs, api, every_s, _api_window(seconds), get_settings(), gauges, count, show)
    except KeyboardInterrupt:
        err.print("stopped")


FAULTS = ("none", "random", "errors", "slow", "drift")


def _loop_paths(workdir: Path | None) -> tuple[Path, str, Path]:
    """The loop's working folder, MLflow URI and audit trail (settings' defaults)."""
    from recommndr.registry.tracking import tracking_uri

    settings = get_settings()
    return (workdir or Path("data/loop")), settings.registry_uri or tracking_uri(), settings.audit_path


def _rules(
    rules_json: str | None, step_seconds: float | None, look_seconds: float | None, local: bool
) -> dict[str, Any]:
    from pydantic import ValidationError

    from recommndr.lifecycle.canary import CanaryRules

    try:
        given = json.loads(rules_json) if rules_json else {}
        if not isinstance(given, dict):
            raise ValueError("a JSON object is expected")
    except ValueError as exc:
        raise typer.BadParameter(f"not a JSON object of rules: {exc}", param_hint="--rules") from exc
    if local:  # a canary of minutes on one machine, not hours: shorter holds and guard windows
        given = {"step_seconds": 30.0, "look_seconds": 3.0, "sustain_s": 15.0, "min_requests": 30, **given}
    if step_seconds is not None:
        given["step_seconds"] = step_seconds
    if look_seconds is not None:
        given["look_seconds"] = look_seconds
    elif step_seconds is not None:
        given.setdefault("look_seconds", max(0.5, min(given.get("look_seconds", 15.0), step_seconds / 3)))
    try:
        return CanaryRules.model_validate(given).model_dump(mode="json")
    except ValidationError as exc:
        raise typer.BadParameter(str(exc).replace("\n", " "), param_hint="--rules") from exc


@app.command("retrain")
def retrain_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder to validate and train on.")],
    local: Annotated[
        bool, typer.Option("--local", help="Run the workflow on the local durable backend.")
    ] = False,
    api: Annotated[
        str | None,
        typer.Option(
            help="The API whose canary this moves (it must follow the same MLflow registry); "
            "default: start one here, with simulated shoppers, for the run."
        ),
    ] = None,
    step_seconds: Annotated[
        float | None, typer.Option(min=0.5, max=86_400, help="Hold time of each canary step.")
    ] = None,
    look_seconds: Annotated[
        float | None, typer.Option(min=0.2, max=3_600, help="Time between looks.")
    ] = None,
    canary_fault: Annotated[
        str, typer.Option(help="Inject a fault into the challenger: none, random, errors, slow or drift.")
    ] = "none",
    rules: Annotated[
        str | None, typer.Option(help="Canary rules as JSON (recommndr.lifecycle.canary.CanaryRules).")
    ] = None,
    params: Annotated[Path | None, typer.Option(help="Parameters file (its 'train' section).")] = None,
    rate: Annotated[
        float, typer.Option(min=0, max=10_000, help="Simulated shoppers' visits per second.")
    ] = 40.0,
    workdir: Annotated[Path | None, typer.Option(help="Working folder [default: data/loop].")] = None,
    eval_users: Annotated[int, typer.Option(min=100, help="Users scored on the hold-out.")] = 20_000,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Retrain → validate → gate → register → canary (5 % → 25 % → 50 % → 100 %) → promote or roll
    back, on the Durable Task SDK's in-memory backend. Prints the outcome, the reason and each step."""
    from recommndr.lifecycle.local import retrain_local
    from recommndr.serving.retrain import stop_when_owner_dies

    if not local:
        raise typer.BadParameter("only --local runs here; on Azure the Functions app runs the workflow",
                                 param_hint="--local")  # fmt: skip
    if canary_fault not in FAULTS:
        raise typer.BadParameter(f"must be one of {', '.join(FAULTS)}", param_hint="--canary-fault")
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    folder, uri, audit = _loop_paths(workdir)
    loop_rules = _rules(rules, step_seconds, look_seconds, local=True)
    # SIGTERM (the API's shutdown, or this run's API killed outright) stops the run as Ctrl-C does:
    # a canary under way sends the challenger's traffic back to 0 before it ends
    _sigterm_interrupts()
    stop_when_owner_dies()
    t0 = time.perf_counter()

    def traffic(url: str) -> Any:
        from recommndr.streaming.simulate import shoppers_visiting

        return shoppers_visiting(url, data, rate)

    outcome = retrain_local(data, folder, uri, audit, loop_rules, api=api, fault=canary_fault, params=params,
                            traffic=traffic, eval_users=eval_users, timeout_s=timeout)  # fmt: skip
    outcome.setdefault("seconds", round(time.perf_counter() - t0, 1))
    if as_json:
        sys.stdout.write(json.dumps(outcome, default=str) + "\n")
        return
    out.print(f"{outcome['outcome']}: {outcome['reason']} ({outcome['seconds']:.0f} s)", markup=False)
    for step in outcome.get("steps", []):
        out.print(
            "  " + ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("traffic", "look")),
            markup=False,
        )


def _step_input(api: str | None, workdir: Path | None, reason: str, by: str = "cli") -> dict[str, Any]:
    _folder, uri, audit = _loop_paths(workdir)
    return {"api": api, "tracking_uri": uri, "audit_path": str(audit), "reason": reason, "by": by,
            "rules": _rules(None, None, None, local=False), "fault": "none", "load_timeout_s": 120.0}  # fmt: skip


@app.command("canary")
def canary_cmd(
    api: Annotated[str, typer.Option(help="The API serving the champion and a challenger.")],
    share: Annotated[
        float | None, typer.Option(min=0, max=1, help="Set the challenger's share of users.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One step of the workflow: set the challenger's share (``--share``), or look once at the
    challenger against the champion since the API started (the sequential tests and the guards)
    and print the decision the workflow would take."""
    from recommndr.lifecycle import activities, canary

    cfg = _step_input(api, None, "recommndr canary")
    if share is not None:
        result = activities.set_traffic({**cfg, "share": share, "reason": "recommndr canary --share"})
    else:
        now = activities.snapshot(cfg)
        zero = canary.parse_metrics("", 0.0)
        look = canary.analyse([zero, now], zero, canary.CanaryRules.model_validate(cfg["rules"]), {}, False,
                              control=activities._control(cfg), alerts=activities._alerts(cfg))["look"]  # fmt: skip
        result = look
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return
    out.print_json(json.dumps(result, default=str))


@app.command("promote")
def promote_cmd(
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "manual",
    api: Annotated[
        str | None, typer.Option(help="Also move the API's traffic (its admin endpoints).")
    ] = None,
) -> None:
    """The registry's challenger becomes champion (the champion before keeps previous_champion)."""
    from recommndr.lifecycle import activities

    cfg = _step_input(api, None, reason)
    versions = activities.alias_versions(cfg, "challenger")
    if versions is None:
        raise RecommndrError("the registry has no challenger to promote")
    served = activities._served(activities._models(cfg)).get("challenger", "") if api else ""
    cfg["challenger"] = {"versions": versions, "model_version": served}
    activities.promote({**cfg, "rule": "manual"})
    out.print(f"promoted {versions}")


@app.command("rollback")
def rollback_cmd(
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "manual",
    api: Annotated[str | None, typer.Option(help="Also send the API's traffic back to the champion.")] = None,
    restore: Annotated[bool, typer.Option(help="Also move champion back to previous_champion.")] = False,
) -> None:
    """The challenger's traffic to 0 and its alias removed; with --restore the champion before
    the last promotion is champion again."""
    from recommndr.lifecycle import activities

    cfg = _step_input(api, None, reason)
    if api:
        activities.set_traffic({**cfg, "share": 0.0, "reason": f"rollback: {reason}"})
    result = activities.rollback_models({**cfg, "restore_champion": restore, "rule": "manual"})
    out.print(
        f"rolled back{' (champion restored: ' + str(result['restored']) + ')' if result['restored'] else ''}"
    )


stream_app = typer.Typer(
    no_args_is_help=True,
    help="Streaming: live shoppers against a running API or straight to the topic (the canary's and "
    "the job's load), and a local broker.",
)
app.add_typer(stream_app, name="stream")


@stream_app.command("job")
def stream_job_cmd(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="RECOMMNDR_EVENT_BROKER", help="Kafka bootstrap servers of the topic."
        ),
    ] = None,
    topic: Annotated[
        str, typer.Option("--topic", envvar="RECOMMNDR_EVENT_TOPIC", help="The events topic.")
    ] = "recommndr-events",
    group: Annotated[str, typer.Option(help="Consumer group (offsets committed on checkpoints).")] = (
        "recommndr-feature-job"
    ),
    store: Annotated[
        Literal["sqlite", "redis"] | None,
        typer.Option(help="Window store [default: settings' online_store]."),
    ] = None,
    lateness: Annotated[str, typer.Option(help="Allowed lateness after a tile's end (e.g. 10m).")] = "10m",
    out_of_orderness: Annotated[str, typer.Option(help="Watermark delay (e.g. 5s).")] = "5s",
    early_fire: Annotated[str, typer.Option(help="How often a changing tile is written (e.g. 1s).")] = "1s",
    checkpoint_dir: Annotated[Path, typer.Option(help="Checkpoints (restored from at start).")] = Path(
        "data/flink/checkpoints"
    ),
    checkpoint_interval: Annotated[
        str,
        typer.Option(
            help="Checkpoint interval: shorter, less replay after a crash but less throughput with the heap state backend."
        ),
    ] = "30s",
    parallelism: Annotated[int, typer.Option(help="Flink parallelism.", min=1, max=256)] = 1,
    startup: Annotated[
        Literal["earliest", "latest"], typer.Option(help="Where a job without a checkpoint starts reading.")
    ] = "earliest",
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus exporter port (0: off).", min=0, max=65535)
    ] = 9110,
    backfill: Annotated[
        list[Path] | None,
        typer.Option("--backfill", help="Replay these event files instead of the topic (repeat)."),
    ] = None,
    sessions: Annotated[
        bool,
        typer.Option("--sessions/--no-sessions", help="Also compute the shoppers' sessions (user_session)."),
    ] = True,
    session_fire: Annotated[
        str,
        typer.Option(
            help="The sessions' batches: Flink ends one every 1-2x this (one store write per shopper each)."
        ),
    ] = "2s",
    catalogue: Annotated[
        Path | None,
        typer.Option(
            exists=True, help="Products file (Parquet/CSV) or data folder: the sessions' categories."
        ),
    ] = None,
) -> None:
    """The streaming feature job (Flink, in flink/.venv): per-product and per-shopper one-minute tiles
    of the topic's events into the online store's product windows and shopper sessions, until Ctrl-C
    (its last checkpoint is kept and restored from at the next start); with --backfill, replays event
    files once and exits."""
    from recommndr.streaming.job import FeatureJob, FeatureJobError, flink_python

    settings = get_settings()
    try:
        flink_python()
    except FeatureJobError as exc:
        err.print(f"[red]error[/red]: {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    if not backfill and not bootstrap:
        raise typer.BadParameter("set --bootstrap or RECOMMNDR_EVENT_BROKER", param_hint="--bootstrap")
    kind = store or settings.online_store
    if kind == "off":
        raise typer.BadParameter(
            "the online store is off: choose --store sqlite or redis", param_hint="--store"
        )
    job = FeatureJob(
        bootstrap=bootstrap or "", topic=topic, group=group, store=kind, store_path=settings.online_store_path,
        redis_url=settings.redis_url, checkpoint_dir=checkpoint_dir,
        lateness_s=parse_duration(lateness, "--lateness"),
        out_of_orderness_s=parse_duration(out_of_orderness, "--out-of-orderness"),
        early_fire_s=parse_duration(early_fire, "--early-fire"),
        session_fire_s=parse_duration(session_fire, "--session-fire"), sessions=sessions, catalogue=catalogue,
        checkpoint_interval_s=parse_duration(checkpoint_interval, "--checkpoint-interval"),
        parallelism=parallelism, startup=startup, metrics_port=metrics_port, backfill=backfill or (),
        security=settings.event_broker_security, username=settings.event_broker_username,
    )  # fmt: skip
    if backfill:
        try:
            job.run_backfill(timeout_s=24 * 3600)
        except FeatureJobError as exc:
            err.print(f"[red]error[/red]: {exc}", markup=True, highlight=False)
            raise typer.Exit(1) from None
        out.print(f"backfill of {len(backfill)} path(s) into the {kind} store done")
        return
    proc_code: int | None = None
    _sigterm_interrupts()
    try:
        job.start(wait=False)
        assert job.proc is not None
        err.print(
            f"feature job: {topic} on {bootstrap} -> {kind} store; Flink REST :{job.rest_port}, "
            f"metrics :{metrics_port or 'off'}; Ctrl-C stops it"
        )
        proc_code = job.proc.wait()
    except KeyboardInterrupt:
        err.print("stopping the feature job (its last checkpoint is kept)")
        proc_code = job.stop()
    finally:
        job.stop()
    if proc_code:
        raise typer.Exit(proc_code if proc_code > 0 else 1)


def _sigterm_interrupts() -> None:
    """SIGTERM (``kill``, a Makefile's trap, a supervisor) stops a long-running command the way Ctrl-C
    does, so what it started in a session of its own (the broker, the Flink job) is stopped too
    instead of left running."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        # once: a second SIGTERM must not interrupt the clean-up the first one started (a retrain
        # sending challenger traffic back to 0); SIGKILL still ends it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@stream_app.command("simulate")
def stream_simulate_cmd(
    rate: Annotated[
        float, typer.Option("--rate", help="Visits per second, open-loop (above 0, at most 10,000).")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="A synthetic shop's folder: its ground truth makes the shoppers.")
    ],
    api: Annotated[str, typer.Option("--api", help="The running API.")] = "http://127.0.0.1:8000",
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            help="Produce events straight to this Kafka bootstrap (host:port), no API calls; --rate is "
            "then events per second.",
        ),
    ] = None,
    topic: Annotated[str, typer.Option("--topic", help="The topic (with --broker).")] = "recommndr-events",
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="How long (default: until Ctrl-C).", min=0.001)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the shoppers and their draws.")] = 0,
    k: Annotated[int, typer.Option(help="Length of the list each visit asks for.", min=1, max=100)] = 10,
    max_in_flight: Annotated[
        int, typer.Option(help="Visits at once; a visit due when this many run is dropped.", min=1, max=4096)
    ] = 64,
    timeout: Annotated[float, typer.Option(help="Seconds per request.", min=0.001, max=300)] = 5.0,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the API to be ready before the first visit.", min=0)
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Shoppers drawn from the shop's ground truth ask /recommendations, then view, cart and buy
    by the offline A/B test's click model and POST /events with the list's variant. Prints the
    counts per variant (lists, views, carts, purchases, CTR, latency) and the errors by kind."""
    from recommndr.streaming.report import progress, summary
    from recommndr.streaming.simulate import TrafficSimulator

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    if broker is not None:
        _simulate_direct(broker, topic, data, rate, seconds, seed, as_json)
        return
    sim = TrafficSimulator(
        api, data, rate, seed, k, max_in_flight=max_in_flight, timeout_s=timeout, ready_timeout_s=wait
    )
    try:
        sim.start(seconds)
        if not as_json:
            err.print(
                f"visiting {api} at {rate:g} visits/s"
                + (f" for {seconds:g} s" if seconds else "; Ctrl-C stops")
            )
        while (counts := sim.wait(10.0)) is None:
            if not as_json:
                err.print(f"{time.strftime('%H:%M:%S')} {progress(sim.snapshot())}")
    except KeyboardInterrupt:
        counts = sim.stop()
    if as_json:
        sys.stdout.write(json.dumps(counts) + "\n")
    else:
        out.print(summary(counts), markup=False, highlight=False)
    if counts["visits"]["started"] and not counts["variants"]:
        err.print(
            f"[red]error[/red]: {api} answered no list ({sum(counts['errors']['recommendations'].values()):,} errors)"
        )
        raise typer.Exit(1)


def _simulate_direct(
    broker: str, topic: str, data: Path, rate: float, seconds: float | None, seed: int, as_json: bool
) -> None:
    """``stream simulate --broker``: the shop's events straight to the topic."""
    from recommndr.streaming.direct import DirectSimulator

    if not rate > 0:
        raise typer.BadParameter(f"the rate must be above 0 events/s (got {rate})", param_hint="--rate")
    sim = DirectSimulator(broker, data, rate, topic, seed)
    if not as_json:
        err.print(f"producing to {broker}/{topic} at {rate:,.0f} events/s"
                  + (f" for {seconds:g} s" if seconds else "; Ctrl-C stops"))  # fmt: skip
    result = sim.run(seconds)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    else:
        out.print(result.summary(), markup=False, highlight=False)
    if result.sent and result.errors == result.sent:
        err.print(f"[red]error[/red]: none of the {result.sent:,} events was confirmed by {broker}")
        raise typer.Exit(1)


@stream_app.command("broker")
def stream_broker_cmd(
    port: Annotated[
        int, typer.Option("--port", help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)
    ] = 9092,
    topic: Annotated[str, typer.Option("--topic", help="The topic to create.")] = "recommndr-events",
    partitions: Annotated[int, typer.Option("--partitions", help="Its partitions.", min=1, max=1024)] = 2,
) -> None:
    """A local Kafka-protocol broker (Tansu, in memory) with the topic created, until Ctrl-C;
    prints the bootstrap address (RECOMMNDR_EVENT_BROKER for the API)."""
    from recommndr.streaming.broker import LocalBroker, create_topic

    _sigterm_interrupts()
    with LocalBroker(port=port) as b:
        create_topic(b.bootstrap, topic, partitions)
        out.print(
            f"broker on {b.bootstrap} (topic {topic}, {partitions} partitions); Ctrl-C stops", markup=False
        )
        sys.stdout.flush()
        try:
            while b.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        if not b.running and b.proc is not None:
            raise typer.Exit(1)


@app.command("serve")
def serve_cmd(
    artifacts: Annotated[
        Path | None, typer.Option("--artifacts", help="Artifacts folder [default: settings].")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Serve the MLflow registry's champion/challenger aliases from this tracking URI "
            "(e.g. sqlite:///mlflow.db), following alias changes.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes, sharing the models' memory-mapped arrays (~0.49 GB RSS each at full "
            "scale, ~0.65 GB PSS for two together); default: 2 on a "
            "machine with 2 or more cores, else 1.",
        ),
    ] = None,
) -> None:
    """Serve the API with uvicorn; models stay warm in memory in each worker process."""
    # serve decides where metrics live, before prometheus_client is imported (it picks its value
    # store then): in memory for one process, a fresh shared folder for several (never an inherited
    # one, which may hold another server's counts)
    os.environ.pop(MULTIPROC_ENV, None)
    import uvicorn

    from recommndr.serving.run import default_workers, quiet_ctrl_c

    if registry is not None:
        if artifacts is not None:
            raise typer.BadParameter("give --artifacts or --registry, not both", param_hint="--registry")
        os.environ["RECOMMNDR_REGISTRY_URI"] = registry
        get_settings.cache_clear()
    s = get_settings()
    art: Path | None
    if artifacts is None and s.registry_uri:
        art, source = None, f"the MLflow registry at {s.registry_uri} ({s.registry_model} aliases)"
    elif artifacts is None and s.blob_connection_string and s.artifact_name:
        art, source = None, f"blob bundle '{s.artifact_name}' in container '{s.blob_container}'"
    else:
        art = artifacts or s.artifacts_dir
        source = str(art)
        if not (art / "manifest.json").exists():
            raise typer.BadParameter(
                f"{art} holds no trained model; run `recommndr train` first", param_hint="--artifacts"
            )
    from recommndr.serving.events import EventLog

    EventLog(s.event_log_dir).prepare()  # a folder it cannot write: a clear error now, not at a 503
    if s.event_broker:  # the spool takes what the broker does not confirm: it must be writable too
        EventLog(s.spool_dir).prepare()
    workers = workers or default_workers()
    out.print(f"API on http://{host}:{port} (docs: http://{host}:{port}/docs), serving {source}, "
              f"{workers} worker process{'es' if workers > 1 else ''}")  # fmt: skip
    quiet_ctrl_c()
    if workers == 1:
        from recommndr.serving.app import create_app

        uvicorn.run(create_app(art), host=host, port=port, log_level="warning", access_log=False,
                    proxy_headers=False)  # fmt: skip
        return
    if art is not None:  # the workers build the app from the environment: pin them to this folder
        os.environ["RECOMMNDR_ARTIFACTS_DIR"] = str(art.resolve())
        for key in ("RECOMMNDR_REGISTRY_URI", "RECOMMNDR_ARTIFACT_NAME"):
            os.environ.pop(key, None)
    # /metrics sums every worker's values, whichever worker answers
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="recommndr-metrics-")
    try:
        uvicorn.run("recommndr.serving.run:create_worker_app", factory=True, workers=workers, host=host,
                    proxy_headers=False,
                    port=port, log_level="warning", access_log=False)  # fmt: skip
    finally:
        shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)


def _summary(title: str, rows: dict[str, Any]) -> None:
    t = Table(title=title, show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    for k, v in rows.items():
        t.add_row(k, str(v))
    out.print(t)


def main() -> None:
    """Entry point: project errors become a message and a non-zero exit, never a traceback."""
    try:
        app()
    except RecommndrError as exc:
        err.print(f"[red]error[/red]: {exc}")
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: say so, keep the stack in the debug log
        logging.getLogger("recommndr").debug("unexpected error", exc_info=True)
        err.print(f"[red]internal error[/red] ({type(exc).__name__}): {exc}. Run with -v for details.")
        sys.exit(70)


if __name__ == "__main__":
    main()
