//! Scripted scenarios whose whole transcript was recorded on the old code (2694034): every
//! return value and error text, every `Stats` field, the entry files on disk, across restarts.
//! Run on tokio's paused clock (the breaker and the task timers) with a manual wall clock
//! (creation and expiry times), one write at a time and one hot shard, so that the old code
//! gives the same transcript on every run.

use std::time::Duration;

use answercache::testing::{Fault, FsOp, Rule};
use answercache::{Mode, RequestKey, TieredCache};
use serde_json::Value;

use crate::support::*;

async fn get_all(t: &mut Transcript<'_>, cache: &TieredCache, what: &str, keys: &[&str]) {
    for k in keys {
        let a = cache.get_answer::<Value>(*k).await;
        t.line(&format!("{what} get {k}"), a);
    }
}

/// Write-behind: sets, a TTL, raw bytes, removes, limits; flush; expiry; close; a restart
/// that reads everything from the disk; close again; calls after close.
#[tokio::test(start_paused = true)]
async fn write_behind_roundtrip_and_restart() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "write_behind_roundtrip");
    let b = env.builder().max_key_bytes(64).max_entry_bytes(4096);
    let cache = env.open(b.clone()).await;
    t.stats("opened", &cache);
    for i in 0..8 {
        let r = cache.set(format!("k{i}"), &format!("value {i}")).await;
        t.line(&format!("set k{i}"), r);
    }
    t.line(
        "set_with_ttl ttl",
        cache
            .set_with_ttl("ttl", &serde_json::json!({"a": 1}), Duration::from_secs(60))
            .await,
    );
    t.line(
        "set_bytes raw",
        cache.set_bytes("raw", b"\x00\x01raw").await,
    );
    t.line("set k1 again", cache.set("k1", &"newer").await);
    t.line("remove k3", cache.remove("k3").await);
    t.line("remove absent", cache.remove("absent").await);
    t.line("set long key", cache.set("x".repeat(65), &1).await);
    t.line("set big value", cache.set("big", &"y".repeat(5000)).await);
    t.line("get long key", cache.get::<i32>("x".repeat(65)).await);
    let keys = ["k0", "k1", "k3", "ttl", "raw", "absent", "big"];
    get_all(&mut t, &cache, "hot", &keys).await;
    t.line("get_bytes raw", cache.get_bytes("raw").await);
    t.line("get k0 as u32 (decode miss)", cache.get::<u32>("k0").await);
    t.line("flush", cache.flush().await);
    t.stats("after flush", &cache);
    t.files("after flush");
    env.clock.advance(Duration::from_secs(61));
    t.line("get ttl after expiry", cache.get::<Value>("ttl").await);
    t.line("close", cache.close().await);
    t.line("get after close", cache.get::<Value>("k0").await);
    t.line("set after close", cache.set("k0", &0).await);
    t.line("flush after close", cache.flush().await);
    t.line("clear after close", cache.clear().await);
    t.line("close again", cache.close().await);

    let cache = env.open(b).await;
    t.stats("reopened", &cache);
    get_all(&mut t, &cache, "warm", &keys).await;
    get_all(&mut t, &cache, "promoted", &keys).await;
    t.stats("after reads", &cache);
    t.line("close", cache.close().await);
    t.files("end");
    t.finish();
}

