package flags

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestEnabled(t *testing.T) {
	sidecar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/flags/on":
			_, _ = w.Write([]byte(`{"name":"on","enabled":true}`))
		case "/v1/flags/off":
			_, _ = w.Write([]byte(`{"name":"off","enabled":false}`))
		case "/v1/flags/garbled":
			_, _ = w.Write([]byte(`{`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer sidecar.Close()
	c := New(sidecar.URL)
	ctx := context.Background()
	for name, want := range map[string]bool{"on": true, "off": false, "garbled": false, "missing": false} {
		if got := c.Enabled(ctx, name); got != want {
			t.Errorf("%s: got %v", name, got)
		}
	}
	if New("").Enabled(ctx, "on") {
		t.Error("no sidecar: every flag is off")
	}
	if New("http://127.0.0.1:1").Enabled(ctx, "on") {
		t.Error("an unreachable sidecar: off")
	}
	if New("http://bad host").Enabled(ctx, "on") {
		t.Error("a malformed URL: off")
	}
}
