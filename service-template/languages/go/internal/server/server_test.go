package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"example-service/internal/flags"
)

func get(t *testing.T, s *Service, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestProbes(t *testing.T) {
	s := &Service{Flags: flags.New("")}
	for _, path := range []string{"/healthz", "/readyz"} {
		if rec := get(t, s, path); rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d", path, rec.Code)
		}
	}
}

func TestHelloFollowsTheFlag(t *testing.T) {
	sidecar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/flags/formal-greeting" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"name":"formal-greeting","enabled":true}`))
	}))
	defer sidecar.Close()
	for _, tc := range []struct {
		flags string
		query string
		want  string
	}{{"", "", "hello, world"}, {"", "?name=ops", "hello, ops"}, {sidecar.URL, "?name=ops", "good day, ops"}} {
		s := &Service{Flags: flags.New(tc.flags)}
		if body := get(t, s, "/hello"+tc.query).Body.String(); !strings.Contains(body, tc.want) {
			t.Fatalf("%q %q: got %s", tc.flags, tc.query, body)
		}
	}
}

func TestHelloIsCountedInMetrics(t *testing.T) {
	s := &Service{Flags: flags.New("")}
	get(t, s, "/hello")
	if body := get(t, s, "/metrics").Body.String(); !strings.Contains(body, `http_requests_total{service="example-service",status="200"} 1`) {
		t.Fatal(body)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("PORT", "9090")
	if srv := FromEnv(); srv.Addr != ":9090" || srv.ReadHeaderTimeout == 0 {
		t.Fatalf("%+v", srv)
	}
	t.Setenv("PORT", "")
	if srv := FromEnv(); srv.Addr != ":8080" {
		t.Fatalf("%s", srv.Addr)
	}
}
