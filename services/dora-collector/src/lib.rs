//! DORA metrics collector: GitLab webhooks in, Prometheus metrics out.
