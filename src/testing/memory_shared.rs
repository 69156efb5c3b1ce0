//! [`MemoryShared`]: an in-memory, fault-injecting stand-in for the shared tier's server
//! (features `test-util` + `redis`), so that the shared tier's orchestration is tested with
//! no server: inject failures of each kind per operation, `OOM` on writes, latency or a hang
//! on the tokio clock (a paused clock works), and inspect or plant raw keys and their TTLs.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
//! let server = MemoryShared::new();
//! let dir = tempfile::tempdir()?;
//! let cache = answercache::TieredCache::builder(dir.path())
//!     .shared(server.config().prefix("app"))
//!     .build()
//!     .await?;
//! server.fail(Some(SharedOpKind::Get), SharedFault::Timeout, Some(1));
//! # cache.close().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::shared::config::{Backend, SharedConfig};
use crate::shared::store::{
    BoxFut, Found, LeaseSeen, SharedStore, StoreError, WriteOp, LEASE_READ_LEN,
};
use crate::stats::SharedErrorKind;
use crate::sync::lock;

/// The operations of the stand-in, for faults and call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SharedOpKind {
    /// An entry read (`GETRANGE`), also a namespace generation's `GET`.
    Get,
    /// A pipelined batch of writes.
    Write,
    /// A namespace generation's write: `SET` without expiry, or its compare-and-set script.
    Set,
    /// `DEL`.
    Del,
    /// `MGET`.
    Mget,
    /// `SET NX GET`.
    SetNxGet,
    /// The lease operations (acquire, renew, release, replace, poll).
    Lease,
    /// `PING`.
    Ping,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedFault {
    /// The client's own timeout error.
    Timeout,
    /// Connection refused, reset, broken pipe.
    Io,
    /// `NOAUTH`.
    Auth,
    /// `LOADING`.
    Server,
    /// A protocol error.
    Protocol,
    /// Never answers (the tier's timeout cuts it off).
    Hang,
}

#[derive(Debug)]
struct Rule {
    op: Option<SharedOpKind>,
    fault: SharedFault,
    /// Calls left to fail; `None`: until [`MemoryShared::heal`].
    left: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    data: HashMap<String, (Vec<u8>, Option<Instant>)>,
    rules: Vec<Rule>,
    oom: bool,
    latency: Duration,
    calls: BTreeMap<SharedOpKind, u64>,
}

impl State {
    fn live(&mut self, key: &str) -> Option<&Vec<u8>> {
        let now = Instant::now();
        if self
            .data
            .get(key)
            .is_some_and(|(_, exp)| exp.is_some_and(|e| e <= now))
        {
            self.data.remove(key);
        }
        self.data.get(key).map(|(v, _)| v)
    }
}

/// The in-memory stand-in (see the module docs). Cheap to clone: clones share one server, so
/// several caches (replicas) can share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryShared {
    state: Arc<Mutex<State>>,
}

impl MemoryShared {
    /// An empty server with no faults.
    pub fn new() -> MemoryShared {
        MemoryShared::default()
    }

    /// A [`SharedConfig`] whose commands go to this server (every setting at its default).
    pub fn config(&self) -> SharedConfig {
        SharedConfig::with_backend(Backend::Store(Arc::new(self.clone())))
    }

    /// Fails calls of `op` (`None`: every operation) with `fault`, `times` times (`None`:
    /// until [`MemoryShared::heal`]). Rules are checked in the order added.
    pub fn fail(&self, op: Option<SharedOpKind>, fault: SharedFault, times: Option<u32>) {
        lock(&self.state).rules.push(Rule {
            op,
            fault,
            left: times,
        });
    }

    /// Removes every injected fault (failures, OOM, latency).
    pub fn heal(&self) {
        let mut st = lock(&self.state);
        st.rules.clear();
        st.oom = false;
        st.latency = Duration::ZERO;
    }

    /// Makes every `SET` answer `OOM command not allowed when used memory > 'maxmemory'.`
    /// (reads and deletes still work), or stops it.
    pub fn oom(&self, on: bool) {
        lock(&self.state).oom = on;
    }

    /// Delays every answer by `d` on the tokio clock.
    pub fn latency(&self, d: Duration) {
        lock(&self.state).latency = d;
    }

    /// How many calls of `op` were made (including failed ones).
    pub fn calls(&self, op: SharedOpKind) -> u64 {
        lock(&self.state).calls.get(&op).copied().unwrap_or(0)
    }

