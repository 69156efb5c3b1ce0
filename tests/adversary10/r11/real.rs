//! Against a real `redis-server` (one throwaway server per test on a unix socket; skipped
//! without one, failed under `CI=true`): values of every other Redis type under an entry key,
//! a `max_ttl` the configuration accepts but the server refuses, and a demoted primary
//! (`READONLY` on every write).

use std::time::Duration;

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

/// Guard (`Failure::WrongType`, inline `delete_corrupt`): a hash, a set, a sorted set and a
/// stream under entry keys (D3 covered a list), and a string of garbage: each read is a miss,
/// counted `not-a-regular-file` (`magic` for the string), and the value is already gone from
/// the server when the read returns (deleted before it returns, not in the background); no
/// error, no breaker move, and another key still hits.
#[test]
fn values_of_every_other_type_are_deleted_before_the_read_returns() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "r11wt", 3);
        let (a, b) = (replica(cfg.clone()).await, replica(cfg).await);
        wait_closed(&a).await;
        wait_closed(&b).await;
        b.set_bytes("other", "shared answer").await.unwrap();
        b.flush().await.unwrap();
        let planted: [(&str, Vec<&str>); 5] = [
            ("hash", vec!["HSET", "f", "v"]),
            ("set", vec!["SADD", "m"]),
            ("zset", vec!["ZADD", "1", "m"]),
            ("stream", vec!["XADD", "*", "f", "v"]),
            ("string", vec!["SET", "garbage, not an entry"]),
        ];
        for (name, cmd) in &planted {
            let key = entry_key("r11wt", name.as_bytes());
            let mut args = vec![cmd[0], key.as_str()];
            args.extend_from_slice(&cmd[1..]);
            let _: redis::Value = server.cmd(&args).await;
            assert!(server.exists(&key).await, "{name} planted");
            assert_eq!(a.get_bytes(*name).await.unwrap(), None, "{name}");
            assert!(
                !server.exists(&key).await,
                "{name}: still there after the read returned"
            );
        }
        assert_eq!(
            a.get_bytes("other").await.unwrap().as_deref(),
            Some(&b"shared answer"[..])
        );
        let s = a.stats();
        assert_eq!(
            (
                s.shared_errors,
                s.shared_breaker_opens,
                s.shared_state,
                s.shared_corrupted,
                s.shared_misses,
                s.shared_hits
            ),
            (0, 0, Some(BreakerState::Closed), 5, 5, 1),
            "{}",
            shared_figures(&s)
        );
        assert_eq!(
            (
                by(&s.shared_corrupted_by_reason, "not-a-regular-file"),
                by(&s.shared_corrupted_by_reason, "magic")
            ),
            (4, 1),
            "{:?}",
            s.shared_corrupted_by_reason
        );
    });
}

/// `max_ttl` is validated as "at least 1 ms" with no upper bound, so `Duration::MAX` (a
/// natural way to say "no cap") is accepted. An entry with no TTL (the default) is then sent
/// as `SET .. PX 18446744073709551615`, which the server refuses (`ERR value is not an
/// integer or out of range`): counted as a protocol error and a failed write, so no answer
/// without a TTL is ever shared (the breaker does not open only because of R8).
/// Expected: the setting refused by `build()` (`Error::Config`), or the `PX` capped at what
/// the server takes; observed: every write fails with an error.
#[test]
fn max_ttl_duration_max_is_refused_or_works() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "r11mt", 3).max_ttl(Duration::MAX);
        let dir = tempfile::tempdir().unwrap();
        let built = local_builder(dir.path()).shared(cfg).build().await;
        let Ok(a) = built else {
            // Refused as a configuration error: the promise holds.
            return;
        };
        wait_closed(&a).await;
        for i in 0..3 {
            a.set_bytes(format!("k{i}"), "answer").await.unwrap();
            a.flush().await.unwrap();
        }
        let s = a.stats();
        let on_server = server.exists(&entry_key("r11mt", b"k0")).await;
        assert_eq!(
            (
                s.shared_writes_ok,
                s.shared_writes_failed,
                s.shared_errors,
                on_server
            ),
            (3, 0, 0, true),
            "{}",
            shared_figures(&s)
        );
        a.close().await.unwrap();
    });
}

