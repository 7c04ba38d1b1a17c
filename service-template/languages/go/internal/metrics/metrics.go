// Package metrics counts the service's HTTP requests in the form the platform's canary analysis
// reads (ClusterAnalysisTemplates success-rate, error-rate and latency-check of phase 15):
// http_requests_total{service,status} and the histogram http_request_duration_seconds{service}.
// Probes and /metrics itself are not counted: they would make every canary look healthy.
package metrics

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Buckets of the latency histogram, in seconds.
var Buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// Registry holds the counters of one service.
type Registry struct {
	service  string
	mu       sync.Mutex
	requests map[int]uint64
	buckets  []uint64
	sum      float64
	count    uint64
}

// New returns an empty registry for service.
func New(service string) *Registry {
	return &Registry{service: service, requests: map[int]uint64{}, buckets: make([]uint64, len(Buckets))}
}

// Observe records one answered request.
func (r *Registry) Observe(status int, seconds float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[status]++
	for i, le := range Buckets {
		if seconds <= le {
			r.buckets[i]++
		}
	}
	r.sum += seconds
	r.count++
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (w *recorder) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Middleware counts every request but the probes and /metrics.
func (r *Registry) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, req)
			return
		}
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, req)
		r.Observe(rec.status, time.Since(start).Seconds())
	})
}

// ServeHTTP answers the Prometheus text format.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(r.Text()))
}

// Text is the exposition of every series.
func (r *Registry) Text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("# TYPE http_requests_total counter\n")
	statuses := make([]int, 0, len(r.requests))
	for s := range r.requests {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	for _, s := range statuses {
		fmt.Fprintf(&b, "http_requests_total{service=%q,status=\"%d\"} %d\n", r.service, s, r.requests[s])
	}
	b.WriteString("# TYPE http_request_duration_seconds histogram\n")
	for i, le := range Buckets {
		fmt.Fprintf(&b, "http_request_duration_seconds_bucket{service=%q,le=\"%g\"} %d\n", r.service, le, r.buckets[i])
	}
	fmt.Fprintf(&b, "http_request_duration_seconds_bucket{service=%q,le=\"+Inf\"} %d\n", r.service, r.count)
	fmt.Fprintf(&b, "http_request_duration_seconds_sum{service=%q} %g\n", r.service, r.sum)
	fmt.Fprintf(&b, "http_request_duration_seconds_count{service=%q} %d\n", r.service, r.count)
	return b.String()
}
