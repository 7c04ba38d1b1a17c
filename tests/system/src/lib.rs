//! System tests that belong to no phase: the delivery loop across phases 12–18 (docs/adr/0008).
//! Everything that needs the sandbox is in `tests/system/` (one integration binary); this library
//! holds what can be tested without it: [`docs`], the reader of docs/cicd's commands and references.

pub mod docs;
