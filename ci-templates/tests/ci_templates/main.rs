//! Integration tests of phase 14 (one binary): the template library run on sample services
//! (`template_runs`), and the phase against the sandbox (`phase`).

mod phase;
mod template_runs;
