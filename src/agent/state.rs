//! Per-cache state of the agent features: loads in flight and namespace generations. It is
//! a field of the cache's shared `Inner`, so it belongs to one open cache (shared by every
//! clone of its handle) and dies with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::namespace::NamespaceSlot;
use super::single_flight::Flights;
use crate::cache::Inner;

/// What the agent features keep per open cache.
#[derive(Default)]
pub(crate) struct AgentState {
    /// Loads in flight, by full cache key.
    pub(crate) flights: Arc<Flights>,
    /// Namespaces used in this process, by name.
    pub(crate) namespaces: Mutex<HashMap<String, Arc<NamespaceSlot>>>,
}

pub(crate) use crate::sync::lock;

/// The agent state of the cache `inner`.
pub(crate) fn state_of(inner: &Arc<Inner>) -> Arc<AgentState> {
    inner.agent.clone()
}