    /// The raw value of `key`, if present and not expired.
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.state).live(key).cloned()
    }

    /// The remaining time to live of `key`: `None` if absent, `Some(None)` if it has no
    /// expiry.
    pub fn ttl(&self, key: &str) -> Option<Option<Duration>> {
        let mut st = lock(&self.state);
        st.live(key)?;
        let now = Instant::now();
        st.data
            .get(key)
            .map(|(_, exp)| exp.map(|e| e.saturating_duration_since(now)))
    }

    /// Sets `key` to `value` directly (no faults, no counts), expiring after `ttl`.
    pub fn plant(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let exp = ttl.map(|t| Instant::now() + t);
        lock(&self.state)
            .data
            .insert(key.to_owned(), (value.to_vec(), exp));
    }

    /// Deletes `key` directly.
    pub fn delete(&self, key: &str) {
        lock(&self.state).data.remove(key);
    }

    /// Every live key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut st = lock(&self.state);
        let all: Vec<String> = st.data.keys().cloned().collect();
        let mut live: Vec<String> = all.into_iter().filter(|k| st.live(k).is_some()).collect();
        live.sort();
        live
    }

    /// Counts the call, applies latency and faults; `Err` for an injected failure.
    async fn enter(&self, op: SharedOpKind) -> Result<(), StoreError> {
        let (latency, fault) = {
            let mut st = lock(&self.state);
            *st.calls.entry(op).or_default() += 1;
            let mut fault = None;
            for r in st.rules.iter_mut() {
                if r.op.is_none_or(|o| o == op) && r.left != Some(0) {
                    if let Some(n) = r.left.as_mut() {
                        *n -= 1;
                    }
                    fault = Some(r.fault);
                    break;
                }
            }
            (st.latency, fault)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (kind, detail) = match fault {
            None => return Ok(()),
            Some(SharedFault::Hang) => std::future::pending().await,
            Some(SharedFault::Timeout) => (SharedErrorKind::Timeout, "timed out"),
            Some(SharedFault::Io) => (SharedErrorKind::Io, "broken pipe"),
            Some(SharedFault::Auth) => (SharedErrorKind::Auth, "NOAUTH Authentication required."),
            Some(SharedFault::Server) => (
                SharedErrorKind::Server,
                "LOADING Redis is loading the dataset in memory",
            ),
            Some(SharedFault::Protocol) => (SharedErrorKind::Protocol, "parse error"),
        };
        Err(StoreError::failed(kind, detail))
    }

    fn oom_error() -> StoreError {
        StoreError::from_reply(
            "OOM",
            "OOM command not allowed when used memory > 'maxmemory'.",
        )
    }

    fn get_bounded(&self, key: &str, max_len: usize) -> Option<Vec<u8>> {
        let mut st = lock(&self.state);
        st.live(key)
            .filter(|v| !v.is_empty())
            .map(|v| v[..v.len().min(max_len.saturating_add(1))].to_vec())
    }
}

