"""Windows from data: what a bundle serves a set of shoppers, and the fields of a set of events —
for the reference recorded at ``train`` time and for ``recommndr monitor drift --events``.

The reference (:func:`build_reference`) is the served bundle's lists for shoppers active in the
last ``days`` before the cut-off, and those days' events (at least the last :data:`MIN_EVENTS`
events, for a small shop). A replay (``--events``) is compared with that population: a window
much shorter than ``days`` holds shoppers seen more recently than the reference's, which the
features that count days since a visit show as drift. Each half is split at random in two:
one half gives the bins, shares and samples, the other the calibration's stationary windows —
consecutive time slices of its events (replays) and bootstrap resamples of its events and lists.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recommndr.bundle import Bundle
from recommndr.data.interactions import US_PER_DAY, Catalogue
from recommndr.errors import UserInputError
from recommndr.monitoring import drift
from recommndr.monitoring.reference import Reference, reference_from
from recommndr.monitoring.window import SCORES_PER_LIST, Window
from recommndr.ranking.candidates import queries_for
from recommndr.ranking.features import FEATURES
from recommndr.ranking.ranker import OnnxRanker
from recommndr.ranking.two_stage import TOP_FEATURE_ROWS, TwoStageRecommender

log = logging.getLogger(__name__)
I64 = npt.NDArray[np.int64]
EVENT_TYPES = ("view", "add_to_cart", "purchase")
POOL_USERS = 4000  # shoppers ranked for the reference (half reference, half calibration)
CAL_WINDOWS = 200
CAL_LISTS = 1000  # lists per calibration window
CAL_EVENTS = 10_000  # events per calibration window
MIN_EVENTS = 100_000  # the reference period is longer than ``days`` where these need it
MAX_EVENTS = 400_000  # events of the reference period kept (a uniform sample, in time order)
BATCH = 1000


def served_lists(
    bundle: Bundle, users: I64, ranker: OnnxRanker | None = None, k: int = SCORES_PER_LIST
) -> Window:
    """The lists ``bundle`` serves ``users`` (user ids; ``TwoStageRecommender.rank``, what
    ``/recommendations`` runs), as a window without events; the popularity paths (cold shoppers)
    are left out as the API's window leaves them out. ``ranker`` replaces the bundle's (tests and
    the benchmark plant a broken one)."""
    two = TwoStageRecommender(bundle.candidate_generator(), bundle.features, ranker or bundle.ranker)
    queries = queries_for(bundle.user_index(users), bundle.recent_indptr, bundle.recent_items)
    f = len(FEATURES)
    feats, scores, sources = [], [], []
    for s in range(0, len(queries), BATCH):
        for r in two.rank(queries[s : s + BATCH], k):
            if r.popular or r.top_features is None or r.items.size == 0:
                continue
            rows = np.full((TOP_FEATURE_ROWS, f), np.nan, np.float32)
            rows[: r.top_features.shape[0]] = r.top_features
            feats.append(rows)
            sc = np.full(k, np.nan, np.float32)
            sc[: r.scores.shape[0]] = r.scores[:k]
            scores.append(sc)
            so = np.zeros(k, np.uint8)
            so[: r.sources.shape[0]] = r.sources[:k]
            sources.append(so)
    sc_arr = np.stack(scores) if scores else np.zeros((0, k), np.float32)
    margin = (sc_arr[:, 0] - sc_arr[:, 1]).astype(np.float32) if sc_arr.shape[0] else np.zeros(0, np.float32)
    return Window(
        FEATURES,
        np.concatenate(feats) if feats else np.zeros((0, f), np.float32),
        sc_arr,
        margin,
        np.stack(sources) if sources else np.zeros((0, k), np.uint8),
        np.zeros(0),
        [],
        [],
        0,
        0,
        len(scores),
    )


def event_failures(events: pl.DataFrame, catalogue: Catalogue) -> npt.NDArray[np.bool_]:
    """Which rows of an events frame (columns ``user_id``, ``item_id``, ``event_type``, ``price``,
    ``quantity``, ``ts``; missing optional ones are fine) fail the checks ``POST /events`` makes:
    a known event type, ids present and non-negative, a price > 0 where given, a quantity >= 1, a
    timestamp. A product the catalogue does not know is accepted, as the API accepts it (its
    category reads "(unknown)")."""
    n = events.height
    bad = np.zeros(n, bool)
    cols = events.columns
    for c in ("user_id", "item_id", "event_type", "ts"):
        if c not in cols:
            raise UserInputError(f"events: the column {c!r} is missing")
    uid = events["user_id"].cast(pl.Int64, strict=False)
    iid = events["item_id"].cast(pl.Int64, strict=False)
    bad |= (uid.is_null() | (uid.fill_null(-1) < 0)).to_numpy()
    bad |= (iid.is_null() | (iid.fill_null(-1) < 0)).to_numpy()
    bad |= ~events["event_type"].cast(pl.String).is_in(list(EVENT_TYPES)).fill_null(False).to_numpy()
    bad |= events["ts"].is_null().to_numpy()
    if "price" in cols:
        p = events["price"].cast(pl.Float64, strict=False)
        bad |= (p.is_not_null() & ~(p.fill_null(1.0) > 0) | p.is_nan().fill_null(False)).to_numpy()
    if "quantity" in cols:
        q = events["quantity"].cast(pl.Int64, strict=False)
        bad |= (q.is_not_null() & (q.fill_null(1) < 1)).to_numpy()
    return bad


def event_window(
    events: pl.DataFrame, catalogue: Catalogue, bad: npt.NDArray[np.bool_] | None = None
) -> Window:
    """The event fields of ``events`` as a window without lists: price (the event's, else the
    catalogue's), top-level category and type of the accepted rows; the refused ones counted."""
    bad = event_failures(events, catalogue) if bad is None else bad
    ok = events.filter(pl.Series(~bad))
    idx = catalogue.index_of(ok["item_id"].cast(pl.Int64).to_numpy())
    known = idx >= 0
    price = np.where(known, catalogue.price[np.maximum(idx, 0)].astype(np.float64), np.nan)
    if "price" in ok.columns:
        given = ok["price"].cast(pl.Float64, strict=False).to_numpy()
        price = np.where(np.isfinite(given), given, price)
    price = np.round(price, 2).astype(
        np.float64
    )  # money: cents, as the API records it (float32 prices would break ties)
    names = np.asarray([*catalogue.l1_names, "(unknown)"], dtype=object)
    l1 = (
        names[np.where(known, catalogue.l1[np.maximum(idx, 0)], len(catalogue.l1_names))]
        if idx.size
        else np.zeros(0, object)
    )
    f = len(FEATURES)
    return Window(FEATURES, np.zeros((0, f), np.float32), np.zeros((0, SCORES_PER_LIST), np.float32),
                  np.zeros(0, np.float32), np.zeros((0, SCORES_PER_LIST), np.uint8), price, l1.tolist(),
                  ok["event_type"].cast(pl.String).to_list(), int(bad.sum()), events.height, 0)  # fmt: skip


def combine(lists: Window, events: Window, seconds: float = 0.0) -> Window:
    """One window with ``lists``' lists and ``events``' events."""
    return Window(lists.feature_names, lists.features, lists.scores, lists.margin, lists.sources, events.price,
                  events.category, events.event_type, events.failures, events.events_seen, lists.lists_seen,
                  seconds)  # fmt: skip


def take_lists(w: Window, idx: I64) -> Window:
    """Lists ``idx`` of ``w`` (rows of features follow their list)."""
    rows = (idx[:, None] * TOP_FEATURE_ROWS + np.arange(TOP_FEATURE_ROWS)).reshape(-1)
    return Window(w.feature_names, w.features[rows], w.scores[idx], w.margin[idx], w.sources[idx], np.zeros(0), [],
                  [], 0, 0, int(idx.shape[0]))  # fmt: skip


def take_events(w: Window, idx: I64, failures: int = 0, labels: tuple[Any, Any] | None = None) -> Window:
    """Events ``idx`` of ``w``; ``labels``: its category and type as object arrays, when the
    caller takes many (converting once)."""
    cats, typs = (
        labels if labels is not None else (np.asarray(w.category, object), np.asarray(w.event_type, object))
    )
    cat = cats[idx].tolist() if idx.size else []
    typ = typs[idx].tolist() if idx.size else []
    f = len(w.feature_names)
    return Window(w.feature_names, np.zeros((0, f), np.float32), np.zeros((0, SCORES_PER_LIST), np.float32),
                  np.zeros(0, np.float32), np.zeros((0, SCORES_PER_LIST), np.uint8), w.price[idx], cat, typ,
                  failures, int(idx.shape[0]) + failures, 0)  # fmt: skip


def events_with_price(root: Path) -> pl.DataFrame:
    """A dataset's events with the columns :func:`event_failures` reads."""
    from recommndr.data.schema import read_table

    table = read_table(
        root, "events", columns=["user_id", "item_id", "event_type", "ts", "price", "quantity"]
    )
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(pl.col("ts").dt.epoch("us").alias("ts_us")).sort("ts_us")


def null_windows(
    lists: Window, events: Window, rng: np.random.Generator, n: int = CAL_WINDOWS
) -> list[Window]:
    """Stationary windows for calibration: the events cut into consecutive slices of
    :data:`CAL_EVENTS` (in time order, as ``events`` is) and the rest bootstrap resamples; each
    paired with a bootstrap resample of :data:`CAL_LISTS` lists."""
    ne, nl = len(events.event_type), lists.scores.shape[0]
    size_e = min(CAL_EVENTS, max(ne // 4, 1))
    size_l = min(CAL_LISTS, max(nl // 2, 1))
    slices = [np.arange(s, s + size_e) for s in range(0, ne - size_e + 1, size_e)][: n // 2] if ne else []
    labels = (np.asarray(events.category, object), np.asarray(events.event_type, object))
    out = []
    for j in range(n):
        ev = slices[j] if j < len(slices) else rng.integers(0, max(ne, 1), size_e if ne else 0)
        li = rng.integers(0, nl, size_l) if nl else np.zeros(0, np.int64)
        out.append(combine(take_lists(lists, li), take_events(events, ev, labels=labels)))
    return out


def reference_parts(
    bundle: Bundle,
    catalogue: Catalogue,
    events: pl.DataFrame,
    end_us: int,
    days: int,
    rng: np.random.Generator,
) -> tuple[Window, Window, Window]:
    """The reference window and the calibration's lists and events (see the module docstring)."""
    latest = events.filter(pl.col("ts_us") >= end_us - days * US_PER_DAY)
    period = latest if latest.height >= MIN_EVENTS else events.tail(MIN_EVENTS)  # a small shop: more days
    if period.height > MAX_EVENTS:
        period = period[np.sort(rng.choice(period.height, MAX_EVENTS, replace=False))]
    # the lists: shoppers of the last ``days`` only (features such as the days since a shopper's
    # last visit describe them, not a year's)
    users = (latest if latest.height else period)["user_id"].unique().sort().to_numpy()
    if users.shape[0] > POOL_USERS:
        users = np.sort(rng.choice(users, POOL_USERS, replace=False))
    lists = served_lists(bundle, users.astype(np.int64))
    evw = event_window(period, catalogue)
    ref_l, cal_l = np.array_split(rng.permutation(lists.scores.shape[0]), 2)
    half = rng.random(len(evw.event_type)) < 0.5
    labels = (np.asarray(evw.category, object), np.asarray(evw.event_type, object))
    ref_events = take_events(evw, np.flatnonzero(half), evw.failures // 2, labels)
    cal_events = take_events(evw, np.flatnonzero(~half), evw.failures - evw.failures // 2, labels)
    return (
        combine(take_lists(lists, np.sort(ref_l)), ref_events),
        take_lists(lists, np.sort(cal_l)),
        cal_events,
    )


def build_reference(
    bundle: Bundle, catalogue: Catalogue, events: pl.DataFrame, end_us: int, days: int, seed: int = 0
) -> Reference:
    """The monitoring reference of ``bundle`` (see the module docstring); ``events`` as
    :func:`events_with_price` reads them, ``end_us`` the served fit's cut-off."""
    rng = np.random.default_rng(seed)
    ref_window, cal_lists, cal_events = reference_parts(bundle, catalogue, events, end_us, days, rng)
    ref = reference_from(ref_window, seed)
    seen = ref_window.events_seen + cal_events.events_seen
    ref.validation_failure_rate = (ref_window.failures + cal_events.failures) / seen if seen else 0.0
    drift.calibrate(ref, null_windows(cal_lists, cal_events, rng))
    log.info("monitoring reference: %s lists, %s events; PSI multiplier %.2f over %s windows",
             f"{ref_window.lists_seen:,}", f"{ref_window.events_seen:,}", ref.calibration["multiplier"],
             ref.calibration["windows"])  # fmt: skip
    return ref


def read_events(path: Path) -> pl.DataFrame:
    """Events from a file or folder: Parquet, CSV or JSON lines (the API's event log: one file
    per day), or a dataset folder (its events table). Raises UserInputError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"--events: {path} does not exist")
    try:
        if path.is_dir():
            logs = sorted(path.glob("*.jsonl"))
            if logs:
                df = pl.concat([pl.read_ndjson(p) for p in logs], how="diagonal_relaxed")
            else:
                from recommndr.data.schema import read_table

                t = read_table(path, "events")
                df = pl.from_arrow(t)  # type: ignore[assignment]
        elif path.suffix == ".parquet":
            df = pl.read_parquet(path)
        elif path.suffix == ".csv":
            df = pl.read_csv(path, try_parse_dates=True)
        elif path.suffix in (".jsonl", ".ndjson", ".json"):
            df = pl.read_ndjson(path)
        else:
            raise UserInputError(f"--events: {path.name}: give a .parquet, .csv or .jsonl file, or a folder")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"--events: {path} could not be read: {exc}") from exc
    if "ts" not in df.columns:
        raise UserInputError(f"--events: {path}: no 'ts' column")
    if df["ts"].dtype == pl.String:
        df = df.with_columns(pl.col("ts").str.to_datetime(time_zone="UTC", strict=False))
    if not isinstance(df["ts"].dtype, pl.Datetime):
        raise UserInputError(f"--events: {path}: 'ts' must be a timestamp (ISO 8601 text or a datetime), "
                             f"not {df['ts'].dtype}")  # fmt: skip
    return df.with_columns(pl.col("ts").dt.epoch("us").alias("ts_us")).sort("ts_us", nulls_last=True)


def events_check_window(
    bundle: Bundle,
    catalogue: Catalogue,
    events: pl.DataFrame,
    seconds: float,
    max_users: int = 1000,
    seed: int = 0,
) -> Window:
    """The last ``seconds`` of ``events`` (ending at its latest event) as a window: their fields,
    and the lists ``bundle`` serves a sample of their shoppers."""
    last = events["ts_us"].max()
    if last is None:
        raise UserInputError("--events: no event has a timestamp")
    recent = events.filter(pl.col("ts_us") >= int(last) - int(seconds * 1e6))  # type: ignore[arg-type]
    evw = event_window(recent, catalogue)
    users = recent["user_id"].cast(pl.Int64, strict=False).drop_nulls().unique().sort().to_numpy()
    if users.shape[0] > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    lists = served_lists(bundle, users.astype(np.int64))
    return combine(lists, evw, seconds)


def summary(report: dict[str, Any]) -> str:
    """A few lines a person reads: the verdict and the flagged quantities."""
    lines = [
        f"drift: {'YES' if report['drift'] else 'no'} ({', '.join(k for k, v in report['kinds'].items() if v) or 'nothing flagged'})"
    ]
    for name, f in sorted(report["features"].items(), key=lambda kv: -(kv[1]["psi"] or 0)):
        if f["psi"] is None:
            continue
        mark = "DRIFT" if f["drift"] else ""
        lines.append(
            f"  {name:28s} psi {f['psi']:.4f} (thr {f['threshold']:.4f})  p {f['p_adjusted']:.2g}  {mark}"
        )
    s, c = report["score"], report["confidence"]
    if s["psi"] is not None:
        lines.append(
            f"  score psi {s['psi']:.4f} (thr {s['threshold']:.4f}) p {s['ks_p']:.2g} {'DRIFT' if s['drift'] else ''}"
        )
    if c["psi"] is not None:
        lines.append(f"  confidence: median margin {c['median_margin']:.4f} vs {c['reference_median_margin']:.4f} "
                     f"(drop {c['drop']:.1%}) {'DRIFT' if c['drift'] else ''}")  # fmt: skip
    v = report["validation"]
    lines.append(f"  validation failures {v['failures']} of {v['events']} ({v['rate']:.2%}; reference "
                 f"{v['reference_rate']:.2%}) {'SPIKE' if v['drift'] else ''}")  # fmt: skip
    return "\n".join(lines)
