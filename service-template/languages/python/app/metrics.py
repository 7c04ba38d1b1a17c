"""The service's HTTP requests in the form the platform's canary analysis reads (phase 15's
ClusterAnalysisTemplates): http_requests_total{service,status} and the histogram
http_request_duration_seconds{service}. Probes and /metrics are not counted."""

import threading

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
UNCOUNTED = frozenset({"/healthz", "/readyz", "/metrics"})


class Registry:
    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._requests: dict[int, int] = {}
        self._buckets = [0] * len(BUCKETS)
        self._sum = 0.0
        self._count = 0

    def observe(self, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[status] = self._requests.get(status, 0) + 1
            for i, le in enumerate(BUCKETS):
                if seconds <= le:
                    self._buckets[i] += 1
            self._sum += seconds
            self._count += 1

    def text(self) -> str:
        label = f'service="{self.service}"'
        with self._lock:
            lines = ["# TYPE http_requests_total counter"]
            for status in sorted(self._requests):
                lines.append(f'http_requests_total{{{label},status="{status}"}} {self._requests[status]}')
            lines.append("# TYPE http_request_duration_seconds histogram")
            for le, n in zip(BUCKETS, self._buckets):
                lines.append(f'http_request_duration_seconds_bucket{{{label},le="{le}"}} {n}')
            lines.append(f'http_request_duration_seconds_bucket{{{label},le="+Inf"}} {self._count}')
            lines.append(f"http_request_duration_seconds_sum{{{label}}} {self._sum}")
            lines.append(f"http_request_duration_seconds_count{{{label}}} {self._count}")
        return "\n".join(lines) + "\n"
