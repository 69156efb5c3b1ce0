//! The state holders every orchestrating part works with, as one bundle of handles: the clock,
//! the hot tier, the write queue, the disk gate, the freshness record and the counters. The
//! tiers (`cache.rs`) and the writer each hold a clone (both use all six); recovery and the
//! maintenance task get only the handles they use.

use std::sync::Arc;

use crate::clock::Clock;
use crate::disk::DiskGate;
use crate::freshness::Freshness;
use crate::hot::HotTier;
use crate::queue::WriteQueue;
use crate::stats::Counters;

/// Handles to the state holders of one open cache (see the module docs).
#[derive(Clone)]
pub(crate) struct Parts {
    pub clock: Arc<dyn Clock>,
    pub hot: Arc<HotTier>,
    pub queue: Arc<WriteQueue>,
    pub gate: Arc<DiskGate>,
    pub freshness: Arc<Freshness>,
    pub counters: Arc<Counters>,
}
