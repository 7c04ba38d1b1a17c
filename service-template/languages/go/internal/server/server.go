// Package server is the service's HTTP API: health and readiness for the probes of
// deploy/base/rollout.yaml, and one greeting endpoint whose wording a feature flag switches.
package server

import (
	"encoding/json"
	"net/http"
	"os"
	"time"

	"example-service/internal/flags"
	"example-service/internal/metrics"
)

// Service holds what the handlers need.
type Service struct {
	Flags   *flags.Client
	Metrics *metrics.Registry
}

// Name is the service's name: its metrics' service label (the canary analysis selects by it).
const Name = "example-service"

// FromEnv builds the HTTP server: PORT (default 8080) and FLAGS_URL, the feature-flag sidecar.
func FromEnv() *http.Server {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	s := &Service{Flags: flags.New(os.Getenv("FLAGS_URL")), Metrics: metrics.New(Name)}
	return &http.Server{
		Addr:              ":" + port,
		Handler:           s.Routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Routes serves /healthz, /readyz, /metrics and /hello.
func (s *Service) Routes() http.Handler {
	if s.Metrics == nil {
		s.Metrics = metrics.New(Name)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.Metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/hello", s.hello)
	return s.Metrics.Middleware(mux)
}

func (s *Service) hello(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	formal := s.Flags.Enabled(r.Context(), "formal-greeting")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"greeting":        Greeting(name, formal),
		"formal-greeting": formal,
	})
}

// Greeting builds the greeting text.
func Greeting(name string, formal bool) string {
	if formal {
		return "good day, " + name
	}
	return "hello, " + name
}