/// Write-through on a disk that starts failing: the acknowledgements and their error texts,
/// the breaker opening, half-open trials, memory-only mode, the recovery probe and its
/// write-back, a flush after it, a restart.
#[tokio::test(start_paused = true)]
async fn write_through_outage_and_recovery() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "write_through_outage");
    let b = env
        .write_through()
        .failure_threshold(3)
        .open_timeout(Duration::from_secs(1))
        .max_open_timeout(Duration::from_secs(4))
        .memory_only_after(5)
        .error_window(Duration::from_secs(600))
        .recovery_interval(Duration::from_secs(30));
    let cache = env.open(b.clone()).await;
    t.line("set a", cache.set("a", &1).await);
    env.fail(&[FsOp::WriteNew], EIO);
    for k in ["b", "c", "d", "e"] {
        t.line(&format!("set {k}"), cache.set(k, &k).await);
        t.line("  mode, breaker", (cache.mode(), cache.breaker_state()));
    }
    t.line("remove a", cache.remove("a").await);
    t.line("flush (breaker open)", cache.flush().await);
    t.stats("breaker open", &cache);
    // Half-open trials until memory-only.
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(4_100)).await;
        settle().await;
        let k = format!("h{round}");
        t.line(&format!("set {k}"), cache.set(&k, &round).await);
        t.line("  mode, breaker", (cache.mode(), cache.breaker_state()));
        if cache.mode() == Mode::MemoryOnly {
            break;
        }
    }
    t.line("set m (memory-only)", cache.set("m", &"m").await);
    t.line("remove b (memory-only)", cache.remove("b").await);
    t.line("flush (memory-only)", cache.flush().await);
    t.stats("memory-only", &cache);
    env.fs.clear_rules();
    tokio::time::sleep(Duration::from_secs(31)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    t.line("flush after recovery", cache.flush().await);
    settle().await;
    t.stats("recovered", &cache);
    t.files("recovered");
    get_all(
        &mut t,
        &cache,
        "recovered",
        &["a", "b", "c", "d", "e", "h0", "h1", "m"],
    )
    .await;
    t.line("close", cache.close().await);
    let cache = env.open(b).await;
    get_all(
        &mut t,
        &cache,
        "reopened",
        &["a", "b", "c", "d", "e", "h0", "h1", "m"],
    )
    .await;
    t.line("close", cache.close().await);
    t.finish();
}

/// `clear` whose fence cannot be written: its error text, reads after it, what `flush`
/// reports until the fence is on disk, and a restart.
#[tokio::test(start_paused = true)]
async fn clear_with_a_failing_fence() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "clear_fence");
    let b = env.builder();
    let cache = env.open(b.clone()).await;
    for k in ["x", "y", "z"] {
        t.line(&format!("set {k}"), cache.set(k, &k).await);
    }
    t.line("flush", cache.flush().await);
    env.fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::Rename])
            .path_contains("/fence"),
    );
    env.clock.advance(Duration::from_millis(5));
    t.line("clear (fence fails)", cache.clear().await);
    get_all(&mut t, &cache, "after failed clear", &["x", "y", "z"]).await;
    t.line("set w", cache.set("w", &"w").await);
    t.line("flush (fence pending)", cache.flush().await);
    t.stats("fence pending", &cache);
    t.files("fence pending");
    env.fs.clear_rules();
    t.line("flush (fence writable)", cache.flush().await);
    t.stats("fence written", &cache);
    t.files("fence written");
    t.line("close", cache.close().await);
    let cache = env.open(b.clone()).await;
    get_all(&mut t, &cache, "reopened", &["x", "y", "z", "w"]).await;
    env.clock.advance(Duration::from_millis(5));
    t.line("clear", cache.clear().await);
    t.line("set v", cache.set("v", &"v").await);
    t.line("close", cache.close().await);
    t.files("end");
    let b = b
        .memory_only_after(1)
        .failure_threshold(1)
        .recovery_interval(Duration::from_secs(30));
    let cache = env.open(b.clone()).await;
    get_all(&mut t, &cache, "reopened again", &["w", "v"]).await;
    env.fail(&[FsOp::WriteNew], EIO);
    t.line("set u (disk fails)", cache.set("u", &"u").await);
    t.line("flush (memory-only now)", cache.flush().await);
    t.line("mode", cache.mode());
    env.clock.advance(Duration::from_millis(5));
    t.line("clear (memory-only)", cache.clear().await);
    get_all(&mut t, &cache, "after memory-only clear", &["w", "v", "u"]).await;
    t.line("set after memory-only clear", cache.set("t", &"t").await);
    t.line("flush (memory-only, clear pending)", cache.flush().await);
    t.stats("memory-only clear", &cache);
    env.fs.clear_rules();
    tokio::time::sleep(Duration::from_secs(31)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    t.line("flush after recovery", cache.flush().await);
    settle().await;
    t.stats("recovered", &cache);
    t.files("recovered");
    t.line("close", cache.close().await);
    let cache = env.open(b).await;
    get_all(&mut t, &cache, "final", &["w", "v", "u", "t"]).await;
    t.line("close", cache.close().await);
    t.finish();
}

