//! Log targets. An event's target is what `RUST_LOG` / `EnvFilter` directives and log-pipeline
//! alerts select on, so it must not move when code moves between files: the events below keep
//! the targets they have always had, whatever module emits them now. (Events not listed keep
//! their module path as target.)
//!
//! | target | events |
//! |---|---|
//! | `answercache::cache` | "answercache opened" / "answercache closed" (INFO); "the fence file is damaged" (WARN); "disk operation failed" (DEBUG, each failed disk operation, with its error); "recovery probe failed" (DEBUG); the `get`, `set`, `remove`, `clear`, `flush`, `recovery_probe` and `health_check` spans |
//! | `answercache::degraded` | "disk abandoned: switched to memory-only mode" (WARN); "disk recovered: back to tiered mode" (INFO) |
//! | `answercache::breaker` | breaker transitions (WARN when it opens, INFO otherwise) |
//! | `answercache::shared` | the shared tier (feature `redis`): its breaker's transitions (WARN when it opens, INFO otherwise), one WARN per OOM episode, one INFO per namespace generation changed by another replica |
//! | `answercache::writer` | "dirty entries queued for write-back" (INFO) and the `write` span |

/// The cache's lifecycle, its disk operations, the fence and recovery.
pub(crate) const CACHE: &str = "answercache::cache";
/// Mode changes: memory-only and back.
pub(crate) const DEGRADED: &str = "answercache::degraded";
