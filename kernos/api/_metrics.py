"""Prometheus metrics of one server process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """Counters and gauges the server updates; store-derived gauges are set at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kernos_http_requests",
            "HTTP requests handled, by method, route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "kernos_http_request_seconds",
            "HTTP request latency, by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.stream_clients = Gauge(
            "kernos_stream_clients",
            "Connected event stream clients, by transport",
            ["transport"],
            registry=r,
        )
        self.events_delivered = Counter(
            "kernos_stream_events_delivered", "Events sent to stream clients", registry=r
        )
        self.slow_disconnects = Counter(
            "kernos_stream_slow_disconnects",
            "Stream clients disconnected because their buffer overflowed",
            registry=r,
        )
        self.runs = Gauge("kernos_runs", "Runs in the store, by status", ["status"], registry=r)
        self.queue_depth = Gauge(
            "kernos_queue_runs",
            "Unfinished runs per queue and status",
            ["queue", "status"],
            registry=r,
        )
        self.workers = Gauge(
            "kernos_workers", "Registered workers, by state", ["state"], registry=r
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request and record how long it took."""
        # labels() takes a lock and checks its arguments on every call: keep the
        # children, one per label set (these label sets are few and fixed).
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