/// `invalidate_if` over both tiers with one fan-out directory that cannot be read, then with
/// the disk not in use; the error texts and counts.
#[tokio::test(start_paused = true)]
async fn invalidate_if_with_partial_disk_failures() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "invalidate_if");
    let b = env.write_through().hot_capacity_entries(4);
    let cache = env.open(b.clone()).await;
    let keys: Vec<String> = (0..24).map(|i| format!("doc/{i:02}")).collect();
    for k in &keys {
        cache.set(k, &k).await.unwrap();
    }
    t.stats("set", &cache);
    // A fan-out directory holding one doomed key cannot be read.
    let victim = "doc/07";
    let top = Env::top_dir(victim);
    t.line("victim top dir", &top);
    let others_in_top: Vec<&String> = keys.iter().filter(|k| Env::top_dir(k) == top).collect();
    t.line("keys in that top dir", &others_in_top);
    env.fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::ReadDir])
            .path_contains(format!("/v2/{top}")),
    );
    let r = cache
        .invalidate_if(|k| k.starts_with(b"doc/0") || k.starts_with(b"doc/1"))
        .await;
    t.line("invalidate_if (one dir unreadable)", r);
    t.stats("after", &cache);
    get_all(
        &mut t,
        &cache,
        "after",
        &keys.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    env.fs.clear_rules();
    let r = cache.invalidate_if(|k| k.starts_with(b"doc/")).await;
    t.line("invalidate_if (all readable)", r);
    t.files("after second");
    // The disk fails: write-through removes report it.
    for k in ["p", "q"] {
        cache.set(k, &k).await.unwrap();
    }
    env.fail(&[FsOp::RemoveFile, FsOp::Rename], EIO);
    let r = cache.invalidate_if(|k| k == b"p" || k == b"q").await;
    t.line("invalidate_if (deletes fail)", r);
    t.stats("deletes fail", &cache);
    env.fs.clear_rules();
    t.line("close", cache.close().await);

    // Memory-only: nothing scanned.
    let b = b
        .memory_only_after(1)
        .failure_threshold(1)
        .write_policy(answercache::WritePolicy::WriteBehind);
    let cache = env.open(b).await;
    env.fail(&[FsOp::WriteNew], EIO);
    cache.set("s", &1).await.unwrap();
    let _ = cache.flush().await;
    t.line("mode", cache.mode());
    let r = cache.invalidate_if(|_| true).await;
    t.line("invalidate_if (memory-only)", r);
    t.stats("memory-only", &cache);
    env.fs.clear_rules();
    drop(cache);
    t.finish();
}

/// Sizes that depend on a namespace's generation number (random, written as JSON), and the
/// space on disk, which depends on how many of the keys (whose hashes include the random
/// generation) share a fan-out directory.
const RANDOM_SIZES: &[&str] = &[
    "bytes_written_compressed",
    "bytes_written_uncompressed",
    "compression_ratio",
    "hot_bytes",
    "warm_bytes",
    "warm_disk_bytes",
];

