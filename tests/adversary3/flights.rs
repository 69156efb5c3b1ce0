//! Single-flight under real concurrency: accounting (`hits + misses + joined + bypasses ==
//! calls`, `loader_calls == misses + bypasses`, per-call `Source` matching the counters),
//! mixed types on one key, full bypasses, loader errors, panics, unencodable values, and
//! stale-if-error fallbacks of another type.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::agent::Controls;
use answercache::{Encoding, Error, ManualClock, Source};
use serde::{Deserialize, Serialize};

use crate::support::*;

/// An answer of type A: names its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct A {
    a_key: String,
    n: u64,
}

/// Another type stored under the same keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct B {
    b_key: String,
    items: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream A failed ({0})")]
struct ErrA(u32);

#[derive(Debug, thiserror::Error)]
#[error("upstream B failed ({0})")]
struct ErrB(u32);

/// Fifty identical concurrent requests for one request key, on 8 worker threads, while the
/// key holds an entry of another type (the service's answer type changed): fifty decode
/// misses, one miss, one load, forty-nine joined, and every caller gets the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_requests_over_an_entry_of_another_type() {
    let mut f = open().await;
    let ns = f.namespace("chat").unwrap();
    let rk = ns
        .request_key_builder()
        .model("gpt-4o-mini")
        .message("user", "hello")
        .build()
        .unwrap();
    f.set(
        &rk,
        &B {
            b_key: "old".into(),
            items: vec![1],
        },
    )
    .await
    .unwrap();
    f.reopen().await; // the entry is on disk only
    let loads = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, rk, loads, go) = (f.cache.clone(), rk.clone(), loads.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            go.wait().await;
            cache
                .get_or_insert_answer(&rk, &Controls::new().cost(30), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok::<_, ErrA>(A {
                        a_key: "hello".into(),
                        n: 1,
                    })
                })
                .await
                .unwrap()
        }));
    }
    let mut sources = BTreeMap::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(
            a.value,
            A {
                a_key: "hello".into(),
                n: 1
            }
        );
        assert_eq!(a.encoding, Encoding::Json);
        *sources.entry(a.source).or_insert(0) += 1;
    }
    let c = counts(&f.stats());
    assert_eq!(
        sources,
        [(Source::Loaded, 1), (Source::Joined, 49)]
            .into_iter()
            .collect(),
        "{c:?}"
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        (
            c.misses,
            c.joined,
            c.loader_calls,
            c.decode_misses,
            c.hot + c.warm
        ),
        (1, 49, 1, 50, 0),
        "{c:?}"
    );
    assert_eq!(c.cost_saved, 49 * 30);
}

