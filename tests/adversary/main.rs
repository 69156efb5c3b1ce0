//! Adversarial tests: each one tries to break a promise of answercache (see the module docs)
//! with real faults, concurrency, restarts and hostile input. Every assertion states the
//! promise it checks; a failure message names what was observed and what was expected.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod clear;
mod clear_order;
mod clock_skew;
mod crash;
mod drop_reopen;
mod extremes;
mod hostile;
mod kill9;
mod model;
mod outage;
mod two_instances;
mod write_through;
