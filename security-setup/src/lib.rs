//! Phase 16: security runners, Harbor scanning and image signing.