impl SharedStore for MemoryShared {
    fn get(&self, key: &str, max_len: usize) -> BoxFut<'_, Option<Vec<u8>>> {
        let key = key.to_owned();
        Box::pin(async move {
            self.enter(SharedOpKind::Get).await?;
            Ok(self.get_bounded(&key, max_len))
        })
    }

    fn write_many(&self, ops: Vec<WriteOp>) -> BoxFut<'_, Vec<Result<(), StoreError>>> {
        Box::pin(async move {
            self.enter(SharedOpKind::Write).await?;
            let mut st = lock(&self.state);
            let now = Instant::now();
            Ok(ops
                .into_iter()
                .map(|op| match op {
                    WriteOp::Set { .. } if st.oom => Err(MemoryShared::oom_error()),
                    WriteOp::Set { key, value, px } => {
                        let exp = now.checked_add(Duration::from_millis(px));
                        st.data.insert(key, (value.to_vec(), exp));
                        Ok(())
                    }
                    WriteOp::Del { key } => {
                        st.data.remove(&key);
                        Ok(())
                    }
                })
                .collect())
        })
    }

    fn set(&self, key: &str, value: &[u8]) -> BoxFut<'_, ()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        Box::pin(async move {
            self.enter(SharedOpKind::Set).await?;
            let mut st = lock(&self.state);
            if st.oom {
                return Err(MemoryShared::oom_error());
            }
            st.data.insert(key, (value, None));
            Ok(())
        })
    }

    fn set_generation(
        &self,
        key: &str,
        value: &[u8],
        accept: Vec<Vec<u8>>,
        if_absent: bool,
    ) -> BoxFut<'_, Option<Vec<u8>>> {
        let (key, value) = (key.to_owned(), value.to_vec());
        Box::pin(async move {
            self.enter(SharedOpKind::Set).await?;
            let mut st = lock(&self.state);
            let cur = st.live(&key).cloned();
            let write = match &cur {
                Some(c) if *c == value => return Ok(None),
                Some(c) => accept.contains(c),
                None => if_absent,
            };
            if !write {
                return Ok(Some(cur.unwrap_or_default()));
            }
            if st.oom {
                return Err(MemoryShared::oom_error());
            }
            st.data.insert(key, (value, None));
            Ok(None)
        })
    }

    fn del_if(&self, key: &str, found: Found) -> BoxFut<'_, bool> {
        let key = key.to_owned();
        Box::pin(async move {
            self.enter(SharedOpKind::Del).await?;
            let mut st = lock(&self.state);
            // Every value here is a string.
            let Found::Bytes { prefix, len } = found else {
                return Ok(false);
            };
            let same = st
                .live(&key)
                .is_some_and(|v| v.starts_with(&prefix) && len.is_none_or(|n| v.len() == n));
            if same {
                st.data.remove(&key);
            }
            Ok(same)
        })
    }

    fn mget(&self, keys: &[String]) -> BoxFut<'_, Vec<Option<Vec<u8>>>> {
        let keys = keys.to_vec();
        Box::pin(async move {
            self.enter(SharedOpKind::Mget).await?;
            let mut st = lock(&self.state);
            Ok(keys.iter().map(|k| st.live(k).cloned()).collect())
        })
    }

    fn set_nx_get(&self, key: &str, value: &[u8]) -> BoxFut<'_, Option<Vec<u8>>> {
        let (key, value) = (key.to_owned(), value.to_vec());
        Box::pin(async move {
            self.enter(SharedOpKind::SetNxGet).await?;
            let mut st = lock(&self.state);
            if let Some(old) = st.live(&key) {
                return Ok(Some(old.clone()));
            }
            if st.oom {
                return Err(MemoryShared::oom_error());
            }
            st.data.insert(key, (value, None));
            Ok(None)
        })
    }

    fn lease_acquire(&self, key: &str, token: &str, px: u64) -> BoxFut<'_, bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        Box::pin(async move {
            self.enter(SharedOpKind::Lease).await?;
            let mut st = lock(&self.state);
            if st.live(&key).is_some() {
                return Ok(false);
            }
            let exp = Instant::now().checked_add(Duration::from_millis(px));
            st.data.insert(key, (token.into_bytes(), exp));
            Ok(true)
        })
    }

    fn lease_renew(&self, key: &str, token: &str, px: u64) -> BoxFut<'_, bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        Box::pin(async move {
            self.enter(SharedOpKind::Lease).await?;
            let mut st = lock(&self.state);
            if st.live(&key).map(Vec::as_slice) != Some(token.as_bytes()) {
                return Ok(false);
            }
            let exp = Instant::now().checked_add(Duration::from_millis(px));
            if let Some(slot) = st.data.get_mut(&key) {
                slot.1 = exp;
            }
            Ok(true)
        })
    }

    fn lease_release(&self, key: &str, token: &str) -> BoxFut<'_, bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        Box::pin(async move {
            self.enter(SharedOpKind::Lease).await?;
            let mut st = lock(&self.state);
            if st.live(&key).map(Vec::as_slice) != Some(token.as_bytes()) {
                return Ok(false);
            }
            st.data.remove(&key);
            Ok(true)
        })
    }

    fn lease_replace(&self, key: &str, token: &str, value: &str, px: u64) -> BoxFut<'_, bool> {
        let (key, token, value) = (key.to_owned(), token.to_owned(), value.to_owned());
        Box::pin(async move {
            self.enter(SharedOpKind::Lease).await?;
            let mut st = lock(&self.state);
            if st.live(&key).map(Vec::as_slice) != Some(token.as_bytes()) {
                return Ok(false);
            }
            let exp = Instant::now().checked_add(Duration::from_millis(px));
            st.data.insert(key, (value.into_bytes(), exp));
            Ok(true)
        })
    }

    fn poll(
        &self,
        value_key: &str,
        lease_key: &str,
        max_len: usize,
    ) -> BoxFut<'_, (Option<Vec<u8>>, Option<LeaseSeen>)> {
        let (value_key, lease_key) = (value_key.to_owned(), lease_key.to_owned());
        Box::pin(async move {
            self.enter(SharedOpKind::Lease).await?;
            let value = self.get_bounded(&value_key, max_len);
            let mut st = lock(&self.state);
            let now = Instant::now();
            let seen = match st.live(&lease_key) {
                None => None,
                Some(_) => st.data.get(&lease_key).map(|(v, exp)| LeaseSeen {
                    value: v[..v.len().min(LEASE_READ_LEN + 1)].to_vec(),
                    ttl: exp.map(|e| e.saturating_duration_since(now)),
                }),
            };
            Ok((value, seen))
        })
    }

    fn ping(&self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.enter(SharedOpKind::Ping).await })
    }
}
