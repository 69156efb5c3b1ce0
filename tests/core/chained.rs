//! A blocking thread that completed a job runs the next one the queue has ready with the same
//! write slot (`RunDirect::run`, session 24): a drain of write-behind entries takes no thread
//! wake-up per entry. What must hold with it: each job is still written exactly once and in
//! per-key order, `write_concurrency` still bounds the writes, a job that hangs is still given
//! up at `io_timeout` without holding up the rest of the queue, and `flush` and `close` still
//! wait for every write.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use answercache::Durability;

use crate::support::{dir_in, Gate, Hooked, OnDisk, PATIENCE};

/// The real file system ([`Hooked`]), recording the thread of every entry write (`write_new`
/// under `v2/`), and holding the first one at a gate until the test opens it.
#[derive(Debug, Default)]
struct ThreadsOfWrites {
    /// (the temp file written, the thread): a write into a fan-out directory not made yet
    /// is tried again once it is, so a file may appear twice.
    threads: Mutex<Vec<(std::path::PathBuf, std::thread::ThreadId)>>,
    gate: Gate,
}

impl ThreadsOfWrites {
    /// The file system that records into `self`.
    fn fs(self: &Arc<Self>) -> Hooked {
        let me = self.clone();
        Hooked {
            before_write: Box::new(move |path| {
                if !path.to_string_lossy().contains("/v2/") {
                    return;
                }
                let first = {
                    let mut t = me.threads.lock().unwrap();
                    t.push((path.to_owned(), std::thread::current().id()));
                    t.len() == 1
                };
                if first {
                    me.gate.wait_here();
                }
            }),
            ..Hooked::default()
        }
    }

    fn distinct(&self) -> usize {
        let t = self.threads.lock().unwrap();
        t.iter()
            .map(|(_, id)| format!("{id:?}"))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Distinct temp files written.
    fn writes(&self) -> usize {
        let t = self.threads.lock().unwrap();
        t.iter()
            .map(|(p, _)| p.clone())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// Twenty write-behind entries queued behind a held write, one write slot: once the held
/// write returns, the thread that ran it writes all twenty, one after another (before
/// session 24, each was handed to the blocking pool by a task of its own, on whichever
/// thread was idle), every one exactly once and on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_backlog_is_written_by_the_thread_that_holds_the_slot() {
    let fs = Arc::new(ThreadsOfWrites::default());
    let dir = tempfile::tempdir().unwrap();
    let mut cache = dir_in(dir)
        .open_cache(|b| {
            b.write_concurrency(1)
                .durability(Durability::NoSync)
                .compress_in_background(false)
                .fs(Arc::new(fs.fs()))
        })
        .await;
    cache.set_bytes("k0", b"v0".to_vec()).await.unwrap();
    let g = fs.clone();
    tokio::task::spawn_blocking(move || g.gate.wait_for_caller())
        .await
        .unwrap();
    for i in 1..=20 {
        cache
            .set_bytes(format!("k{i}"), format!("v{i}").into_bytes())
            .await
            .unwrap();
    }
    // Nothing else reached the disk while the slot was held.
    assert_eq!(fs.writes(), 1);
    fs.gate.open();
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "flush: {flushed:?}");
    assert_eq!(fs.writes(), 21);
    assert_eq!(fs.distinct(), 1, "written on {} threads", fs.distinct());
    let s = cache.stats();
    assert_eq!(
        (s.writes_ok, s.writes_failed, s.write_queue_depth),
        (21, 0, 0)
    );
    cache.reopen().await;
    for i in 0..=20 {
        assert_eq!(
            cache.get_bytes(format!("k{i}")).await.unwrap().as_deref(),
            Some(format!("v{i}").as_bytes()),
            "k{i}"
        );
        assert!(cache.on_disk(format!("k{i}")));
    }
}