/// Callers of type B arrive while a load of type A is in flight on the same key. A's value
/// does not decode as B: the B callers must load for themselves (one B load, the others
/// joining it), never be served A's bytes; the final entry is B's; the accounting holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn callers_of_another_type_joining_a_load_reload_for_their_type() {
    let f = open().await;
    let a_started = Arc::new(tokio::sync::Notify::new());
    let release_a = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, started, release) = (f.cache.clone(), a_started.clone(), release_a.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_answer("k", &Controls::new(), || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, ErrA>(A {
                        a_key: "k".into(),
                        n: 7,
                    })
                })
                .await
                .unwrap()
        })
    };
    a_started.notified().await;
    let b_loads = Arc::new(AtomicUsize::new(0));
    let mut bs = Vec::new();
    for i in 0..10u32 {
        let (cache, b_loads) = (f.cache.clone(), b_loads.clone());
        bs.push(tokio::spawn(async move {
            cache
                .get_or_insert_answer("k", &Controls::new(), || async move {
                    b_loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, ErrB>(B {
                        b_key: "k".into(),
                        items: vec![i],
                    })
                })
                .await
                .unwrap()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // the B callers are waiting
    release_a.notify_one();
    let a = leader.await.unwrap();
    assert_eq!((a.value.n, a.source), (7, Source::Loaded));
    let mut loaded_b = None;
    let mut joined = 0;
    for t in bs {
        let b = t.await.unwrap();
        assert_eq!(b.value.b_key, "k");
        match b.source {
            Source::Loaded => {
                assert!(loaded_b.is_none(), "two B loads");
                loaded_b = Some(b.value.clone());
            }
            Source::Joined => joined += 1,
            other => panic!("a B caller was answered from {other:?}"),
        }
    }
    let loaded_b = loaded_b.expect("one B caller loaded");
    assert_eq!((joined, b_loads.load(Ordering::SeqCst)), (9, 1));
    assert_eq!(f.get::<B>("k").await.unwrap(), Some(loaded_b));
    let c = counts(&f.stats());
    // Calls: 1 A + 10 B (the get above is not a get_or_insert call: 1 hot hit). Each B caller
    // counts at most one decode miss: all ten met A's value (they waited on A's load), or
    // none did (loads of another type are not shared).
    assert_eq!(
        (c.misses, c.joined, c.loader_calls, c.hot),
        (2, 9, 2, 1),
        "{c:?}"
    );
    assert!(c.decode_misses == 10 || c.decode_misses == 0, "{c:?}");
}

/// The same, but A's load fails. The B callers never ran their own loader; they get A's
/// error, which their own error type cannot downcast (`loader_error::<ErrB>()` is `None`).
/// A value of A would have sent them to load for themselves; A's failure fails them instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_of_another_type_get_the_other_types_loader_error() {
    let f = open().await;
    let a_started = Arc::new(tokio::sync::Notify::new());
    let release_a = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, started, release) = (f.cache.clone(), a_started.clone(), release_a.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", || async move {
                    started.notify_one();
                    release.notified().await;
                    Err::<A, _>(ErrA(429))
                })
                .await
        })
    };
    a_started.notified().await;
    let b = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", || async {
                    Ok::<_, ErrB>(B {
                        b_key: "k".into(),
                        items: vec![1],
                    })
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    release_a.notify_one();
    let a = leader.await.unwrap().unwrap_err();
    assert_eq!(a.loader_error::<ErrA>().map(|e| e.0), Some(429));
    let b = b.await.unwrap();
    match &b {
        Ok(v) => assert_eq!(v.items, vec![1]),
        Err(e) => panic!(
            "the B caller got another type's failure: {e} (as ErrB: {:?}; as ErrA: {:?})",
            e.loader_error::<ErrB>().map(|e| e.0),
            e.loader_error::<ErrA>().map(|e| e.0)
        ),
    }
}

/// A stale-if-error fallback of another type is never served as this caller's type: the
/// expired hot entry is A, a B caller's load fails: an error, not A's bytes.
#[tokio::test]
async fn a_stale_fallback_of_another_type_is_never_served() {
    let clock = ManualClock::new(T0);
    let f = open_with(|b| b.clock(Arc::new(clock.clone()))).await;
    f.set_with_ttl(
        "k",
        &A {
            a_key: "k".into(),
            n: 1,
        },
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    clock.advance(Duration::from_secs(61));
    let controls = Controls::new().stale_if_error(Duration::from_secs(3600));
    let b = f
        .get_or_insert_answer("k", &controls, || async { Err::<B, _>(ErrB(503)) })
        .await;
    assert_eq!(
        b.as_ref()
            .err()
            .and_then(|e| e.loader_error::<ErrB>())
            .map(|e| e.0),
        Some(503),
        "{:?}",
        b.map(|a| a.value)
    );
    // The A caller gets its own stale answer.
    let controls = Controls::new().stale_if_error(Duration::from_secs(3600));
    let a = f
        .get_or_insert_answer("k", &controls, || async { Err::<A, _>(ErrA(503)) })
        .await
        .unwrap();
    assert_eq!((a.value.n, a.source), (1, Source::Stale));
    let s = f.stats();
    assert_eq!((s.stale_served, s.misses, s.loader_calls), (1, 2, 2));
}

/// A full bypass (`no_cache().no_store()`) neither joins a load in flight nor leads one that
/// others join, nor reads, nor stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_bypass_is_invisible_to_other_callers() {
    let f = open().await;
    f.set("k", &"stored".to_owned()).await.unwrap();
    let bypass = Controls::new().no_cache().no_store();
    // A bypass with a slow loader: a normal caller meanwhile is a hit, not a joiner.
    let slow = {
        let (cache, bypass) = (f.cache.clone(), bypass.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_answer("k", &bypass, || async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, ErrA>("sampled".to_owned())
                })
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.loads_in_flight(), 0, "a bypass leads a flight");
    let normal = f
        .get_or_insert_answer("k", &Controls::new(), || async {
            Err::<String, _>(ErrA(0))
        })
        .await
        .unwrap();
    assert_eq!(
        (normal.value.as_str(), normal.source),
        ("stored", Source::Hot)
    );
    // A fresh key: the normal caller leads, a bypass arriving meanwhile runs its own loader.
    let leader = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_answer("fresh", &Controls::new(), || async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, ErrA>("led".to_owned())
                })
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.loads_in_flight(), 1);
    let own = f
        .get_or_insert_answer("fresh", &bypass, || async {
            Ok::<_, ErrA>("own".to_owned())
        })
        .await
        .unwrap();
    assert_eq!((own.value.as_str(), own.source), ("own", Source::Loaded));
    let s1 = slow.await.unwrap();
    assert_eq!((s1.value.as_str(), s1.source), ("sampled", Source::Loaded));
    assert_eq!(leader.await.unwrap().value, "led");
    assert_eq!(
        f.get::<String>("k").await.unwrap().as_deref(),
        Some("stored")
    );
    assert_eq!(
        f.get::<String>("fresh").await.unwrap().as_deref(),
        Some("led")
    );
    let s = f.stats();
    assert_eq!(
        (s.bypasses, s.loader_calls, s.misses, s.joined, s.sets),
        (2, 3, 1, 0, 2),
        "{:?}",
        counts(&s)
    );
}

