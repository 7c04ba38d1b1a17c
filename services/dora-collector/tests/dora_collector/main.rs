//! The collector as a process, on both stores: `SQLite` (embedded default) and a real `PostgreSQL` 15
//! cluster started by the test. Webhook bodies follow GitLab's "Webhook events" documentation
//! (see `dora_collector::payloads`); the token check follows GitLab's "Webhooks" page
//! (`X-Gitlab-Token` carries the hook's secret token).

mod heal;
mod hostile;
mod prometheus;
mod resilience;
mod support;
mod webhooks;
