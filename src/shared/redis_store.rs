//! The [`SharedStore`] on a Redis or Valkey server: two multiplexed
//! [`ConnectionManager`](redis::aio::ConnectionManager)s, one for reads (and the probe's
//! `PING`), one for writes (the drain task's batches, generations, leases), so that a write
//! the server holds back (`CLIENT PAUSE WRITE` during a failover, a full output buffer) never
//! delays a read queued behind it on the same connection: a server answers one connection's
//! commands in order. One breaker covers both (the tier's). Each is made lazily (nothing
//! connects before the first command, so `build()` never waits), configured as
//! SHARED_TIER.md section 6 says: the response timeout is the tier's `timeout`, a connection
//! attempt gives up after 1 s, and a broken connection is retried once after 100 ms.
//! Reconnect storms are bounded by the breaker, not by backoff loops inside each call.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ConnectionInfo, ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::store::{BoxFut, Found, LeaseSeen, SharedStore, StoreError, WriteOp, LEASE_READ_LEN};
use crate::stats::SharedErrorKind;

/// How long one connection attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// The first reconnect delay.
const MIN_DELAY: Duration = Duration::from_millis(100);

/// `if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('pexpire',KEYS[1],ARGV[2]) else return 0 end`
const RENEW: &str = "if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('pexpire',KEYS[1],ARGV[2]) else return 0 end";
/// `if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end`
const RELEASE: &str =
    "if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";
/// `if redis.call('get',KEYS[1])==ARGV[1] then redis.call('set',KEYS[1],ARGV[2],'px',ARGV[3]) return 1 else return 0 end`
const REPLACE: &str = "if redis.call('get',KEYS[1])==ARGV[1] then redis.call('set',KEYS[1],ARGV[2],'px',ARGV[3]) return 1 else return 0 end";

/// The compare-and-set of a namespace generation (`KEYS[1]` the generation key, `ARGV[1]` the
/// new generation, `ARGV[2]` `1` to write over nothing, `ARGV[3..]` the generations it may
/// replace): nil when written or already there, else what the key holds (empty: nothing).
const SET_GENERATION: &str = "local cur = redis.call('get', KEYS[1])
if cur == ARGV[1] then return false end
if cur == false then
  if ARGV[2] == '1' then redis.call('set', KEYS[1], ARGV[1]) return false end
  return ''
end
for i = 3, #ARGV do
  if cur == ARGV[i] then redis.call('set', KEYS[1], ARGV[1]) return false end
end
return cur";

/// The compare-and-delete of a corrupt value (`KEYS[1]` the entry key; `ARGV[1]` empty: delete
/// it while it is not a string; else the prefix it must begin with, and `ARGV[2]` its length
/// or empty): 1 when deleted.
const DEL_IF: &str = "local t = redis.call('type', KEYS[1])['ok']
if ARGV[1] == '' then
  if t ~= 'string' and t ~= 'none' then return redis.call('del', KEYS[1]) end
  return 0
end
if t ~= 'string' then return 0 end
if ARGV[2] ~= '' and redis.call('strlen', KEYS[1]) ~= tonumber(ARGV[2]) then return 0 end
if redis.call('getrange', KEYS[1], 0, string.len(ARGV[1]) - 1) ~= ARGV[1] then return 0 end
return redis.call('del', KEYS[1])";

/// The store on a server.
pub(crate) struct RedisStore {
    /// `GETRANGE`, `MGET`, the lease poll, `PING`.
    read: ConnectionManager,
    /// `SET`, `DEL`, the batches, `SET NX`, the lease scripts.
    write: ConnectionManager,
    renew: Script,
    release: Script,
    replace: Script,
}

impl RedisStore {
    /// A store for `info`, connecting on first use. `Err` only for a configuration the
    /// client refuses (the builder reports it as `Error::Config`).
    pub(crate) fn new(info: ConnectionInfo, timeout: Duration) -> Result<RedisStore, String> {
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(MIN_DELAY);
        let read = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| e.to_string())?;
        let write =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())?;
        Ok(RedisStore {
            read,
            write,
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            replace: Script::new(REPLACE),
        })
    }

    /// `cmd` on the read connection.
    async fn read<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.read.clone();
        cmd.query_async(&mut conn).await.map_err(|e| classify(&e))
    }

    /// `cmd` on the write connection.
    async fn write<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.write.clone();
        cmd.query_async(&mut conn).await.map_err(|e| classify(&e))
    }
}

