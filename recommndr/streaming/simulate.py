"""Live shoppers against a running API, at a stated rate of visits per second.

A visit is one shopper of the synthetic shop's ground truth (drawn in proportion to activity,
``Shoppers.visits``) who asks ``GET /recommendations/{user_id}?k=10``, looks at the list and, slot
by slot, clicks (a ``view`` event), adds to cart and buys by the offline A/B test's click model
(``evaluation.shoppers``: ``Shoppers.funnel`` on the list the API answered, then ``simulate`` with
the visit's uniforms), then posts those events to ``POST /events`` in one batch, each with the
list's ``variant`` and ``model_version`` as the API answered them, a ``session_id`` per visit, the
catalogue's ``price``, ``quantity`` 1 and an ``event_id`` unique to this run. A good ranker
therefore gets more clicks here for the same reason it does offline: the shoppers click what
their hidden tastes make attractive.

The schedule is open-loop: visit ``i`` is due at ``start + i / rate`` whether or not the earlier
ones have finished (a closed loop would slow down with the API and hide exactly the latency a
canary must see). At most ``max_in_flight`` visits run at once; when the API is slower than the
rate allows (``rate x latency > max_in_flight``), a visit that finds the bound full is not
started and is counted as ``dropped``: the schedule never shifts, so the achieved rate falls and
``dropped`` says by how much. A visit started after its due time (the simulator's own loop was
busy) is counted as ``late``.

Which shopper and which uniforms visit ``i`` gets depends only on the seed and ``i``; what they
do depends on the list the API answers. Errors of the API (a non-2xx status, a timeout, a refused
connection, an answer that is not a list) are counted by endpoint and kind and never stop the
run; only the check before the first visit (the API answers ``/ready``, and serves this data's
products) raises.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from recommndr.data.interactions import Catalogue, load_catalogue
from recommndr.errors import UserInputError
from recommndr.evaluation.shoppers import ClickModel, Draws, Outcome, Shoppers, load_shoppers, simulate

log = logging.getLogger(__name__)
I64 = npt.NDArray[np.int64]

MAX_RATE = 10_000.0  # visits per second; far above what one process drives (bench_simulate.py)
MAX_K = 100  # the API's bound on k
MAX_IN_FLIGHT = 4096
MAX_ANSWER_BYTES = 256 * 1024  # a list of 100 products is ~10 KB; a larger answer is refused unread
LATENCY_SAMPLES = 20_000  # per variant; beyond that a uniform reservoir of them
PLAN_BLOCK = 256  # visits drawn from the seed at a time
LATE_S = 0.05  # a visit started this long after its due time is late
TICK_S = 0.1  # the longest the scheduler sleeps between looks at stop()
MAX_VERSION_LEN = 64  # EventIn.model_version's bound: a longer version is not sent back
VARIANT_NAME = re.compile(r"[a-z_]{1,32}")
POSTED_VARIANTS = ("champion", "challenger")  # what POST /events accepts in `variant`
ENDPOINTS = ("recommendations", "events")
MAX_VARIANTS, MAX_VERSIONS = 8, 32  # distinct names counted; the API's beyond them go under "other"


class _AnswerError(Exception):
    """The API's answer is not what the contract says (too large, not JSON, not a list)."""


class _Reservoir:
    """At most ``cap`` samples, a uniform sample of all added (Vitter's algorithm R)."""

    def __init__(self, cap: int, rng: random.Random) -> None:
        self.cap, self.rng = cap, rng
        self.values: list[float] = []
        self.seen = 0

    def add(self, x: float) -> None:
        self.seen += 1
        if len(self.values) < self.cap:
            self.values.append(x)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.cap:
                self.values[j] = x

    def extend(self, other: _Reservoir) -> None:
        for x in other.values:
            self.add(x)

    def summary_ms(self) -> dict[str, float | None]:
        if not self.values:
            return {"p50": None, "p95": None, "p99": None, "max": None}
        p50, p95, p99 = np.percentile(np.asarray(self.values) * 1000.0, [50, 95, 99])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
                "max": round(max(self.values) * 1000.0, 3)}  # fmt: skip


