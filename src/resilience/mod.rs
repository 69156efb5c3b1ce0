//! Resilience: the breaker in front of every disk call, memory-only mode, the recovery probe
//! and the health check.
//!
//! Why two mechanisms and not one: the breaker is about the *next few seconds* (a disk that
//! just failed three times in a row is not asked again for `open_timeout`; callers are served
//! from memory meanwhile), memory-only mode is about the *next minutes* (a disk that keeps
//! failing — `memory_only_after` errors within `error_window` — is abandoned, the hot budget
//! doubles so that memory takes over the warm tier's job, and only a full write/fsync/read-back
//! probe every `recovery_interval` may bring it back). Errors are counted in a sliding window,
//! not since start: a counter that never resets sends every long-running process to memory-only
//! eventually.
//!
//! Time: the breaker takes `now` from `tokio::time::Instant`, so tests drive it with tokio's
//! paused clock. Open → HalfOpen happens on a timer in the recovery task, not lazily on
//! traffic: a cache that sees no disk calls still moves on.
//!
//! Logging: one event per breaker transition (the breaker emits it) and one per mode change;
//! never one per call, whatever the traffic.
//!
//! The parts:
//! - [`mode::Resilience`]: the breaker, the error window and the mode; the disk gate asks it
//!   to admit each call and reports each outcome to it.
//! - [`recovery::Recovery`]: the recovery probe (memory-only), the health check (tiered) and
//!   the write-back they trigger, driven by [`recovery::recovery_task`].

pub(crate) mod mode;
pub(crate) mod recovery;