/// Classifies a client error (SHARED_TIER.md section 6).
fn classify(e: &RedisError) -> StoreError {
    let detail = e.to_string();
    if e.is_timeout() {
        return StoreError::failed(SharedErrorKind::Timeout, detail);
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return StoreError::failed(SharedErrorKind::Io, detail);
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => StoreError::failed(SharedErrorKind::Auth, detail),
        ErrorKind::Io => StoreError::failed(SharedErrorKind::Io, detail),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain,
        ) => StoreError::failed(SharedErrorKind::Server, detail),
        ErrorKind::Server(ServerErrorKind::NoPerm) => {
            StoreError::failed(SharedErrorKind::Auth, detail)
        }
        _ => StoreError::from_reply(e.code().unwrap_or(""), detail),
    }
}

/// Bytes from a `GETRANGE`/`GET` reply: `None` for nil or empty (a valid entry is never
/// empty).
fn bytes(v: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) if b.is_empty() => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) if s.is_empty() => Ok(None),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::ServerError(e) => Err(StoreError::from_reply(e.code(), format!("{e:?}"))),
        other => Err(StoreError::failed(
            SharedErrorKind::Protocol,
            format!("unexpected reply {other:?}"),
        )),
    }
}

/// `GETRANGE key 0 max_len`: at most `max_len + 1` bytes.
fn getrange(key: &str, max_len: usize) -> redis::Cmd {
    let mut c = redis::cmd("GETRANGE");
    c.arg(key).arg(0).arg(max_len);
    c
}