@dataclass
class _VariantCounts:
    latency: _Reservoir
    lists: int = 0
    items_shown: int = 0
    unknown_items: int = 0  # shown products the data's catalogue lacks (never clicked)
    views: int = 0
    carts: int = 0
    purchases: int = 0
    events_accepted: int = 0
    model_versions: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        lists, views = self.lists, self.views
        return {
            "lists": lists,
            "views": views,
            "carts": self.carts,
            "purchases": self.purchases,
            # as the API's recommndr_variant_rate defines them (serving/metrics.variant_rates)
            "ctr": views / lists if lists else 0.0,
            "atc": self.carts / views if views else 0.0,
            "cvr": self.purchases / views if views else 0.0,
            "events_accepted": self.events_accepted,
            "items_shown": self.items_shown,
            "unknown_items": self.unknown_items,
            "model_versions": dict(self.model_versions),
            "latency_ms": self.latency.summary_ms(),
        }


class _Plan:
    """The visits in order: visit ``i``'s shopper (a position in the ground truth) and its
    uniforms, drawn from the seed in blocks, so they depend on the seed and ``i`` alone."""

    def __init__(self, shoppers: Shoppers, k: int, seed: int) -> None:
        self.shoppers, self.k = shoppers, k
        self.rng = np.random.default_rng(seed)
        self.users: I64 = np.zeros(0, dtype=np.int64)
        self.draws = Draws.new(0, k, self.rng)
        self.next = 0

    def take(self) -> tuple[int, Draws]:
        if self.next >= self.users.shape[0]:
            self.users = self.shoppers.visits(PLAN_BLOCK, self.rng)
            self.draws = Draws.new(PLAN_BLOCK, self.k, self.rng)
            self.next = 0
        j, d = self.next, self.draws
        self.next += 1
        return int(self.users[j]), Draws(d.click[j : j + 1], d.cart[j : j + 1], d.buy[j : j + 1],
                                         d.checkout[j : j + 1])  # fmt: skip


def _error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "transport"


