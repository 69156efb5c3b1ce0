//! T1, sharing basics: three replicas (separate directories, one Redis, one prefix). A loads,
//! B and C get.
//!
//! - loader_calls = 1 per distinct key, across the three;
//! - B and C count `shared_hits` and `cost_saved`, never a load, and never write what they
//!   got back to Redis (a shared hit goes to the warm tier "do not re-share");
//! - what Redis holds is the FORMAT.md entry, under `<prefix>:v1:e:<blake3 hex>` (the key in
//!   no Redis key name), with `PX min(ttl, max_ttl)`;
//! - promoted entries keep the original `expires_ms` (B's warm file has A's header expiry, and
//!   B stops serving the entry when A's TTL ends, not later);
//! - `remove` on A deletes the Redis entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::warm::format::{self, Limits};
use answercache::Controls;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t1";
const MAX_TTL: Duration = Duration::from_secs(600);

#[test]
fn t1_three_replicas_share_answers() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), PREFIX).max_ttl(MAX_TTL);
        let reps = replicas(3, &cfg).await;
        let (a, b, c) = (&reps[0], &reps[1], &reps[2]);
        logs.clear();
        let loads = Arc::new(AtomicU64::new(0));
        let keys: Vec<String> = (0..5).map(|i| format!("question {i}?")).collect();
        let answer = |k: &str| format!("answer to {k}");
        let controls = Controls::<String>::new()
            .ttl(Duration::from_secs(3600))
            .cost(100);

        // A loads every key once.
        for k in &keys {
            let l = loads.clone();
            let v = a
                .get_or_insert_answer(k.as_str(), &controls, || async move {
                    l.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(answer(k))
                })
                .await
                .unwrap();
            assert_eq!(v.value, answer(k));
        }
        // flush drains the shared write queue.
        a.flush().await.unwrap();
        let mut expires = Vec::new();
        for k in &keys {
            let rk = entry_key(PREFIX, k.as_bytes());
            let raw = server
                .get_raw(&rk)
                .await
                .unwrap_or_else(|| panic!("{rk} not in Redis after A's flush"));
            let d = format::decode(&raw, k.as_bytes(), &Limits::default())
                .unwrap_or_else(|e| panic!("{rk} is not a FORMAT.md entry of {k:?}: {e:?}"));
            assert_eq!(
                serde_json::from_slice::<String>(&d.value).unwrap(),
                answer(k)
            );
            assert_eq!(d.meta.cost, 100);
            assert!(d.meta.expires_ms > now_ms() + 3_500_000);
            // PX min(expires - now, max_ttl).
            let pttl = server.pttl(&rk).await;
            assert!(
                pttl > MAX_TTL.as_millis() as i64 - 10_000 && pttl <= MAX_TTL.as_millis() as i64,
                "{rk}: PTTL {pttl}, max_ttl {MAX_TTL:?}"
            );
            expires.push(d.meta.expires_ms);
        }
        // The key never appears in a Redis key name.
        let names = server.keys("*").await;
        assert_eq!(names.len(), 5, "{names:?}");
        for n in &names {
            assert!(
                n.starts_with("t1:v1:e:") && n.len() == "t1:v1:e:".len() + 64,
                "{n}"
            );
            assert!(!n.contains("question"), "{n}");
        }

        // B and C get every key from Redis.
        for r in [b, c] {
            for k in &keys {
                let l = loads.clone();
                let v = r
                    .get_or_insert_answer(k.as_str(), &controls, || async move {
                        l.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(format!("a second load of {k}"))
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    v.value,
                    answer(k),
                    "a replica served a value it loaded itself"
                );
            }
        }
        assert_eq!(loads.load(Ordering::SeqCst), 5, "one load per distinct key");
        let sa = a.stats();
        assert_eq!(
            (
                sa.loader_calls,
                sa.shared_hits,
                sa.shared_misses,
                sa.shared_writes_ok
            ),
            (5, 0, 5, 5),
            "A: {}",
            shared_figures(&sa)
        );
        for (name, r) in [("B", b), ("C", c)] {
            let s = r.stats();
            assert_eq!(
                (s.loader_calls, s.shared_hits, s.shared_misses, s.cost_saved),
                (0, 5, 0, 500),
                "{name}: {}",
                shared_figures(&s)
            );
            // A shared hit is written to the warm tier, never back to Redis.
            assert_eq!(
                s.shared_writes_ok,
                0,
                "{name} re-shared: {}",
                shared_figures(&s)
            );
            assert_eq!(s.shared_errors, 0);
        }
        // Again on B: hot hits now, no network.
        let hot_before = b.stats().hot_hits;
        for k in &keys {
            let v: Option<String> = b.get(k.as_str()).await.unwrap();
            assert_eq!(v, Some(answer(k)));
        }
        let sb = b.stats();
        assert_eq!((sb.hot_hits - hot_before, sb.shared_hits), (5, 5));

        // Promotion keeps the original expires_ms: B's warm file carries A's header expiry.
        b.flush().await.unwrap();
        for (k, e) in keys.iter().zip(&expires) {
            let file = warm_file(b.root(), k.as_bytes());
            let bytes = std::fs::read(&file)
                .unwrap_or_else(|err| panic!("B's warm copy of {k:?} ({}): {err}", file.display()));
            assert_eq!(
                header_expires_ms(&bytes),
                *e,
                "B's warm copy of {k:?} has a new TTL"
            );
        }

        // A short TTL ends on B when A's ends: the hot copy is not given a fresh TTL.
        a.set_bytes_with_ttl("short", b"short-lived", Duration::from_millis(1500))
            .await
            .unwrap();
        a.flush().await.unwrap();
        let raw = server
            .get_raw(&entry_key(PREFIX, b"short"))
            .await
            .expect("short in Redis");
        let e = header_expires_ms(&raw);
        assert!(server.pttl(&entry_key(PREFIX, b"short")).await <= 1500);
        assert_eq!(
            b.get_bytes("short").await.unwrap().as_deref(),
            Some(&b"short-lived"[..])
        );
        let waited = poll_until(Duration::from_secs(3), || now_ms() > e + 20).await;
        assert!(waited.is_some());
        assert_eq!(
            b.get_bytes("short").await.unwrap(),
            None,
            "B outlived A's TTL"
        );
        assert_eq!(c.get_bytes("short").await.unwrap(), None);

        // No TTL: the header says 0, Redis holds it for max_ttl.
        a.set_bytes("forever", b"kept").await.unwrap();
        a.flush().await.unwrap();
        let rk = entry_key(PREFIX, b"forever");
        let raw = server.get_raw(&rk).await.expect("forever in Redis");
        assert_eq!(header_expires_ms(&raw), 0);
        let pttl = server.pttl(&rk).await;
        assert!(pttl > MAX_TTL.as_millis() as i64 - 10_000, "PTTL {pttl}");
        assert_eq!(
            c.get_bytes("forever").await.unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        // remove = local remove + a queued DEL.
        assert!(a.remove("forever").await.unwrap());
        a.flush().await.unwrap();
        assert!(
            !server.exists(&rk).await,
            "remove did not DEL the shared entry"
        );
        let misses = b.stats().shared_misses;
        assert_eq!(b.get_bytes("forever").await.unwrap(), None);
        assert_eq!(b.stats().shared_misses, misses + 1);

        let warnings = logs.crate_warnings();
        assert!(warnings.is_empty(), "{warnings:#?}");
        let (sa, sb, sc) = (a.stats(), b.stats(), c.stats());
        println!(
            "\nSHARED T1 server={} loader_calls={}/{}/{} shared_hits={}/{}/{} cost_saved={}/{}/{} \
             redis_keys={}",
            server.version_string(),
            sa.loader_calls,
            sb.loader_calls,
            sc.loader_calls,
            sa.shared_hits,
            sb.shared_hits,
            sc.shared_hits,
            sa.cost_saved,
            sb.cost_saved,
            sc.cost_saved,
            names.len()
        );
        for r in &reps {
            r.close().await.unwrap();
        }
    });
}
