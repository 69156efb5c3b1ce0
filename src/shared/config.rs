//! [`SharedConfig`]: where the shared tier lives and its bounds. Checked by `build()`.

use std::sync::Arc;
use std::time::Duration;

use super::store::SharedStore;
use crate::error::{Error, Result};

/// Default [`SharedConfig::prefix`].
pub const DEFAULT_SHARED_PREFIX: &str = "answercache";
/// Default [`SharedConfig::timeout`]: 200 ms per operation.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(200);
/// Default [`SharedConfig::max_ttl`]: 7 days.
pub const DEFAULT_SHARED_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default [`SharedConfig::max_entry_bytes`]: 1 MiB of entry file.
pub const DEFAULT_SHARED_MAX_ENTRY_BYTES: usize = 1 << 20;
/// Default [`SharedConfig::write_queue_bytes`]: 8 MiB.
pub const DEFAULT_SHARED_WRITE_QUEUE_BYTES: usize = 8 << 20;
/// Default [`SharedConfig::namespace_sync_interval`]: 2 s.
pub const DEFAULT_NAMESPACE_SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// Default [`SharedConfig::failure_threshold`]: 3 consecutive failures (tolerates the one
/// broken pipe after an idle reconnect).
pub const DEFAULT_SHARED_FAILURE_THRESHOLD: u32 = 3;
/// Default [`SharedConfig::open_timeout`]: 5 s, doubling on failed probes.
pub const DEFAULT_SHARED_OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`SharedConfig::max_open_timeout`]: 2 min.
pub const DEFAULT_SHARED_MAX_OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Default [`SharedConfig::lease_ttl`]: 10 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default [`SharedConfig::lease_renew_interval`]: 3 s, or a third of
/// [`SharedConfig::lease_ttl`] when that is shorter (a lease of 2 s is renewed every 666 ms).
pub const DEFAULT_LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(3);
/// Default [`SharedConfig::lease_max_hold`]: 10 min.
pub const DEFAULT_LEASE_MAX_HOLD: Duration = Duration::from_secs(600);
/// Default [`SharedConfig::lease_wait_max`]: 60 s.
pub const DEFAULT_LEASE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Longest [`SharedConfig::timeout`] accepted: a shared call is an optimisation, never a
/// long wait.
const MAX_SHARED_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest prefix accepted.
const MAX_PREFIX_LEN: usize = 128;
/// Largest [`SharedConfig::max_entry_bytes`] accepted (Redis's string limit): no replica
/// shares a longer entry.
pub(crate) const MAX_SHARED_MAX_ENTRY_BYTES: usize = 512 << 20;
/// Longest [`SharedConfig::max_ttl`] accepted: 100 years (36 500 days). The server takes a
/// `PX` only while its clock plus the `PX` fits in a signed 64-bit count of milliseconds, so
/// `Duration::MAX` would make it refuse every entry without a TTL.
const MAX_SHARED_MAX_TTL: Duration = Duration::from_secs(36_500 * 24 * 3600);

/// Where the shared tier's commands go.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A Redis or Valkey server at this URL (checked by [`SharedConfig::redis`]).
    Redis(Box<redis::ConnectionInfo>),
    /// A store handed in by the test utilities.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    Store(Arc<dyn SharedStore>),
}

