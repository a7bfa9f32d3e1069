"""``recommndr stream simulate --broker``: shoppers' events produced straight to the topic, no API.

The generator's model, drawn a block at a time with numpy: shoppers in proportion to their
activity (``Shoppers.visits``); for each view a leaf category from the shopper's three tastes by
their weights (or, with the generator's ``EXPLORE`` chance, a leaf in proportion to its appeal),
then a product of that leaf by its share of the leaf's views for the shopper's price tier (appeal
and price, ``Shoppers.leaf_share``). A view is followed by an add-to-cart with the generator's
per-view rate (``CART_RATE x buyer x conversion``, at most 0.9) and a cart by a purchase with its
checkout and bought-item rates: the funnel's proportions. ``ts`` is now, every ``event_id``
unique to the run. Each record is what the API's producer sends (the event log's record plus
``ts_ms``), keyed by ``str(user_id)``.

The schedule is open-loop at ``rate`` events per second, checked every ``TICK_S``; ``poll(0)``
serves delivery reports in the loop and a full client queue waits for room (counted as
``backpressure``), so the achieved rate says what one process sustains.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from recommndr.data.interactions import load_catalogue
from recommndr.data.synthetic import params as gen
from recommndr.errors import ServiceUnavailableError, UserInputError
from recommndr.evaluation.shoppers import Shoppers, load_shoppers

I64 = npt.NDArray[np.int64]
TICK_S = 0.01
MAX_BLOCK = 20_000  # events drawn at most per tick
EVENT_TYPES = ("view", "add_to_cart", "purchase")


class EventModel:
    """Draws blocks of (user id, item id, event type, price) from the shop's ground truth."""

    def __init__(
        self, shoppers: Shoppers, item_ids: I64, prices: npt.NDArray[np.float64], seed: int = 0
    ) -> None:
        self.s, self.item_ids, self.prices = shoppers, item_ids, prices
        self.rng = np.random.default_rng(seed)
        n_leaves = shoppers.explore_leaf.shape[0]
        # per price tier: products ordered by leaf, their shares cumulated; leaf j spans (j, j + 1]
        self.order = np.argsort(shoppers.item_leaf, kind="stable")
        self.cum = np.cumsum(shoppers.leaf_share[:, self.order], axis=1)
        # a leaf with no product gets no interval: its draws land in the next leaf
        self.explore_cdf = np.cumsum(shoppers.explore_leaf)
        self.n_leaves = n_leaves

    def draw(self, n: int) -> tuple[I64, I64, I64, npt.NDArray[np.float64]]:
        """About ``n`` events: ``n`` views and the carts and purchases that follow them."""
        s, rng = self.s, self.rng
        users = s.visits(n, rng)
        u = rng.random((4, n))
        w = s.taste_w[users]
        pick = (u[0][:, None] * w.sum(axis=1, keepdims=True) > np.cumsum(w, axis=1)).sum(axis=1)
        leaf = s.tastes[users, np.minimum(pick, 2)]
        explore = u[1] < gen.EXPLORE
        leaf = np.where(explore, np.searchsorted(self.explore_cdf, u[2] * self.explore_cdf[-1]), leaf)
        leaf = np.minimum(leaf, self.n_leaves - 1)
        tier = s.tier[users]
        pos = np.empty(n, dtype=np.int64)
        for t in np.unique(tier):  # a few price tiers: one searchsorted each
            m = tier == t
            pos[m] = np.searchsorted(self.cum[t], leaf[m] + rng.random(int(m.sum())), side="left")
        items = self.order[np.minimum(pos, self.order.shape[0] - 1)]
        buyer = s.buyer[users]
        cart = u[3] < np.minimum(gen.CART_RATE * buyer * s.conversion[items], 0.9)
        buy = cart & (
            rng.random(n) < np.minimum(gen.CHECKOUT * np.sqrt(buyer), 0.95) * gen.CART_ITEM_PURCHASED
        )
        sel = np.concatenate([np.arange(n), np.flatnonzero(cart), np.flatnonzero(buy)])
        etype = np.concatenate([np.zeros(n, np.int64), np.ones(int(cart.sum()), np.int64),
                                np.full(int(buy.sum()), 2, np.int64)])  # fmt: skip
        order = np.argsort(sel, kind="stable")  # each view followed by its cart and purchase
        sel, etype = sel[order], etype[order]
        dense = items[sel]
        return s.user_ids[users[sel]], self.item_ids[dense], etype, self.prices[dense]


@dataclass
class DirectResult:
    bootstrap: str
    topic: str
    rate: float
    seconds: float
    sent: int
    delivered: int
    errors: int
    backpressure: int

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "achieved_rate": self.achieved_rate}

    def summary(self) -> str:
        return (
            f"{self.bootstrap}/{self.topic}: {self.sent:,} events sent in {self.seconds:.1f} s "
            f"({self.achieved_rate:,.0f}/s of {self.rate:,.0f}/s asked); {self.delivered:,} confirmed, "
            f"{self.errors:,} delivery errors, {self.backpressure:,} waits for the client's queue"
        )


