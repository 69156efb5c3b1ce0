//! A `get_or_insert_*` caller whose lookup missed becomes the leader of a new flight only
//! after the previous leader of the key landed; it must then look again before it runs its
//! loader (a model call, seconds and money). The previous leader's value can be anywhere in
//! the cache by then, not only in the hot tier: an agent fleet with a hot tier smaller than
//! its working set evicts it to the write queue or the disk within microseconds (CI run of
//! stop 30: `shared::t02_agent` counted one model call too many, 136 for 135).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Pauses the first read of `target` at `read_gate`, lets every later read through; while
/// `hold` is set, holds every entry write at `write_gate`.
fn pause_first_read(
    target: std::path::PathBuf,
    read_gate: Arc<Gate>,
    hold: Arc<AtomicBool>,
    write_gate: Arc<Gate>,
) -> Hooked {
    let first = AtomicBool::new(true);
    Hooked {
        after_read: Box::new(move |path| {
            if path == target && first.swap(false, Ordering::SeqCst) {
                read_gate.wait_here();
            }
        }),
        before_write: Box::new(move |_| {
            if hold.load(Ordering::SeqCst) {
                write_gate.wait_here();
            }
        }),
    }
}

/// Opens its gate when dropped.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Where the previous leader's value is when the new leader looks again.
#[derive(Debug, Clone, Copy)]
enum Evicted {
    /// Evicted from the hot tier, its write landed: on disk only.
    ToDisk,
    /// Evicted from the hot tier before its write ran: in the write queue only.
    ToQueue,
}

/// Caller B's lookup reads an expired file of the key and is held there. Meanwhile caller A
/// misses too, loads, stores and lands its flight; other keys evict A's value from the hot
/// tier (one entry). B, released, leads a flight of its own: it must serve A's value, not
/// run its loader a second time.
async fn a_new_leader_finds_the_value_the_previous_leader_stored(evicted: Evicted) {
    let (gate, write_gate) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    let hold = Arc::new(AtomicBool::new(false));
    // A failing assertion must not leave a write held (the runtime would wait for it).
    let _release = OpenOnDrop(write_gate.clone());
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(pause_first_read(
        entry_path(dir.path(), "k"),
        gate.clone(),
        hold.clone(),
        write_gate.clone(),
    ));
    let mut h = dir_in(dir)
        .open_cache(|b| {
            b.hot_capacity_entries(1)
                .hot_shards(1)
                .page_cache_reads(false)
                .fs(fs)
        })
        .await;
    // An expired entry of the key on disk: each lookup of it reads the file.
    h.set_bytes_with_ttl("k", vec![7u8; 100_000], Duration::from_secs(1))
        .await
        .unwrap();
    h.advance(Duration::from_secs(2));
    h.reopen().await;
    let loads = Arc::new(AtomicU64::new(0));
    let load = |loads: Arc<AtomicU64>, answer: &'static str| {
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(answer.to_owned())
        }
    };
    let b = {
        let (cache, loader) = (h.cache.clone(), load(loads.clone(), "B's load"));
        tokio::spawn(async move {
            cache
                .get_or_insert_with::<String, _, _, _>("k", loader)
                .await
        })
    };
    let g = gate.clone();
    tokio::task::spawn_blocking(move || g.wait_for_caller())
        .await
        .unwrap();
    hold.store(matches!(evicted, Evicted::ToQueue), Ordering::SeqCst);
    let a: String = h
        .cache
        .get_or_insert_with("k", load(loads.clone(), "A's load"))
        .await
        .unwrap();
    assert_eq!(a, "A's load");
    match evicted {
        Evicted::ToDisk => {
            h.cache.flush().await.unwrap();
            h.set_bytes("other", b"evicts k".to_vec()).await.unwrap();
            h.cache.flush().await.unwrap();
        }
        Evicted::ToQueue => {
            // A's write is held before its file is created: the value is in the queue only.
            let g = write_gate.clone();
            tokio::task::spawn_blocking(move || g.wait_for_caller())
                .await
                .unwrap();
            h.set_bytes("other", b"evicts k".to_vec()).await.unwrap();
            assert_eq!(h.stats().write_queue_depth, 2, "k's write and other's");
        }
    }
    // Not looked up here (a hit would promote it back): seen from outside.
    assert_eq!(h.stats().hot_entries, 1, "{evicted:?}: other only");
    gate.open();
    let got = b.await.unwrap().unwrap();
    assert_eq!(
        (got.as_str(), loads.load(Ordering::SeqCst)),
        ("A's load", 1),
        "{evicted:?}: B ran its loader although A's value was in the cache"
    );
    let s = h.stats();
    assert_eq!(
        (s.loader_calls, s.misses, s.joined),
        (1, 1, 1),
        "{evicted:?}"
    );
    write_gate.open();
    h.cache.flush().await.unwrap();
    h.reopen().await;
    assert_eq!(
        h.cache.get::<String>("k").await.unwrap().as_deref(),
        Some("A's load"),
        "{evicted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finds_the_previous_leaders_value_on_disk() {
    a_new_leader_finds_the_value_the_previous_leader_stored(Evicted::ToDisk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finds_the_previous_leaders_value_in_the_write_queue() {
    a_new_leader_finds_the_value_the_previous_leader_stored(Evicted::ToQueue).await;
}