/// Namespaces and request keys: resolution, O(1) invalidation, a second instance that sees
/// the invalidation after `refresh`, and an invalidation whose record cannot be written.
#[tokio::test(start_paused = true)]
async fn namespaces_and_request_keys() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "namespaces");
    let b = env.builder();
    let cache = env.open(b.clone()).await;
    let ns = cache.namespace("chat").unwrap();
    t.line("bad namespace", cache.namespace("a:b").map(|_| ()));
    let rk = RequestKey::new("chat", &serde_json::json!({"model": "m", "prompt": "hi"})).unwrap();
    let other = RequestKey::new("other", &serde_json::json!({"prompt": "hi"})).unwrap();
    t.line("rk", rk.as_str());
    t.line("set rk", cache.set(&rk, &"answer").await);
    t.line("set other", cache.set(&other, &"o").await);
    t.line("ns.get rk", ns.get::<String>(&rk).await);
    t.line("get rk", cache.get_answer::<String>(&rk).await);
    t.line("ns.set plain", ns.set("plain", &1).await);
    t.line("ns.get plain", ns.get::<i32>("plain").await);
    t.line(
        "cache.get plain (not namespaced)",
        cache.get::<i32>("plain").await,
    );
    let g1 = ns.generation().await.unwrap();
    t.line("flush", cache.flush().await);
    t.stats_masked("namespaced", &cache, RANDOM_SIZES);
    t.line("close", cache.close().await);

    let cache = env.open(b.clone()).await;
    let ns = cache.namespace("chat").unwrap();
    let g2 = ns.generation().await.unwrap();
    t.line("generation survives restart", g1 == g2);
    t.line(
        "get rk after restart",
        cache.get_answer::<String>(&rk).await,
    );
    t.line("ns.get plain after restart", ns.get::<i32>("plain").await);

    // A second instance (another process) invalidates; this one sees it after refresh.
    let second = env.open(b.clone()).await;
    let ns2 = second.namespace("chat").unwrap();
    let g3 = ns2.invalidate().await.unwrap();
    t.line("second invalidated (new generation)", g3 != g2);
    t.line("first before refresh", cache.get::<String>(&rk).await);
    let g4 = ns.refresh().await.unwrap();
    t.line("refresh sees it", g4 == g3);
    t.line("first after refresh", cache.get::<String>(&rk).await);
    t.line(
        "other namespace untouched",
        cache.get::<String>(&other).await,
    );
    second.close().await.unwrap();

    // An invalidation whose record cannot be written.
    env.fail(&[FsOp::WriteNew], EIO);
    let r = ns.invalidate().await;
    t.line(
        "invalidate (disk fails)",
        r.map(|g| g == g4).map_err(|e| e.to_string()),
    );
    t.line(
        "get rk after failed invalidate",
        cache.get::<String>(&rk).await,
    );
    t.line("set rk in new generation", cache.set(&rk, &"fresh").await);
    t.line("get rk", cache.get::<String>(&rk).await);
    t.stats_masked("after failed invalidate", &cache, RANDOM_SIZES);
    env.fs.clear_rules();
    t.line("close", cache.close().await);
    t.finish();
}

/// Memory-only with a small hot budget: dirty entries evicted before they reached the disk
/// (lost keys), never served from an older file; recovery purges the older files; what
/// `flush` and `close` report; a restart.
#[tokio::test(start_paused = true)]
async fn lost_keys_and_their_purge() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "lost_keys");
    let b = env
        .builder()
        .hot_capacity_entries(4)
        .memory_only_after(1)
        .failure_threshold(1)
        .recovery_interval(Duration::from_secs(30));
    let cache = env.open(b.clone()).await;
    for k in ["old1", "old2"] {
        cache.set(k, &format!("{k} v1")).await.unwrap();
    }
    t.line("flush", cache.flush().await);
    t.files("on disk");
    env.fail(&[FsOp::WriteNew], EIO);
    t.line("set trigger", cache.set("trigger", &0).await);
    t.line("flush (fails)", cache.flush().await);
    t.line("mode", cache.mode());
    t.line("set old1 v2", cache.set("old1", &"old1 v2").await);
    t.line("remove old2", cache.remove("old2").await);
    // Evict them: 8 entries in memory-only (the budget is doubled).
    for i in 0..12 {
        cache.set(format!("filler{i}"), &i).await.unwrap();
    }
    get_all(&mut t, &cache, "evicted", &["old1", "old2", "trigger"]).await;
    t.stats("lost", &cache);
    t.line("flush (lost)", cache.flush().await);
    env.fs.clear_rules();
    tokio::time::sleep(Duration::from_secs(31)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    t.line("flush after recovery", cache.flush().await);
    settle().await;
    t.stats("recovered", &cache);
    t.files("recovered");
    get_all(&mut t, &cache, "recovered", &["old1", "old2", "trigger"]).await;
    t.line("set old1 v3", cache.set("old1", &"old1 v3").await);
    t.line("close", cache.close().await);
    let cache = env.open(b).await;
    get_all(&mut t, &cache, "reopened", &["old1", "old2", "trigger"]).await;
    t.stats("reopened", &cache);
    t.line("close", cache.close().await);
    t.finish();
}

