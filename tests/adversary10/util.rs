//! Helpers of this binary on top of the shared harness.

use std::sync::Arc;
use std::time::Duration;

use answercache::{BreakerState, SharedConfig};

use crate::support::cache::*;
use crate::support::*;

/// A real server on a unix socket, or `None` (skipped) when none is installed.
pub fn server() -> Option<Arc<RedisServer>> {
    RedisServer::start().map(Arc::new)
}

/// The harness settings with the breaker opening on the first failure (`threshold`).
pub fn cfg(server: &RedisServer, prefix: &str, threshold: u32) -> SharedConfig {
    config(&server.url(), prefix).failure_threshold(threshold)
}

/// Waits until the shared breaker is Open (2 s at most, else panics).
pub async fn wait_open(cache: &answercache::TieredCache) {
    wait_state(cache, BreakerState::Open, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("never opened: {}", shared_figures(&cache.stats())));
}

/// Waits until `cond` holds on `cache`'s stats (3 s at most, else panics with `what`).
pub async fn wait_stats(
    cache: &answercache::TieredCache,
    what: &str,
    cond: impl Fn(&answercache::Stats) -> bool,
) {
    poll_until(Duration::from_secs(3), || cond(&cache.stats()))
        .await
        .unwrap_or_else(|| panic!("{what}: {}", shared_figures(&cache.stats())));
}