/// SHARED_TIER.md §6: `READONLY` ("writing to a demoted primary") is a failure that feeds the
/// breaker (3 consecutive open it). A server turned replica (`REPLICAOF`, as in a failover)
/// answers every write `READONLY` inside the pipeline's round trip. `send_batch` reports the
/// round trip a success (`call`), then the command's failure once: the breaker sees success,
/// failure, success, failure... and never 3 consecutive failures, so it never opens however
/// many writes fail (a batch of several failed writes also counts once).
#[test]
fn writes_refused_readonly_open_the_breaker() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        // The breaker, once open, stays open for the rest of the test.
        let cfg = cfg(&server, "r11ro", 3)
            .open_timeout(Duration::from_secs(60))
            .max_open_timeout(Duration::from_secs(60));
        let a = replica(cfg).await;
        wait_closed(&a).await;
        a.set_bytes("k0", "answer").await.unwrap();
        a.flush().await.unwrap();
        // A failover demoted the server: reads still work, writes are refused.
        let _: String = server.cmd(&["REPLICAOF", "127.0.0.1", "1"]).await;
        for i in 1..=5 {
            a.set_bytes(format!("k{i}"), "answer").await.unwrap();
            a.flush().await.unwrap();
        }
        let s = a.stats();
        let _: String = server.cmd(&["REPLICAOF", "NO", "ONE"]).await;
        assert_eq!(
            (
                s.shared_breaker_opens,
                s.shared_state,
                s.shared_writes_failed,
                by(&s.shared_errors_by_kind, "server"),
                by(&s.shared_writes_dropped_by_reason, "breaker_open")
            ),
            (1, Some(BreakerState::Open), 3, 3, 2),
            "{}",
            shared_figures(&s)
        );
        a.close().await.unwrap();
    });
}

/// Guard (R10 on a real server): during a write pause (`CLIENT PAUSE 3000 WRITE`, what a
/// failover does; SHARED_TIER.md T6: "reads keep hitting during PAUSE WRITE"), reads that
/// meet corrupt values wait for their inline `DEL`, which the pause holds until the timeout
/// (each such read takes about `timeout`, 201-203 ms measured, and counts a timeout error).
/// The breaker still stays Closed (each read's `GET` succeeded in between: the count never
/// reaches 3 in a row), and another key keeps hitting. Deleted once the pause ends.
#[test]
fn corrupt_values_read_during_a_write_pause_do_not_open_the_breaker() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let (a, b) = (
            replica(cfg(&server, "r11pw", 3)).await,
            replica(cfg(&server, "r11pw", 3)).await,
        );
        wait_closed(&a).await;
        wait_closed(&b).await;
        b.set_bytes("other", "shared answer").await.unwrap();
        b.flush().await.unwrap();
        for i in 0..3 {
            server
                .set_raw(&entry_key("r11pw", format!("g{i}").as_bytes()), b"garbage")
                .await;
        }
        let _: String = server.cmd(&["CLIENT", "PAUSE", "3000", "WRITE"]).await;
        let mut took = Vec::new();
        for i in 0..3 {
            let t = std::time::Instant::now();
            assert_eq!(a.get_bytes(format!("g{i}")).await.unwrap(), None);
            took.push(t.elapsed());
        }
        let other = a.get_bytes("other").await.unwrap();
        let s = a.stats();
        let _: String = server.cmd(&["CLIENT", "UNPAUSE"]).await;
        assert_eq!(
            (other.as_deref(), s.shared_breaker_opens, s.shared_corrupted),
            (Some(&b"shared answer"[..]), 0, 3),
            "reads took {took:?}; {}",
            shared_figures(&s)
        );
        let gone = poll_until_async(Duration::from_secs(3), Duration::from_millis(10), || {
            let server = &server;
            async move {
                let mut any = false;
                for i in 0..3 {
                    any |= server
                        .exists(&entry_key("r11pw", format!("g{i}").as_bytes()))
                        .await;
                }
                !any
            }
        })
        .await;
        assert!(
            gone.is_some(),
            "the corrupt values were not deleted after the pause"
        );
    });
}
