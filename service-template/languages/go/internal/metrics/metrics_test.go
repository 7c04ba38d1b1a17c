package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCountsRequestsButNotProbes(t *testing.T) {
	r := New("example-service")
	app := r.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/boom" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	for _, path := range []string{"/a", "/a", "/boom", "/healthz", "/readyz", "/metrics"} {
		app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`http_requests_total{service="example-service",status="200"} 2`,
		`http_requests_total{service="example-service",status="500"} 1`,
		`http_request_duration_seconds_bucket{service="example-service",le="+Inf"} 3`,
		`http_request_duration_seconds_count{service="example-service"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s in\n%s", want, text)
		}
	}
	if rec.Header().Get("Content-Type") != "text/plain; version=0.0.4" {
		t.Error(rec.Header())
	}
}

func TestBuckets(t *testing.T) {
	r := New("s")
	r.Observe(200, 0.02)
	if !strings.Contains(r.Text(), `le="0.01"} 0`) || !strings.Contains(r.Text(), `le="0.025"} 1`) {
		t.Error(r.Text())
	}
}