impl SharedStore for RedisStore {
    fn get(&self, key: &str, max_len: usize) -> BoxFut<'_, Option<Vec<u8>>> {
        let cmd = getrange(key, max_len);
        Box::pin(async move { bytes(self.read::<Value>(&cmd).await?) })
    }

    fn write_many(&self, ops: Vec<WriteOp>) -> BoxFut<'_, Vec<Result<(), StoreError>>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for op in &ops {
                match op {
                    WriteOp::Set { key, value, px } => {
                        pipe.cmd("SET").arg(key).arg(&value[..]).arg("PX").arg(*px);
                    }
                    WriteOp::Del { key } => {
                        pipe.cmd("DEL").arg(key);
                    }
                }
            }
            let mut conn = self.write.clone();
            let replies: Vec<Value> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            Ok(replies
                .into_iter()
                .map(|v| match v {
                    Value::ServerError(e) => {
                        Err(StoreError::from_reply(e.code(), format!("{e:?}")))
                    }
                    _ => Ok(()),
                })
                .collect())
        })
    }

    fn set(&self, key: &str, value: &[u8]) -> BoxFut<'_, ()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        Box::pin(async move { self.write::<()>(&cmd).await })
    }

    fn del_if(&self, key: &str, found: Found) -> BoxFut<'_, bool> {
        // `EVAL` with the script's text, not `EVALSHA`: a rare call that must work even
        // when its first attempt is cut off (a write pause) before the client's NOSCRIPT
        // fallback loaded the script.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DEL_IF).arg(1).arg(key);
        match &found {
            Found::NotAString => cmd.arg("").arg(""),
            Found::Bytes { prefix, len } => cmd
                .arg(&prefix[..])
                .arg(len.map(|n| n.to_string()).unwrap_or_default()),
        };
        Box::pin(async move { Ok(self.write::<i64>(&cmd).await? == 1) })
    }

    fn mget(&self, keys: &[String]) -> BoxFut<'_, Vec<Option<Vec<u8>>>> {
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(k);
        }
        let empty = keys.is_empty();
        Box::pin(async move {
            if empty {
                return Ok(Vec::new());
            }
            self.read::<Vec<Option<Vec<u8>>>>(&cmd).await
        })
    }

    fn set_generation(
        &self,
        key: &str,
        value: &[u8],
        accept: Vec<Vec<u8>>,
        if_absent: bool,
    ) -> BoxFut<'_, Option<Vec<u8>>> {
        // `EVAL` with the script's text (see `del_if`).
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SET_GENERATION)
            .arg(1)
            .arg(key)
            .arg(value)
            .arg(if if_absent { "1" } else { "0" });
        for a in &accept {
            cmd.arg(&a[..]);
        }
        Box::pin(async move {
            let v: Value = self.write(&cmd).await?;
            match v {
                Value::Nil => Ok(None),
                Value::BulkString(b) => Ok(Some(b)),
                Value::ServerError(e) => Err(StoreError::from_reply(e.code(), format!("{e:?}"))),
                other => Err(StoreError::failed(
                    SharedErrorKind::Protocol,
                    format!("unexpected reply {other:?}"),
                )),
            }
        })
    }

    fn set_nx_get(&self, key: &str, value: &[u8]) -> BoxFut<'_, Option<Vec<u8>>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("GET");
        Box::pin(async move { bytes(self.write::<Value>(&cmd).await?) })
    }

    fn lease_acquire(&self, key: &str, token: &str, px: u64) -> BoxFut<'_, bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(token).arg("NX").arg("PX").arg(px);
        Box::pin(async move {
            let v: Value = self.write(&cmd).await?;
            Ok(matches!(v, Value::Okay | Value::SimpleString(_)))
        })
    }

    fn lease_renew(&self, key: &str, token: &str, px: u64) -> BoxFut<'_, bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        Box::pin(async move {
            let mut conn = self.write.clone();
            let n: i64 = self
                .renew
                .key(&key)
                .arg(&token)
                .arg(px)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            Ok(n == 1)
        })
    }

    fn lease_release(&self, key: &str, token: &str) -> BoxFut<'_, bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        Box::pin(async move {
            let mut conn = self.write.clone();
            let n: i64 = self
                .release
                .key(&key)
                .arg(&token)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            Ok(n == 1)
        })
    }

    fn lease_replace(&self, key: &str, token: &str, value: &str, px: u64) -> BoxFut<'_, bool> {
        let (key, token, value) = (key.to_owned(), token.to_owned(), value.to_owned());
        Box::pin(async move {
            let mut conn = self.write.clone();
            let n: i64 = self
                .replace
                .key(&key)
                .arg(&token)
                .arg(&value)
                .arg(px)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            Ok(n == 1)
        })
    }

    fn poll(
        &self,
        value_key: &str,
        lease_key: &str,
        max_len: usize,
    ) -> BoxFut<'_, (Option<Vec<u8>>, Option<LeaseSeen>)> {
        let mut pipe = redis::pipe();
        pipe.add_command(getrange(value_key, max_len));
        pipe.add_command(getrange(lease_key, LEASE_READ_LEN));
        pipe.cmd("PTTL").arg(lease_key);
        Box::pin(async move {
            let mut conn = self.read.clone();
            let (v, lease, pttl): (Value, Value, i64) = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            // `GETRANGE` of no key is empty: `PTTL` tells. -2: no such key; -1: no expiry
            // (not a lease of this cache's, but it exists).
            let seen = match pttl {
                -2 => None,
                _ => Some(LeaseSeen {
                    value: bytes(lease)?.unwrap_or_default(),
                    ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
                }),
            };
            Ok((bytes(v)?, seen))
        })
    }

    /// `PING` on the read connection. The write connection is not probed: an idle one the
    /// server dropped meanwhile (a `CLIENT KILL`, a restart) answers its next command with
    /// one broken pipe and reconnects, which the breaker's threshold tolerates, whereas a
    /// probe that met it would keep the tier Open for another open timeout.
    fn ping(&self) -> BoxFut<'_, ()> {
        let cmd = redis::cmd("PING");
        Box::pin(async move { self.read::<()>(&cmd).await })
    }
}