/// The shared tier's settings (feature `redis`): a Redis or Valkey server that replicas
/// share answers through, after the warm tier (hot → warm → shared → loader). Every setter
/// documents its default; [`Builder::build`](crate::Builder::build) checks the ranges.
///
/// ```no_run
/// # async fn f() -> answercache::Result<()> {
/// use std::time::Duration;
/// use answercache::{SharedConfig, TieredCache};
/// let cache = TieredCache::builder("./cache")
///     .shared(
///         SharedConfig::redis("redis://cache.internal:6379/0")?
///             .prefix("agent-x")
///             .timeout(Duration::from_millis(200)),
///     )
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedConfig {
    pub(crate) backend: Backend,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) max_entry_bytes: usize,
    pub(crate) write_queue_bytes: usize,
    pub(crate) namespace_sync_interval: Duration,
    pub(crate) failure_threshold: u32,
    pub(crate) open_timeout: Duration,
    pub(crate) max_open_timeout: Duration,
    pub(crate) mac_key: Option<[u8; 32]>,
    pub(crate) lease_ttl: Duration,
    /// `None`: not set, [`SharedConfig::renew_interval`] derives it from `lease_ttl`.
    pub(crate) lease_renew_interval: Option<Duration>,
    pub(crate) lease_max_hold: Duration,
    pub(crate) lease_wait_max: Duration,
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, never the MAC key.
        let backend = match &self.backend {
            Backend::Redis(info) => format!("redis {}", info.addr()),
            Backend::Store(_) => "in-memory store".to_owned(),
        };
        f.debug_struct("SharedConfig")
            .field("backend", &backend)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_ttl", &self.max_ttl)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("write_queue_bytes", &self.write_queue_bytes)
            .field("namespace_sync_interval", &self.namespace_sync_interval)
            .field("failure_threshold", &self.failure_threshold)
            .field("open_timeout", &self.open_timeout)
            .field("max_open_timeout", &self.max_open_timeout)
            .field("mac_key", &self.mac_key.map(|_| "<set>"))
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_renew_interval", &self.renew_interval())
            .field("lease_max_hold", &self.lease_max_hold)
            .field("lease_wait_max", &self.lease_wait_max)
            .finish()
    }
}

