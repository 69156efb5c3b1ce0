//! The loads in flight of one cache: a map from key (and value kind) to a flight that waiters
//! subscribe to, and the guard that lands each flight exactly once, on success, error,
//! cancellation or panic. The protocol that uses them is in `single_flight.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::codec::Encoding;
use crate::error::LoaderError;
use crate::sync::lock;

/// The loads in flight of one cache.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Box<[u8]>, Arc<Flight>>>,
}

/// One load in flight. Waiters subscribe to `tx`; the leader's guard sends exactly once.
pub(super) struct Flight {
    tx: watch::Sender<Option<Landing>>,
}

/// How a flight ended.
#[derive(Clone)]
pub(super) enum Landing {
    /// The loader's value, encoded, and its cost.
    Value {
        bytes: Arc<[u8]>,
        encoding: Encoding,
        cost: u64,
    },
    /// The loader failed (or panicked); the leader's stale-if-error fallback, if it had one.
    Failed {
        error: LoaderError,
        stale: Option<Fallback>,
    },
    /// The leader gave up before the loader finished, its value could not be encoded, or it
    /// found the key's value in the cache instead of loading (a read that may have begun
    /// before a waiter did: not the waiter's to serve): start over.
    Abandoned,
}

/// An entry peeked at from the hot tier, to serve if the loader fails.
#[derive(Clone)]
pub(super) struct Fallback {
    pub(super) value: Arc<[u8]>,
    pub(super) expires_ms: u64,
    pub(super) encoding: Encoding,
}

pub(super) enum Role {
    Leader(Leader),
    Waiter(watch::Receiver<Option<Landing>>),
}

/// Owns a flight; lands it exactly once, on success, error, cancellation or panic.
pub(super) struct Leader {
    flights: Arc<Flights>,
    key: Box<[u8]>,
    flight: Arc<Flight>,
    /// Handed to the waiters if the loader panics.
    pub(super) stale: Option<Fallback>,
    landed: bool,
}

impl Flights {
    /// Joins the load of `key` for values of kind `tag` (callers asking for another type, or
    /// for bytes, never share a load: each gets an answer of its own type, and its own
    /// loader's error), or leads a new one.
    pub(super) fn join_or_lead(self: &Arc<Self>, tag: &str, key: &[u8]) -> Role {
        let flight_key: Box<[u8]> = [tag.as_bytes(), b"\0", key].concat().into();
        let mut map = lock(&self.map);
        if let Some(f) = map.get(&flight_key) {
            return Role::Waiter(f.tx.subscribe());
        }
        let flight = Arc::new(Flight {
            tx: watch::channel(None).0,
        });
        map.insert(flight_key.clone(), flight.clone());
        Role::Leader(Leader {
            flights: self.clone(),
            key: flight_key,
            flight,
            stale: None,
            landed: false,
        })
    }

    /// Loads in flight (for tests and introspection).
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

impl Leader {
    pub(super) fn land(mut self, landing: Landing) {
        self.landed = true;
        self.finish(landing);
    }

    /// Removes the flight (first, so a caller arriving now starts a new one rather than
    /// joining a finished one), then tells the waiters.
    fn finish(&self, landing: Landing) {
        {
            let mut map = lock(&self.flights.map);
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        self.flight.tx.send_replace(Some(landing));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        let landing = if std::thread::panicking() {
            Landing::Failed {
                error: LoaderError::panicked(),
                stale: self.stale.take(),
            }
        } else {
            Landing::Abandoned
        };
        self.finish(landing);
    }
}

pub(super) async fn wait(mut rx: watch::Receiver<Option<Landing>>) -> Landing {
    match rx.wait_for(Option::is_some).await {
        Ok(landing) => landing.clone().unwrap_or(Landing::Abandoned),
        // The sender is gone without a landing: cannot happen with the guard, but starting
        // over is the safe answer.
        Err(_) => Landing::Abandoned,
    }
}
