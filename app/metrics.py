"""Prometheus metrics served at /metrics."""
from prometheus_client import Counter, Histogram, generate_latest

REQUESTS = Counter("labelstore_http_requests_total", "HTTP requests answered", ["method", "operation", "status"])
LATENCY = Histogram("labelstore_http_request_seconds", "Time to answer an HTTP request", ["method", "operation"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def exposition() -> bytes:
    """The Prometheus text format (0.0.4), which scrapers assume for a plain text/plain answer."""
    return generate_latest()
