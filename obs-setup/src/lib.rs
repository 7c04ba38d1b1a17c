//! Phase 17: DORA dashboard, CI/CD alerts, the DORA collector deployment, GitLab webhook and a live summary.
