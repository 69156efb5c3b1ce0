//! Against a real `redis-server`: one per test on a unix socket in a temp dir (tests/shared's
//! harness; skipped when none is installed, a failure under `CI=true`). A server restored
//! from its `SAVE`, a `FLUSHALL`, and a replica `kill -9`ed in a child process while the
//! server was away.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use answercache::{SharedConfig, TieredCache};

use crate::support::cache::*;
use crate::support::*;

/// The sync interval of these tests (short: real time).
const SYNC: Duration = Duration::from_millis(500);
/// Longer than the promised bound (interval + timeout) with room for a loaded machine.
const WAIT: Duration = Duration::from_millis(2500);

fn cfg(server: &RedisServer, prefix: &str) -> SharedConfig {
    config(&server.url(), prefix).namespace_sync_interval(SYNC)
}

/// A replica on `root` (opened again when it was opened before), its breaker closed.
async fn open_on(root: &Path, shared: SharedConfig) -> TieredCache {
    let cache = local_builder(root).shared(shared).build().await.unwrap();
    wait_closed(&cache).await;
    cache
}

async fn served(cache: &TieredCache, key: &str) -> Option<String> {
    cache
        .namespace("bot")
        .unwrap()
        .get_bytes(key)
        .await
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

async fn store(cache: &TieredCache, key: &str, value: &str) {
    let ns = cache.namespace("bot").unwrap();
    ns.set_bytes(key, value.as_bytes()).await.unwrap();
    cache.flush().await.unwrap();
}

async fn on_server(server: &RedisServer, prefix: &str) -> Option<u64> {
    let v: Option<String> = server.cmd(&["GET", &nsgen_key(prefix, "bot")]).await;
    v.and_then(|s| u64::from_str_radix(&s, 16).ok())
}

/// README: "A replica never goes back to a generation it left: one rolled back on the
/// server (a failover to a lagging server, a restore) is replaced by a fresh one". A
/// answers in g0, the server is `SAVE`d, A invalidates (g1 on the server), A is closed, the
/// server is restarted from the dump (g0 again), A reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_replica_never_goes_back_after_a_restore_from_save() {
    let Some(server) = RedisServer::start().map(Arc::new) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let a = open_on(root.path(), cfg(&server, "r1")).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(&a, "q", "old answer").await;
    let _: String = server.cmd(&["SAVE"]).await;
    let g1 = na.invalidate().await.unwrap();
    assert_eq!(on_server(&server, "r1").await, Some(g1));
    assert_eq!(served(&a, "q").await, None);
    a.close().await.unwrap();
    restart_async(&server).await; // loads the dump: g0 is back
    assert_eq!(on_server(&server, "r1").await, Some(g0));
    let a = open_on(root.path(), cfg(&server, "r1")).await;
    tokio::time::sleep(WAIT).await;
    assert_eq!(
        served(&a, "q").await,
        None,
        "A served the answer its own Ok invalidate had invalidated"
    );
    assert_ne!(on_server(&server, "r1").await, Some(g0));
    a.close().await.unwrap();
}

