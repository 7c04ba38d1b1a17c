'use strict';

// The service's HTTP requests in the form the platform's canary analysis reads (phase 15's
// ClusterAnalysisTemplates): http_requests_total{service,status} and the histogram
// http_request_duration_seconds{service}. Probes and /metrics are not counted.

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const UNCOUNTED = new Set(['/healthz', '/readyz', '/metrics']);

function createRegistry(service) {
  const requests = new Map();
  const buckets = BUCKETS.map(() => 0);
  let sum = 0;
  let count = 0;

  function observe(status, seconds) {
    requests.set(status, (requests.get(status) || 0) + 1);
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) {
        buckets[i] += 1;
      }
    });
    sum += seconds;
    count += 1;
  }

  // Counts the answer of one request when it is finished.
  function track(req, res) {
    const path = new URL(req.url, 'http://localhost').pathname;
    if (UNCOUNTED.has(path)) {
      return;
    }
    const start = process.hrtime.bigint();
    res.on('finish', () => observe(res.statusCode, Number(process.hrtime.bigint() - start) / 1e9));
  }

  function text() {
    const label = `service="${service}"`;
    const lines = ['# TYPE http_requests_total counter'];
    [...requests.keys()].sort((a, b) => a - b).forEach((status) => {
      lines.push(`http_requests_total{${label},status="${status}"} ${requests.get(status)}`);
    });
    lines.push('# TYPE http_request_duration_seconds histogram');
    BUCKETS.forEach((le, i) => lines.push(`http_request_duration_seconds_bucket{${label},le="${le}"} ${buckets[i]}`));
    lines.push(`http_request_duration_seconds_bucket{${label},le="+Inf"} ${count}`);
    lines.push(`http_request_duration_seconds_sum{${label}} ${sum}`);
    lines.push(`http_request_duration_seconds_count{${label}} ${count}`);
    return `${lines.join('\n')}\n`;
  }

  return { observe, track, text };
}

module.exports = { createRegistry, BUCKETS };
