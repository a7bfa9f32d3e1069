"""Prometheus metrics of the API, in their own registry (no global state at import)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ApiMetrics:
    def update_rates(self, served: dict[str, int], events: dict[tuple[str, str], int]) -> None:
        """Refresh the per-variant CTR / add-to-cart / conversion gauges from the running counts."""
        for variant in {v for v in served} | {v for _, v in events}:
            views = events.get(("view", variant), 0)
            lists = served.get(variant, 0)
            self.rates.labels(variant, "ctr").set(views / lists if lists else 0.0)
            self.rates.labels(variant, "atc").set(
                events.get(("add_to_cart", variant), 0) / views if views else 0.0
            )
            self.rates.labels(variant, "cvr").set(
                events.get(("purchase", variant), 0) / views if views else 0.0
            )

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("recommndr_request_seconds", "Request latency", ["endpoint", "variant"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.errors = Counter(
            "recommndr_errors_total", "Responses with status >= 500", ["endpoint"], registry=r
        )
        self.client_errors = Counter(
            "recommndr_client_errors_total", "4xx responses", ["endpoint", "code"], registry=r
        )
        self.served = Counter(
            "recommndr_recommendations_served_total", "Lists served", ["variant", "path"], registry=r
        )
        self.events = Counter(
            "recommndr_events_total", "Events accepted", ["event_type", "variant"], registry=r
        )
        self.model_info = Gauge(
            "recommndr_model_info", "Loaded model versions (value 1)", ["variant", "version"], registry=r
        )
        self.ready = Gauge("recommndr_ready", "1 when models are loaded", registry=r)
        self.rates = Gauge(
            "recommndr_variant_rate",
            "Per variant: ctr = views attributed to the variant / lists it served; atc = add-to-carts / views; "
            "cvr = purchases / views",
            ["variant", "rate"],
            registry=r,
        )
        self.degraded = Counter(
            "recommndr_degraded_total", "Responses served by a fallback", ["reason"], registry=r
        )
