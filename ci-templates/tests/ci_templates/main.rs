//! Integration tests of phase 14 (one binary): the template library run on sample services
//! (`template_runs`), the phase against the sandbox (`phase`), and the adoption of what the bash
//! phase 14 left (`bash_leftovers`).

mod bash_leftovers;
mod phase;
mod real_world;
mod template_runs;