/// `FLUSHALL` after an invalidation: both replicas move to one fresh generation; misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_after_an_invalidation_gives_misses_on_every_replica() {
    let Some(server) = RedisServer::start().map(Arc::new) else {
        return;
    };
    let (ra, rb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_on(ra.path(), cfg(&server, "r2")).await;
    let b = open_on(rb.path(), cfg(&server, "r2")).await;
    let g0 = a.namespace("bot").unwrap().generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(&a, "q", "old answer").await;
    assert_eq!(served(&b, "q").await.as_deref(), Some("old answer"));
    let g1 = a.namespace("bot").unwrap().invalidate().await.unwrap();
    tokio::time::sleep(WAIT).await;
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g1);
    let _: String = server.cmd(&["FLUSHALL"]).await;
    tokio::time::sleep(WAIT).await;
    let now = on_server(&server, "r2").await.expect("bootstrapped again");
    assert!(now != g0 && now != g1);
    for r in [&a, &b] {
        assert_eq!(r.namespace("bot").unwrap().generation().await.unwrap(), now);
        assert_eq!(served(r, "q").await, None);
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Environment of the child replica: its root, the server URL, the prefix.
const CHILD_ROOT: &str = "ADV9_CHILD_ROOT";
const CHILD_URL: &str = "ADV9_CHILD_URL";
const CHILD_PREFIX: &str = "ADV9_CHILD_PREFIX";

/// The child replica (a helper, run by `a_replica_killed_while_its_invalidation_is_pending..`
/// as a child process; without its environment it does nothing): opens the cache, invalidates
/// "bot" (the server is stopped, so it stays pending), prints the generation, and waits to
/// be killed.
#[test]
fn child_replica_helper() {
    let (Ok(root), Ok(url), Ok(prefix)) = (
        std::env::var(CHILD_ROOT),
        std::env::var(CHILD_URL),
        std::env::var(CHILD_PREFIX),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let shared = config(&url, &prefix).namespace_sync_interval(SYNC);
        let cache = local_builder(Path::new(&root))
            .shared(shared)
            .build()
            .await
            .unwrap();
        let g = cache.namespace("bot").unwrap().invalidate().await.unwrap();
        let pending = cache.stats().namespace_invalidations_pending;
        println!("\nADV9-INVALIDATED {g:016x} {pending}");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

/// A answers in g0 (B sees it); the server stops (`SIGSTOP`); A, as a child process,
/// invalidates (pending, g1) and is `kill -9`ed; the server continues; A reopens. A must never
/// serve the answer; the reopen invalidates again with a fresh generation (neither g0 nor the
/// marker's g1), which the server must get, and B must adopt it and stop serving the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_while_its_invalidation_is_pending_keeps_it_after_the_restart() {
    let Some(server) = RedisServer::start().map(Arc::new) else {
        return;
    };
    let (ra, rb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_on(ra.path(), cfg(&server, "r3")).await;
    let b = open_on(rb.path(), cfg(&server, "r3")).await;
    let g0 = a.namespace("bot").unwrap().generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(&a, "q", "old answer").await;
    assert_eq!(served(&b, "q").await.as_deref(), Some("old answer"));
    a.close().await.unwrap();
    drop(a);
    sigstop_async(&server).await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "real::child_replica_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, ra.path())
        .env(CHILD_URL, server.url())
        .env(CHILD_PREFIX, "r3")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.find("ADV9-INVALIDATED").map(|at| l[at..].to_owned()))
    });
    // The child prints within seconds; a hung child is killed at 60 s (its pipe then ends).
    let line = tokio::time::timeout(Duration::from_secs(60), reader).await;
    child.kill().unwrap(); // SIGKILL
    let line = line.expect("the child hung before invalidating").unwrap();
    child.wait().unwrap();
    sigcont_async(&server).await;
    let line = line.expect("the child never invalidated");
    let mut parts = line.split_whitespace().skip(1);
    let g1 = u64::from_str_radix(parts.next().unwrap(), 16).unwrap();
    assert_eq!(parts.next(), Some("1"), "pending in the child: {line}");
    assert_ne!(g1, g0);
    assert_eq!(on_server(&server, "r3").await, Some(g0));
    let a = open_on(ra.path(), cfg(&server, "r3")).await;
    assert_eq!(
        served(&a, "q").await,
        None,
        "A served the invalidated answer"
    );
    // The reopen invalidates "bot" again with a fresh generation (never the marker's g1,
    // which is retired): the server ends on it, and B follows.
    tokio::time::sleep(WAIT).await;
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(now != g0 && now != g1, "a fresh generation, not {now:x}");
    assert_eq!(on_server(&server, "r3").await, Some(now));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(served(&a, "q").await, None);
    assert_eq!(served(&b, "q").await, None, "B still serves it");
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), now);
    let markers = std::fs::read_dir(ra.path().join("nspending"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(
        markers, 0,
        "a marker left after the server took the generation"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}