async def _call(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    """The status and the decoded JSON body (None when the body is not JSON), reading at most
    ``MAX_ANSWER_BYTES``."""
    async with client.stream(method, url, **kw) as r:
        chunks, size = [], 0
        async for chunk in r.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise _AnswerError(f"more than {MAX_ANSWER_BYTES:,} bytes")
            chunks.append(chunk)
        try:
            return r.status_code, orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            return r.status_code, None


def _parse_list(body: Any) -> tuple[str, str, list[int]]:
    """``variant``, ``model_version`` and the item ids of a ``/recommendations`` answer."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise _AnswerError("no items")
    variant, version = body.get("variant"), body.get("model_version")
    if not isinstance(variant, str) or not VARIANT_NAME.fullmatch(variant):
        raise _AnswerError("no variant")
    ids: list[int] = []
    for it in body["items"]:
        item_id = it.get("item_id") if isinstance(it, dict) else None
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            raise _AnswerError("an item without an integer item_id")
        ids.append(item_id)
    return variant, version if isinstance(version, str) else "", ids


def _message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message", ""))[:300] if isinstance(error, dict) else ""


class TrafficSimulator:
    """Shoppers of the synthetic shop in ``data_dir`` visiting the API at ``api_url``, ``rate``
    visits per second (see the module's docstring). ``run`` in an event loop, or ``start`` /
    ``stop`` from a thread that has none (the simulator then runs in its own thread)."""

    def __init__(
        self,
        api_url: str,
        data_dir: Path,
        rate: float,
        seed: int = 0,
        k: int = 10,
        *,
        max_in_flight: int = 64,
        timeout_s: float = 5.0,
        ready_timeout_s: float = 0.0,
        click_model: ClickModel | None = None,
    ) -> None:
        try:
            url = httpx.URL(api_url)
            ok = url.scheme in ("http", "https") and bool(url.host) and 0 < (url.port or 80) < 65536
        except (httpx.InvalidURL, TypeError):
            ok = False
        if not ok:
            raise UserInputError(
                f"the API's URL {api_url!r} is not an http(s) URL with a host (and a valid port)"
            )
        if not 0.0 < rate <= MAX_RATE:  # (NaN fails it too)
            raise UserInputError(
                f"the rate must be above 0 and at most {MAX_RATE:,.0f} visits/s (got {rate})"
            )
        if not 1 <= k <= MAX_K:
            raise UserInputError(f"k must be between 1 and {MAX_K} (got {k})")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise UserInputError(f"max_in_flight must be between 1 and {MAX_IN_FLIGHT} (got {max_in_flight})")
        if not 0.0 < timeout_s <= 300.0:
            raise UserInputError(f"the request timeout must be above 0 and at most 300 s (got {timeout_s})")
        self.api_url = api_url.rstrip("/")
        self.data_dir = Path(data_dir)
        self.rate, self.seed, self.k = float(rate), int(seed), int(k)
        self.max_in_flight, self.timeout_s = max_in_flight, float(timeout_s)
        self.ready_timeout_s = max(0.0, float(ready_timeout_s))
        self.catalogue: Catalogue = load_catalogue(self.data_dir)
        # DataNotFoundError naming the missing ground truth (Complete Journey, a user's own data)
        self.shoppers: Shoppers = load_shoppers(self.data_dir, self.catalogue, click_model)
        self.price = np.round(self.catalogue.price.astype(np.float64), 2)
        self._plan = _Plan(self.shoppers, self.k, self.seed)
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._started = False
        self._result: dict[str, Any] | None = None
        self._failure: BaseException | None = None
        self._reset()

    # --- counting (the loop's thread writes, snapshot() may read from another thread) ---

    def _reset(self) -> None:
        with self._lock:
            self._variants: dict[str, _VariantCounts] = {}
            self._errors: dict[str, Counter[str]] = {e: Counter() for e in ENDPOINTS}
            self._visits = Counter({"planned": 0, "started": 0, "dropped": 0, "completed": 0, "late": 0,
                                    "cancelled": 0})  # fmt: skip
            self._events_lost = 0
            self._max_lag_s = 0.0
            self._t0: float | None = None
            self._t_end: float | None = None
            self._run_id = secrets.token_hex(6)  # event ids never repeat across runs, seed or not
            self._session_base = secrets.randbits(30) << 32  # 2^32 visits per run, all below 2^62

    def _variant(self, name: str) -> _VariantCounts:
        v = self._variants.get(name)
        if v is None and len(self._variants) >= MAX_VARIANTS:
            name, v = "other", self._variants.get("other")
        if v is None:
            v = self._variants[name] = _VariantCounts(_Reservoir(LATENCY_SAMPLES, self._rng))
        return v

    def _error(self, endpoint: str, kind: str) -> None:
        with self._lock:
            self._errors[endpoint][kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counts so far (the same shape as ``run``'s result); callable from any thread."""
        with self._lock:
            now = time.monotonic()
            t0 = self._t0 if self._t0 is not None else now
            elapsed = (self._t_end if self._t_end is not None else now) - t0
            overall = _Reservoir(LATENCY_SAMPLES, random.Random(0))
            for v in self._variants.values():
                overall.extend(v.latency)
            return {
                "api": self.api_url,
                "rate": self.rate,
                "seconds": round(elapsed, 3),
                "achieved_rate": self._visits["started"] / elapsed if elapsed > 0 else 0.0,
                "visits": dict(self._visits),
                "variants": {n: v.as_dict() for n, v in sorted(self._variants.items())},
                "errors": {e: dict(c) for e, c in self._errors.items()},
                "events_lost": self._events_lost,
                "latency_ms": overall.summary_ms(),
                "max_lag_ms": round(self._max_lag_s * 1000.0, 3),
                "max_in_flight": self.max_in_flight,
                "k": self.k,
                "seed": self.seed,
            }

    # --- one visit ---

    def _events(
        self, i: int, user_id: int, variant: str, version: str, ids: list[int], dense: I64, o: Outcome
    ) -> list[dict[str, Any]]:
        """The visit's events: a view and maybe a cart per clicked slot, in slot order, then the
        purchases (the checkout comes last)."""
        ts = datetime.now(UTC).isoformat()
        common: dict[str, Any] = {"user_id": user_id, "ts": ts, "session_id": self._session_base + i,
                                  "quantity": 1}  # fmt: skip
        if variant in POSTED_VARIANTS:
            common["variant"] = variant
        if version and len(version) <= MAX_VERSION_LEN:
            common["model_version"] = version
        out: list[dict[str, Any]] = []

        def event(slot: int, etype: str) -> dict[str, Any]:
            return {**common, "item_id": ids[slot], "event_type": etype, "price": float(self.price[dense[slot]]),
                    "event_id": f"sim-{self._run_id}-{i}-{slot}-{etype}"}  # fmt: skip

        for slot in np.flatnonzero(o.clicks[0]):
            out.append(event(int(slot), "view"))
            if o.carts[0, slot]:
                out.append(event(int(slot), "add_to_cart"))
        out.extend(event(int(slot), "purchase") for slot in np.flatnonzero(o.purchases[0]))
        return out

    async def _visit(self, client: httpx.AsyncClient, i: int, pos: int, draws: Draws) -> None:
        try:
            await self._shop(client, i, pos, draws)
        except Exception as exc:  # a bug of the simulator: counted and logged, the run goes on
            log.exception("visit %d failed", i)
            self._error("recommendations", f"simulator:{type(exc).__name__}")
        with self._lock:  # (a visit cancelled at the end of the run is counted as cancelled)
            self._visits["completed"] += 1

    async def _shop(self, client: httpx.AsyncClient, i: int, pos: int, draws: Draws) -> None:
        user_id = int(self.shoppers.user_ids[pos])
        t0 = time.perf_counter()
        try:
            status, body = await _call(client, "GET", f"/recommendations/{user_id}", params={"k": self.k})
        except httpx.HTTPError as exc:
            self._error("recommendations", _error_kind(exc))
            return
        except _AnswerError:
            self._error("recommendations", "bad_answer")
            return
        latency = time.perf_counter() - t0
        if status != 200:
            self._error("recommendations", str(status))
            return
        try:
            variant, version, ids = _parse_list(body)
        except _AnswerError:
            self._error("recommendations", "bad_answer")
            return
        ids = ids[: self.k]
        lists = np.full((1, self.k), -1, dtype=np.int64)
        dense = self.catalogue.index_of(np.asarray(ids, dtype=np.int64))
        lists[0, : dense.shape[0]] = dense
        outcome = simulate(self.shoppers.funnel(np.array([pos], dtype=np.int64), lists), draws)
        events = self._events(i, user_id, variant, version, ids, dense, outcome)
        with self._lock:
            v = self._variant(variant)
            v.lists += 1
            v.items_shown += len(ids)
            v.unknown_items += int((dense < 0).sum())
            v.views += int(outcome.clicks.sum())
            v.carts += int(outcome.carts.sum())
            v.purchases += int(outcome.purchases.sum())
            key = version[:MAX_VERSION_LEN]
            crowded = key not in v.model_versions and len(v.model_versions) >= MAX_VERSIONS
            v.model_versions["other" if crowded else key] += 1
            v.latency.add(latency)
        if not events:
            return
        accepted = False
        try:
            status, body = await _call(client, "POST", "/events", content=orjson.dumps(events),
                                       headers={"Content-Type": "application/json"})  # fmt: skip
            accepted = status == 202
            if not accepted:
                self._error("events", str(status))
                if status == 422:  # the simulator sent what the API refuses: a bug worth its message
                    log.warning("POST /events refused the simulator's events: %s", _message(body))
        except httpx.HTTPError as exc:
            self._error("events", _error_kind(exc))
        except _AnswerError:
            self._error("events", "bad_answer")
        with self._lock:
            if accepted:
                self._variant(variant).events_accepted += len(events)
            else:
                self._events_lost += len(events)

    # --- the schedule ---

    async def _preflight(self, client: httpx.AsyncClient) -> None:
        """The API answers ``/ready`` (within ``ready_timeout_s``) and serves this data's products."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            try:
                status, body = await _call(client, "GET", "/ready")
                problem = "" if status == 200 else f"answered {status} at /ready: {_message(body)}"
            except (httpx.HTTPError, _AnswerError) as exc:
                problem = f"could not be reached: {exc or type(exc).__name__}"
            if not problem:
                break
            if time.monotonic() >= deadline or self._stop.is_set():
                raise UserInputError(f"the API at {self.api_url} {problem}")
            await asyncio.sleep(0.2)
        try:
            status, body = await _call(client, "GET", "/popular", params={"k": 20})
            ids = [it["item_id"] for it in body["items"]] if status == 200 else []
        except (httpx.HTTPError, _AnswerError, KeyError, TypeError) as exc:
            log.warning("could not check the API's products against %s: %s", self.data_dir, exc)
            return
        known = self.catalogue.index_of(np.asarray([i for i in ids if isinstance(i, int)], dtype=np.int64))
        if ids and not (known >= 0).any():
            raise UserInputError(
                f"the API at {self.api_url} serves products that are not in {self.data_dir}'s catalogue "
                "(its model was trained on another dataset?)"
            )

    async def run(self, seconds: float | None = None, *, visits: int | None = None) -> dict[str, Any]:
        """Visit the API at the rate for ``seconds`` (and/or until ``visits`` visits were due, or
        until ``stop()``), wait for the visits in flight (at most two request timeouts), and
        return the counts (``snapshot()``'s). Each run counts afresh; the plan of shoppers goes on."""
        if seconds is not None and not 0.0 < seconds < math.inf:
            raise UserInputError(f"seconds must be above 0 (got {seconds})")
        if visits is not None and visits < 1:
            raise UserInputError(f"visits must be at least 1 (got {visits})")
        self._reset()
        loop = asyncio.get_running_loop()
        limits = httpx.Limits(
            max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight
        )
        in_flight: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.api_url, timeout=self.timeout_s, limits=limits) as client:
            await self._preflight(client)
            self._ready.set()
            t0 = loop.time()
            with self._lock:
                self._t0 = time.monotonic()
            i = 0
            while not self._stop.is_set():
                if (visits is not None and i >= visits) or (seconds is not None and i / self.rate >= seconds):
                    break
                wait = t0 + i / self.rate - loop.time()
                if wait > 0:
                    await asyncio.sleep(min(wait, TICK_S))
                    continue
                pos, draws = self._plan.take()
                with self._lock:
                    self._visits["planned"] += 1
                    self._max_lag_s = max(self._max_lag_s, -wait)
                    if -wait > LATE_S:
                        self._visits["late"] += 1
                    if len(in_flight) >= self.max_in_flight:
                        self._visits["dropped"] += 1
                    else:
                        self._visits["started"] += 1
                        task = asyncio.create_task(self._visit(client, i, pos, draws))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                i += 1
            with self._lock:  # the span the schedule covered (its last visit's due time is before it)
                self._t_end = max(time.monotonic(), self._t0 + i / self.rate)
            if in_flight:
                _, pending = await asyncio.wait(set(in_flight), timeout=2 * self.timeout_s + 1.0)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
                    with self._lock:
                        self._visits["cancelled"] += len(pending)
        return self.snapshot()

    # --- in a thread of its own ---
    # The thread's state is this object's own ``_done`` event, never ``Thread.is_alive()``: on
    # Python 3.11 a Ctrl-C that interrupts ``Thread.join()`` marks a thread that is still running
    # as stopped (the bpo-45274 fix releases its lock), and a summary would be read mid-run.

    def start(self, seconds: float | None = None, *, visits: int | None = None) -> None:
        """Run in a background thread; returns once the API passed the check before the first
        visit (raising its error here when it did not). ``stop()`` ends the run."""
        if self.running:
            raise RuntimeError("the simulator is already running")
        self._stop.clear()
        self._ready.clear()
        self._done.clear()
        self._started = True
        self._result, self._failure = None, None
        thread = threading.Thread(
            target=self._main, args=(seconds, visits), name="traffic-simulator", daemon=True
        )
        thread.start()
        while not self._ready.wait(0.05):
            if self._done.is_set():
                assert self._failure is not None
                raise self._failure

    def _main(self, seconds: float | None, visits: int | None) -> None:
        try:
            self._result = asyncio.run(self.run(seconds, visits=visits))
        except BaseException as exc:  # handed to the caller of start() or stop()
            self._failure = exc
        finally:
            self._done.set()

    @property
    def running(self) -> bool:
        """Started in the background and not finished."""
        return self._started and not self._done.is_set()

    def _outcome(self) -> dict[str, Any]:
        if self._failure is not None:
            raise self._failure
        assert self._result is not None
        return self._result

    def stop(self, timeout_s: float | None = None) -> dict[str, Any]:
        """End the run (the visits in flight finish first) and return its counts."""
        if not self._started:
            raise RuntimeError("the simulator was not started")
        self._stop.set()
        if not self._done.wait(timeout_s if timeout_s is not None else 2 * self.timeout_s + 10.0):
            raise TimeoutError("the simulator did not stop in time")
        return self._outcome()

    def wait(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The result of a background run that ends by itself (``seconds`` or ``visits``), or
        None if it is still running after ``timeout_s``."""
        if not self._started:
            raise RuntimeError("the simulator was not started")
        return self._outcome() if self._done.wait(timeout_s) else None


@contextmanager
def shoppers_visiting(
    api_url: str, data_dir: Path, rate: float, seed: int = 0, ready_timeout_s: float = 3600.0
) -> Iterator[TrafficSimulator | None]:
    """Simulated shoppers visiting ``api_url`` while the block runs — or none (a warning says
    why) when ``rate`` is 0 or the data has no ground truth. The block starts at once: the
    shoppers begin when the API is ready (within ``ready_timeout_s``; a loop's first model may
    still be training), and stop when it ends."""
    from recommndr.evaluation.shoppers import has_ground_truth

    if rate <= 0 or not has_ground_truth(Path(data_dir)):
        log.warning("no simulated shoppers: %s", "rate 0" if rate <= 0 else f"{data_dir} has no ground truth")
        yield None
        return
    sim = TrafficSimulator(api_url, Path(data_dir), rate, seed, ready_timeout_s=ready_timeout_s)

    def start() -> None:
        try:
            sim.start()
        except Exception as exc:  # the API never became ready, or the block ended first
            log.warning("the simulated shoppers did not start: %s", exc)

    starter = threading.Thread(target=start, name="traffic-simulator-start", daemon=True)
    starter.start()
    try:
        yield sim
    finally:
        while starter.is_alive():  # still waiting for the API: make its check give up
            sim._stop.set()
            starter.join(0.2)
        if sim.running:
            counts = sim.stop()
            log.info("simulated shoppers: %s visits", counts.get("visits", {}).get("completed"))
