//! Per-cache state of the agent features: loads in flight and namespace generations. Held by
//! the cache handle, so it belongs to one open cache (shared by every clone of its handle) and
//! dies with it.

use std::sync::Arc;

use super::flights::Flights;
use super::generation::Namespaces;

/// What the agent features keep per open cache.
#[derive(Default)]
pub(crate) struct AgentState {
    /// Loads in flight, by full cache key.
    pub(crate) flights: Arc<Flights>,
    /// Namespaces used in this process, by name.
    /// Shared with the namespace sync task (feature `redis`).
    pub(crate) namespaces: Arc<Namespaces>,
}
