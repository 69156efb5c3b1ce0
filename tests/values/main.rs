//! Values agent backends cache (issue 12), end to end through the public API on a real
//! temporary directory: real provider types (async-openai's chat completion and embedding
//! responses) and every JSON shape through the hot tier, the warm tier after a reopen and the
//! single-flight loader; schema evolution that must read as a miss, never as a wrong value;
//! the source of every answer; full bypasses; typed loader errors shared by every waiter;
//! request keys in their namespace; raw provider bytes; values JSON cannot carry.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test must fail loudly on any unexpected error"
)]

mod bypass;
mod bytes;
mod errors;
mod namespaces;
mod round_trips;
mod schema;
mod sources;
mod support;
mod unencodable;