class DirectSimulator:
    """Events from the shop in ``data_dir`` produced to ``topic`` at ``bootstrap``."""

    def __init__(
        self, bootstrap: str, data_dir: Path, rate: float, topic: str = "recommndr-events", seed: int = 0,
        config: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        if not 0.0 < rate <= 1_000_000.0:  # (NaN fails it too)
            raise UserInputError(f"the rate must be above 0 and at most 1,000,000 events/s (got {rate})")
        self.bootstrap, self.topic, self.rate = bootstrap, topic, float(rate)
        cat = load_catalogue(Path(data_dir))
        shoppers = load_shoppers(Path(data_dir), cat)
        self.model = EventModel(
            shoppers,
            cat.item_ids,
            np.asarray(np.round(cat.price.astype(np.float64), 2), dtype=np.float64),
            seed,
        )
        self.config = {"bootstrap.servers": bootstrap, **(config or {})}
        self.run_id = secrets.token_hex(6)
        self._delivered = 0
        self._errors = 0
        self._sent = self._backpressure = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self._delivered += 1
        else:
            self._errors += 1

    def _producer(self) -> Any:
        from confluent_kafka import KafkaException, Producer

        cfg = {"acks": "all", "linger.ms": 5, "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
               "compression.type": "none", "client.id": "recommndr-simulate", **self.config}  # fmt: skip
        p = Producer({**cfg, "logger": logging.getLogger("recommndr.streaming.librdkafka")})
        try:
            meta = p.list_topics(timeout=5.0)
        except KafkaException as exc:
            raise ServiceUnavailableError(f"the broker at {self.bootstrap} cannot be reached: {exc}") from exc
        if self.topic not in meta.topics or meta.topics[self.topic].error is not None:
            raise UserInputError(
                f"the topic {self.topic!r} does not exist on {self.bootstrap} (`recommndr stream broker` "
                "creates it on a local broker)"
            )
        return p

    def run(self, seconds: float | None) -> DirectResult:
        """Produce for ``seconds`` (None: until Ctrl-C), then wait for the delivery reports."""
        if seconds is not None and not 0.0 < seconds < float("inf"):
            raise UserInputError(f"seconds must be above 0 (got {seconds})")
        p = self._producer()
        try:
            return self._run(p, float("inf") if seconds is None else seconds)
        finally:
            p.flush(30.0)

    def _run(self, p: Any, seconds: float) -> DirectResult:
        sent = 0
        t0 = time.monotonic()
        try:
            sent, backpressure = self._loop(p, seconds, t0)
        except KeyboardInterrupt:  # Ctrl-C: what was produced is flushed and counted
            sent, backpressure = self._sent, self._backpressure
        seconds_run = time.monotonic() - t0
        p.flush(30.0)
        # what is still unconfirmed after the flush counts as an error too
        return DirectResult(self.bootstrap, self.topic, self.rate, seconds_run, sent, self._delivered,
                            sent - self._delivered, backpressure)  # fmt: skip

    def _loop(self, p: Any, seconds: float, t0: float) -> tuple[int, int]:
        produce, poll, topic = p.produce, p.poll, self.topic
        on_delivery = self._on_delivery
        sent = backpressure = 0
        run_id = self.run_id
        while True:
            self._sent, self._backpressure = sent, backpressure
            elapsed = time.monotonic() - t0
            if elapsed >= seconds:
                break
            due = min(int(self.rate * elapsed) - sent, MAX_BLOCK)
            if due <= 0:
                poll(0)
                time.sleep(min(TICK_S, max(0.0, (sent + 1) / self.rate - elapsed)))
                continue
            users, items, etypes, prices = self.model.draw(max(1, int(due / 1.1)))
            ts = datetime.now(UTC)
            ts_iso = ts.isoformat()
            ts_ms = (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
            for j, (u, i, e, pr) in enumerate(zip(users.tolist(), items.tolist(), etypes.tolist(),
                                                   prices.tolist(), strict=True)):  # fmt: skip
                value = orjson.dumps({
                    "user_id": u, "item_id": i, "event_type": EVENT_TYPES[e], "ts": ts_iso,
                    "session_id": None, "price": pr, "quantity": 1, "event_id": f"sim-{run_id}-{sent + j}",
                    "variant": None, "model_version": None, "received_at": ts_iso, "ts_ms": ts_ms,
                })  # fmt: skip
                while True:
                    try:
                        produce(topic, value, str(u).encode(), on_delivery=on_delivery)
                        break
                    except BufferError:
                        backpressure += 1
                        poll(0.005)
            sent += len(users)
            poll(0)
        return sent, backpressure