impl SharedConfig {
    /// A shared tier on the server at `url`: `redis://`, `valkey://`, `redis+unix:///path`,
    /// `unix:///path`, and with the `redis-tls` feature `rediss://` / `valkeys://`.
    /// [`Error::Config`] for a URL that does not parse, or a TLS URL without `redis-tls`.
    /// Nothing is connected here (nor in `build()`).
    pub fn redis(url: &str) -> Result<SharedConfig> {
        let scheme = url.split("://").next().unwrap_or("");
        if matches!(scheme, "rediss" | "valkeys") && !cfg!(feature = "redis-tls") {
            return Err(Error::Config(format!(
                "shared tier URL scheme {scheme}:// needs the redis-tls feature"
            )));
        }
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
            // The error names the part that failed; the URL is not repeated (a password).
            Error::Config(format!("shared tier URL does not parse: {e}"))
        })?;
        Ok(SharedConfig::with_backend(Backend::Redis(Box::new(info))))
    }

    pub(crate) fn with_backend(backend: Backend) -> SharedConfig {
        SharedConfig {
            backend,
            prefix: DEFAULT_SHARED_PREFIX.to_owned(),
            timeout: DEFAULT_SHARED_TIMEOUT,
            max_ttl: DEFAULT_SHARED_MAX_TTL,
            max_entry_bytes: DEFAULT_SHARED_MAX_ENTRY_BYTES,
            write_queue_bytes: DEFAULT_SHARED_WRITE_QUEUE_BYTES,
            namespace_sync_interval: DEFAULT_NAMESPACE_SYNC_INTERVAL,
            failure_threshold: DEFAULT_SHARED_FAILURE_THRESHOLD,
            open_timeout: DEFAULT_SHARED_OPEN_TIMEOUT,
            max_open_timeout: DEFAULT_SHARED_MAX_OPEN_TIMEOUT,
            mac_key: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            lease_renew_interval: None,
            lease_max_hold: DEFAULT_LEASE_MAX_HOLD,
            lease_wait_max: DEFAULT_LEASE_WAIT_MAX,
        }
    }

    /// The prefix of every key this cache uses on the server; separates applications that
    /// share one server. Default [`DEFAULT_SHARED_PREFIX`]. 1 to 128 printable ASCII
    /// characters, no whitespace.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }

    /// The bound on each shared operation, enforced by answercache (and the client's response
    /// timeout). Default [`DEFAULT_SHARED_TIMEOUT`] (200 ms). Range 1 ms ..= 60 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The longest time an entry lives on the server (`PX`), also for entries with no expiry.
    /// Default [`DEFAULT_SHARED_MAX_TTL`] (7 days). Range 1 ms ..= 100 years (36 500 days):
    /// `build()` refuses a longer one (`Duration::MAX` included) with [`Error::Config`], as
    /// the server refuses a `PX` that far out.
    pub fn max_ttl(mut self, d: Duration) -> Self {
        self.max_ttl = d;
        self
    }

    /// The largest entry (its entry-file bytes, FORMAT.md) shared; larger ones stay local
    /// (counted as dropped `too_large`). Default [`DEFAULT_SHARED_MAX_ENTRY_BYTES`] (1 MiB).
    /// Range 1 ..= 512 MiB (Redis's string limit).
    pub fn max_entry_bytes(mut self, n: usize) -> Self {
        self.max_entry_bytes = n;
        self
    }

    /// The shared write queue's byte bound: when full, a new write is dropped (counted),
    /// never waited for. Default [`DEFAULT_SHARED_WRITE_QUEUE_BYTES`] (8 MiB). At least 1.
    pub fn write_queue_bytes(mut self, n: usize) -> Self {
        self.write_queue_bytes = n;
        self
    }

    /// How often the namespace generations are compared with the server's (one `MGET`).
    /// Default [`DEFAULT_NAMESPACE_SYNC_INTERVAL`] (2 s); `Duration::ZERO` turns the sync off.
    pub fn namespace_sync_interval(mut self, d: Duration) -> Self {
        self.namespace_sync_interval = d;
        self
    }

    /// Consecutive failures that open the shared breaker. Default
    /// [`DEFAULT_SHARED_FAILURE_THRESHOLD`] (3). At least 1.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// How long the shared breaker stays open before a `PING` probe, doubling on each failed
    /// probe. Default [`DEFAULT_SHARED_OPEN_TIMEOUT`] (5 s). Range 1 ms ..= 24 h.
    pub fn open_timeout(mut self, d: Duration) -> Self {
        self.open_timeout = d;
        self
    }

    /// The cap of that doubling. Default [`DEFAULT_SHARED_MAX_OPEN_TIMEOUT`] (2 min). Range
    /// 1 ms ..= 24 h.
    pub fn max_open_timeout(mut self, d: Duration) -> Self {
        self.max_open_timeout = d;
        self
    }

    /// A key for a keyed blake3 MAC over every shared entry: a value planted by someone who
    /// can write to the server but lacks the key is a miss (and deleted). Off by default: the
    /// unkeyed checksum catches corruption, not forgery. Every replica needs the same key.
    pub fn mac_key(mut self, key: [u8; 32]) -> Self {
        self.mac_key = Some(key);
        self
    }

    /// The lease's time to live (cross-replica single-flight,
    /// [`Builder::shared_single_flight`](crate::Builder::shared_single_flight)). Default
    /// [`DEFAULT_LEASE_TTL`] (10 s). Range 1 ms ..= 24 h. Unless
    /// [`lease_renew_interval`](Self::lease_renew_interval) is set, the lease is renewed every
    /// third of it (at most every 3 s). A lease key on the server that has no expiry, or a
    /// longer one than this, is not a lease of this cache's: a waiter takes it over (at once
    /// when it has no expiry, after waiting `lease_ttl` otherwise).
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d;
        self
    }

    /// How often a leader renews its lease. Default: [`DEFAULT_LEASE_RENEW_INTERVAL`] (3 s),
    /// or a third of [`lease_ttl`](Self::lease_ttl) when that is shorter;
    /// `Duration::ZERO`: never renewed. Set, it must be shorter than `lease_ttl` (default or
    /// set): `build()` refuses `lease_renew_interval >= lease_ttl` with [`Error::Config`],
    /// since the lease of a healthy leader would lapse before its first renewal and every
    /// load longer than `lease_ttl` would run twice. A third of `lease_ttl` or less leaves
    /// room for a slow renewal.
    pub fn lease_renew_interval(mut self, d: Duration) -> Self {
        self.lease_renew_interval = Some(d);
        self
    }

    /// The renewal interval in force: the one set, else [`DEFAULT_LEASE_RENEW_INTERVAL`] or a
    /// third of `lease_ttl`, whichever is shorter.
    pub(crate) fn renew_interval(&self) -> Duration {
        self.lease_renew_interval
            .unwrap_or_else(|| DEFAULT_LEASE_RENEW_INTERVAL.min(self.lease_ttl / 3))
    }

    /// How long a leader renews at most, so a hung loader cannot hold the lease for ever.
    /// Default [`DEFAULT_LEASE_MAX_HOLD`] (10 min).
    pub fn lease_max_hold(mut self, d: Duration) -> Self {
        self.lease_max_hold = d;
        self
    }

    /// How long a waiter polls for another replica's value before loading itself. Default
    /// [`DEFAULT_LEASE_WAIT_MAX`] (60 s).
    pub fn lease_wait_max(mut self, d: Duration) -> Self {
        self.lease_wait_max = d;
        self
    }

    /// Checks every range; the message names the setting, as the builder's do.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(what));
        let p = &self.prefix;
        if p.is_empty() || p.len() > MAX_PREFIX_LEN || !p.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(format!(
                "shared prefix({p:?}) is out of range: valid is 1 ..= {MAX_PREFIX_LEN} printable \
                 ASCII characters, no whitespace"
            ));
        }
        let ms = Duration::from_millis(1);
        let day = Duration::from_secs(24 * 3600);
        let checks: [(&str, Duration, Duration, Duration, &str); 6] = [
            (
                "timeout",
                self.timeout,
                ms,
                MAX_SHARED_TIMEOUT,
                "1 ms ..= 60 s",
            ),
            (
                "max_ttl",
                self.max_ttl,
                ms,
                MAX_SHARED_MAX_TTL,
                "1 ms ..= 36500 days (100 years)",
            ),
            ("open_timeout", self.open_timeout, ms, day, "1 ms ..= 24 h"),
            (
                "max_open_timeout",
                self.max_open_timeout,
                ms,
                day,
                "1 ms ..= 24 h",
            ),
            ("lease_ttl", self.lease_ttl, ms, day, "1 ms ..= 24 h"),
            (
                "lease_wait_max",
                self.lease_wait_max,
                Duration::ZERO,
                day,
                "0 ..= 24 h",
            ),
        ];
        for (name, v, min, max, valid) in checks {
            if v < min || v > max {
                return bad(format!(
                    "shared {name}({v:?}) is out of range: valid is {valid}"
                ));
            }
        }
        if let Some(every) = self.lease_renew_interval {
            if !every.is_zero() && every >= self.lease_ttl {
                return bad(format!(
                    "shared lease_renew_interval({every:?}) is out of range: valid is 0 (never \
                     renewed) or shorter than lease_ttl({:?}), a third of it or less advised",
                    self.lease_ttl
                ));
            }
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > MAX_SHARED_MAX_ENTRY_BYTES {
            return bad(format!(
                "shared max_entry_bytes({}) is out of range: valid is 1 ..= 536870912",
                self.max_entry_bytes
            ));
        }
        if self.write_queue_bytes == 0 {
            return bad("shared write_queue_bytes(0) is out of range: valid is at least 1".into());
        }
        if self.failure_threshold == 0 {
            return bad("shared failure_threshold(0) is out of range: valid is at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(c: SharedConfig) -> String {
        match c.validate() {
            Err(Error::Config(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls_parse_or_are_config_errors() {
        for ok in [
            "redis://127.0.0.1:6379/0",
            "valkey://cache.internal",
            "redis+unix:///tmp/r.sock",
            "unix:///tmp/r.sock",
        ] {
            assert!(SharedConfig::redis(ok).is_ok(), "{ok}");
        }
        for bad in ["", "http://x", "redis://[::1", "nonsense"] {
            assert!(
                matches!(SharedConfig::redis(bad), Err(Error::Config(_))),
                "{bad}"
            );
        }
        let tls = SharedConfig::redis("rediss://127.0.0.1");
        assert_eq!(tls.is_ok(), cfg!(feature = "redis-tls"));
    }

    #[test]
    fn debug_never_prints_the_password() {
        let c = SharedConfig::redis("redis://user:s3cret@127.0.0.1:6379/0").unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("127.0.0.1:6379"), "{text}");
    }

    #[test]
    fn ranges_are_checked() {
        let c = || SharedConfig::redis("redis://127.0.0.1").unwrap();
        assert!(c().validate().is_ok());
        assert_eq!(
            msg(c().timeout(Duration::ZERO)),
            "shared timeout(0ns) is out of range: valid is 1 ms ..= 60 s"
        );
        assert!(msg(c().prefix("")).starts_with("shared prefix(\"\")"));
        assert!(msg(c().prefix("a b")).starts_with("shared prefix(\"a b\")"));
        assert_eq!(
            msg(c().write_queue_bytes(0)),
            "shared write_queue_bytes(0) is out of range: valid is at least 1"
        );
        assert!(msg(c().max_entry_bytes(0)).starts_with("shared max_entry_bytes(0)"));
        assert!(msg(c().failure_threshold(0)).starts_with("shared failure_threshold(0)"));
        assert!(c()
            .namespace_sync_interval(Duration::ZERO)
            .validate()
            .is_ok());
        assert!(c().lease_renew_interval(Duration::ZERO).validate().is_ok());
        // adversary11 R7: the server refuses a PX past i64 milliseconds.
        assert_eq!(
            msg(c().max_ttl(Duration::MAX)),
            "shared max_ttl(18446744073709551615.999999999s) is out of range: valid is \
             1 ms ..= 36500 days (100 years)"
        );
        assert!(c().max_ttl(MAX_SHARED_MAX_TTL).validate().is_ok());
    }

    /// adversary11 R13: a renewal no sooner than the lease's expiry is refused; unset, it
    /// follows `lease_ttl`.
    #[test]
    fn the_renewal_comes_before_the_lease_lapses() {
        let c = || SharedConfig::redis("redis://127.0.0.1").unwrap();
        let s = Duration::from_secs;
        assert_eq!(c().renew_interval(), DEFAULT_LEASE_RENEW_INTERVAL);
        assert_eq!(
            c().lease_ttl(s(2)).renew_interval(),
            Duration::from_millis(2000) / 3
        );
        assert_eq!(c().lease_ttl(s(60)).renew_interval(), s(3));
        assert!(c().lease_ttl(s(2)).validate().is_ok());
        assert_eq!(
            msg(c().lease_ttl(s(2)).lease_renew_interval(s(3))),
            "shared lease_renew_interval(3s) is out of range: valid is 0 (never renewed) or \
             shorter than lease_ttl(2s), a third of it or less advised"
        );
        // Against the default lease_ttl too.
        assert!(
            msg(c().lease_renew_interval(s(10))).starts_with("shared lease_renew_interval(10s)")
        );
        assert!(c().lease_renew_interval(s(9)).validate().is_ok());
        assert!(c()
            .lease_ttl(s(2))
            .lease_renew_interval(Duration::ZERO)
            .validate()
            .is_ok());
        assert_eq!(
            c().lease_ttl(s(2))
                .lease_renew_interval(Duration::ZERO)
                .renew_interval(),
            Duration::ZERO
        );
    }
}