/// A full bypass with a request key of a namespace this process has not used yet: "nothing
/// read or stored". Resolving the key reads the namespace record from the disk and, finding
/// none, stores a new one: the bypass writes to the cache.
#[tokio::test]
async fn a_full_bypass_with_a_request_key_stores_nothing() {
    let f = open().await;
    let ns = f.namespace("sampled").unwrap();
    let rk = ns
        .request_key_builder()
        .model("m")
        .param("temperature", &1.2)
        .build()
        .unwrap();
    let got = f
        .get_or_insert_answer(&rk, &Controls::new().no_cache().no_store(), || async {
            Ok::<_, ErrA>("creative".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(got.source, Source::Loaded);
    f.flush().await.unwrap();
    let s = f.stats();
    assert_eq!(
        (s.sets, s.writes_ok, s.hot_entries),
        (0, 0, 0),
        "a full bypass stored something"
    );
}

/// Every waiter of a failed load gets `Error::Loader` with the loader's own error, and a
/// panicking loader fails its waiters with `is_panic()`; neither is stored; the next call
/// loads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loader_errors_and_panics_reach_every_waiter() {
    let f = open().await;
    for panics in [false, true] {
        let key = format!("k-{panics}");
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let leader = {
            let (cache, started, release, key) = (
                f.cache.clone(),
                started.clone(),
                release.clone(),
                key.clone(),
            );
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, || async move {
                        started.notify_one();
                        release.notified().await;
                        if panics {
                            panic!("the loader panics (expected by the test)");
                        }
                        Err::<A, _>(ErrA(429))
                    })
                    .await
            })
        };
        started.notified().await;
        let mut waiters = Vec::new();
        for _ in 0..20 {
            let (cache, key) = (f.cache.clone(), key.clone());
            waiters.push(tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, || async {
                        Err::<A, _>(ErrA(0)) // must not run
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        release.notify_one();
        let led = leader.await;
        if panics {
            assert!(led.unwrap_err().is_panic());
        } else {
            let e = led.unwrap().unwrap_err();
            assert_eq!(e.loader_error::<ErrA>().map(|e| e.0), Some(429));
        }
        for w in waiters {
            let e = w.await.unwrap().unwrap_err();
            let Error::Loader(le) = &e else { panic!("{e}") };
            if panics {
                assert!(le.is_panic(), "{e}");
            } else {
                assert!(!le.is_panic());
                assert_eq!(e.loader_error::<ErrA>().map(|e| e.0), Some(429));
            }
        }
        let again = f
            .get_or_insert_with(&key, || async {
                Ok::<_, ErrA>(A {
                    a_key: key.clone(),
                    n: 2,
                })
            })
            .await
            .unwrap();
        assert_eq!(again.n, 2);
    }
    let s = f.stats();
    assert_eq!(
        (s.misses, s.joined, s.loader_calls),
        (4, 40, 4),
        "{:?}",
        counts(&s)
    );
}

/// The loader's error must be reachable the standard way too: "Errors keep their source".
/// Walking `std::error::Error::source()` from the returned error (what `anyhow`'s `chain`,
/// `tracing`'s error fields and most HTTP error mappers do) must meet the loader's error
/// itself. The chain goes `Error` → `LoaderError` → the loader error's *own* source: the
/// loader's error is skipped.
#[tokio::test]
async fn the_loader_error_is_in_the_standard_source_chain() {
    let f = open().await;
    let err = f
        .get_or_insert_with("k", || async { Err::<A, _>(ErrA(429)) })
        .await
        .unwrap_err();
    let mut chain: Vec<String> = Vec::new();
    let mut found = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cur {
        chain.push(e.to_string());
        if let Some(a) = e.downcast_ref::<ErrA>() {
            found = Some(a.0);
        }
        cur = e.source();
    }
    assert_eq!(
        found,
        Some(429),
        "ErrA is not in the source chain {chain:?}"
    );
}

/// A loaded value JSON cannot carry is returned to the leader uncached; its waiters load for
/// themselves (each once), and each gets its own value; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unencodable_loads_send_every_waiter_to_its_own_loader() {
    let f = open().await;
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, started, release) = (f.cache.clone(), started.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_answer("nan", &Controls::new(), || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, ErrA>(vec![f64::NAN, -1.0])
                })
                .await
                .unwrap()
        })
    };
    started.notified().await;
    let ran = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for i in 0..5 {
        let (cache, ran) = (f.cache.clone(), ran.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .get_or_insert_answer("nan", &Controls::new(), || async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ErrA>(vec![f64::INFINITY, f64::from(i)])
                })
                .await
                .unwrap()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.notify_one();
    let led = leader.await.unwrap();
    assert!(led.value[0].is_nan() && led.source == Source::Loaded);
    let mut seen = Vec::new();
    for (i, w) in waiters.into_iter().enumerate() {
        let a = w.await.unwrap();
        assert_eq!(a.source, Source::Loaded);
        assert_eq!(a.value[0], f64::INFINITY);
        assert_eq!(a.value[1], i as f64, "a waiter got another caller's value");
        seen.push(a.value[1]);
    }
    let s = f.stats();
    assert_eq!(ran.load(Ordering::SeqCst), 5);
    assert_eq!(
        (s.unencodable, s.misses, s.loader_calls, s.joined, s.sets),
        (6, 6, 6, 0, 0),
        "{:?}",
        counts(&s)
    );
    assert_eq!(f.get_bytes("nan").await.unwrap(), None);
}

