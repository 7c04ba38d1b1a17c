// Package flags reads feature flags from the platform's flag sidecar (docs/cicd/feature-flag-guide.md):
// GET <FLAGS_URL>/v1/flags/<name> answers {"name": …, "enabled": true|false}. A flag that cannot be
// read is off: a sidecar outage never changes behaviour to an unreleased path.
package flags

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Client asks the sidecar; the zero base URL means every flag is off.
type Client struct {
	base string
	http *http.Client
}

// New returns a client for the sidecar at base (FLAGS_URL); "" disables flags.
func New(base string) *Client {
	return &Client{base: base, http: &http.Client{Timeout: 2 * time.Second}}
}

// Enabled reports whether the flag is on.
func (c *Client) Enabled(ctx context.Context, name string) bool {
	if c.base == "" {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/flags/"+url.PathEscape(name), nil)
	if err != nil {
		return false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	var answer struct {
		Enabled bool `json:"enabled"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&answer); err != nil {
		return false
	}
	return answer.Enabled
}