/// The fence cannot be read at open: nothing is served from the disk and nothing written
/// until it is; then it is read before the first disk read or write.
#[tokio::test(start_paused = true)]
async fn fence_unknown_at_open() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "fence_unknown");
    let b = env.builder();
    let cache = env.open(b.clone()).await;
    cache.set("before", &"cleared").await.unwrap();
    cache.flush().await.unwrap();
    env.clock.advance(Duration::from_millis(10));
    cache.clear().await.unwrap();
    cache.close().await.unwrap();
    // Plant the old entry again (as if the clear's delete had failed): the fence covers it.
    env.clock.set(T0 - 10_000);
    let planter = env.open(b.clone()).await;
    planter
        .set("planted", &"older than the fence")
        .await
        .unwrap();
    planter.close().await.unwrap();
    env.clock.set(T0 + 20);
    t.files("planted");

    // Fence reads fail twice: at open, and at the first lookup.
    env.fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence")
            .times(2),
    );
    let cache = b.clone().build().await.unwrap();
    spin_until(|| cache.stats().warm_index_complete).await;
    // 4 since the I1/I2 fix (tests/adversary10/r17): the first cache's `clear` reads the fence
    // before it writes one (a fence on disk never moves back); 3 before.
    t.line("fence reads so far", env.fs.calls(FsOp::ReadFile));
    t.line(
        "get planted (fence unknown)",
        cache.get::<String>("planted").await,
    );
    t.line("set new", cache.set("new", &"n").await);
    t.line(
        "get planted (fence read now)",
        cache.get::<String>("planted").await,
    );
    t.line("flush", cache.flush().await);
    t.stats("after", &cache);
    t.files("after");
    t.line("close", cache.close().await);
    let cache = env.open(b).await;
    get_all(&mut t, &cache, "reopened", &["planted", "new", "before"]).await;
    t.line("close", cache.close().await);
    t.finish();
}

/// Write-through while the fence cannot be read: the write is not made (an entry must not be
/// written before the fence is known), the acknowledgement says why, `flush` writes it once
/// the fence is readable.
#[tokio::test(start_paused = true)]
async fn write_through_while_the_fence_is_unknown() {
    let env = Env::new();
    let mut t = Transcript::new(&env, "fence_unknown_write_through");
    let b = env.write_through();
    let cache = env.open(b.clone()).await;
    env.clock.advance(Duration::from_millis(3));
    cache.clear().await.unwrap();
    cache.close().await.unwrap();
    env.fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence")
            .times(2),
    );
    let cache = b.clone().build().await.unwrap();
    spin_until(|| cache.stats().warm_index_complete).await;
    t.line("set x (fence unknown)", cache.set("x", &"x").await);
    t.line("get x", cache.get::<String>("x").await);
    t.stats("fence unknown", &cache);
    t.files("fence unknown");
    t.line("flush", cache.flush().await);
    t.stats("flushed", &cache);
    t.files("flushed");
    t.line("close", cache.close().await);
    let cache = env.open(b).await;
    t.line("reopened get x", cache.get_answer::<String>("x").await);
    t.line("close", cache.close().await);
    t.finish();
}
