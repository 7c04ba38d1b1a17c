//! System tests that belong to no phase: the delivery loop across phases 12–18 (docs/adr/0008).
//! Everything is in `tests/system/` (one integration binary); this library is empty on purpose.