/// Many tasks on 8 threads, only `get_or_insert_*` calls: types A and B mixed on some keys,
/// bytes loaders, loaders that fail, no_store, no_cache, full bypasses, costs, a few restarts
/// of the hot tier's contents (a tiny hot tier: warm and queue hits). Afterwards every
/// counter must equal the tally of the calls' own answers: hits by source, joined, misses ==
/// calls whose loader ran (bypasses apart), and no caller ever got another key's or
/// another type's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn accounting_matches_every_calls_answer_under_a_mixed_load() {
    let f = open_with(|b| b.hot_capacity_entries(8).hot_shards(2)).await;
    #[derive(Default, Debug)]
    struct Tally {
        calls: u64,
        by_source: BTreeMap<Source, u64>,
        ran_ok: u64,
        ran_err: u64,
        not_ran_err: u64,
        bypass: u64,
        cost_expected: u64,
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..24u64 {
        let (cache, tally, stop) = (f.cache.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = Rng::stream(0x9E37_79B9, t);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 400 {
                n += 1;
                let k = r.below(12) as u64;
                let key = format!("key-{k}");
                let ran = Arc::new(AtomicBool::new(false));
                let fail = r.below(10) == 0;
                let delay = Duration::from_millis(r.below(3) as u64);
                let mode = r.below(10);
                let (controls_flags, bypass) = match mode {
                    0 => ((true, false), false),  // no_store
                    1 => ((false, true), false),  // no_cache
                    2 => ((true, true), true),    // bypass
                    _ => ((false, false), false), // default
                };
                let cost = 1 + k;
                // Keys 0..4 are A only, 4..8 mixed A/B, 8..12 bytes.
                let kind = if k < 4 {
                    0
                } else if k < 8 {
                    r.below(2)
                } else {
                    2
                };
                let outcome: Result<(Source, u64), Error> = match kind {
                    0 => {
                        let mut c = Controls::<A>::new().cost(cost);
                        if controls_flags.0 {
                            c = c.no_store();
                        }
                        if controls_flags.1 {
                            c = c.no_cache();
                        }
                        let (ran2, key2) = (ran.clone(), key.clone());
                        cache
                            .get_or_insert_answer(&key, &c, || async move {
                                ran2.store(true, Ordering::SeqCst);
                                tokio::time::sleep(delay).await;
                                if fail {
                                    return Err(ErrA(1));
                                }
                                Ok(A { a_key: key2, n: t })
                            })
                            .await
                            .map(|a| {
                                assert_eq!(a.value.a_key, key, "A of another key");
                                (a.source, a.value.n)
                            })
                    }
                    1 => {
                        let mut c = Controls::<B>::new().cost(cost);
                        if controls_flags.0 {
                            c = c.no_store();
                        }
                        if controls_flags.1 {
                            c = c.no_cache();
                        }
                        let (ran2, key2) = (ran.clone(), key.clone());
                        cache
                            .get_or_insert_answer(&key, &c, || async move {
                                ran2.store(true, Ordering::SeqCst);
                                tokio::time::sleep(delay).await;
                                if fail {
                                    return Err(ErrB(1));
                                }
                                Ok(B {
                                    b_key: key2,
                                    items: vec![t as u32],
                                })
                            })
                            .await
                            .map(|b| {
                                assert_eq!(b.value.b_key, key, "B of another key");
                                (b.source, 0)
                            })
                    }
                    _ => {
                        let mut c = Controls::<[u8]>::new().cost(cost);
                        if controls_flags.0 {
                            c = c.no_store();
                        }
                        if controls_flags.1 {
                            c = c.no_cache();
                        }
                        let (ran2, key2) = (ran.clone(), key.clone());
                        cache
                            .get_or_insert_bytes(&key, &c, || async move {
                                ran2.store(true, Ordering::SeqCst);
                                tokio::time::sleep(delay).await;
                                if fail {
                                    return Err(ErrA(2));
                                }
                                Ok(format!("bytes of {key2}").into_bytes())
                            })
                            .await
                            .map(|b| {
                                assert_eq!(
                                    &b.value[..],
                                    format!("bytes of {key}").as_bytes(),
                                    "bytes of another key"
                                );
                                (b.source, 0)
                            })
                    }
                };
                let ran = ran.load(Ordering::SeqCst);
                let mut tl = tally.lock().unwrap();
                tl.calls += 1;
                if bypass {
                    tl.bypass += 1;
                    assert!(ran);
                    continue;
                }
                match outcome {
                    Ok((Source::Loaded, _)) => {
                        assert!(ran, "Loaded, yet this caller's loader did not run");
                        tl.ran_ok += 1;
                    }
                    Ok((Source::Stale, _)) => unreachable!("no stale_if_error in this test"),
                    Ok((s, _)) => {
                        assert!(!ran, "{s:?}, yet this caller's loader ran");
                        *tl.by_source.entry(s).or_insert(0) += 1;
                        tl.cost_expected += cost;
                    }
                    Err(e) => {
                        assert!(matches!(e, Error::Loader(_)), "{e}");
                        if ran {
                            tl.ran_err += 1;
                        } else {
                            tl.not_ran_err += 1;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let tl = tally.lock().unwrap();
    let s = f.stats();
    let src = |x: Source| tl.by_source.get(&x).copied().unwrap_or(0);
    let hits = s.hot_hits + s.warm_hits + s.queue_hits;
    assert_eq!(
        hits + s.misses + s.joined + s.bypasses,
        tl.calls,
        "hits + misses + joined + bypasses != calls: {:?} {tl:?}",
        counts(&s)
    );
    assert_eq!(s.loader_calls, s.misses + s.bypasses, "{:?}", counts(&s));
    assert_eq!(
        (s.hot_hits, s.warm_hits, s.queue_hits),
        (src(Source::Hot), src(Source::Warm), src(Source::Queue)),
        "{tl:?}"
    );
    assert_eq!(s.misses, tl.ran_ok + tl.ran_err, "{:?} {tl:?}", counts(&s));
    assert_eq!(
        s.joined,
        src(Source::Joined) + tl.not_ran_err,
        "{:?} {tl:?}",
        counts(&s)
    );
    assert_eq!(s.bypasses, tl.bypass);
    assert_eq!(s.cost_saved, tl.cost_expected, "{:?} {tl:?}", counts(&s));
}
