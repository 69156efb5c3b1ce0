//! Persistence across restarts: what was set before `close` is on disk after it and reads back
//! equal in the next process, every read served by the warm tier; removes and clears persist
//! too, including a clear that races a write already handed to the disk; and with
//! write-through, the entry file exists the moment `set` returns.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};

use answercache::workload::Rng;
use answercache::{Durability, WritePolicy};

use crate::support::{answer, open, Answer, OnDisk, Reads};

fn key(i: usize) -> String {
    format!("user:{}/conversation:{}/turn:{}", i % 97, i / 97, i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_survive_close_and_reopen() {
    const N: usize = 10_000;
    let mut rng = Rng::new(10_000);
    // NoSync: the scenario is a restart, not a power cut (fsync is exercised by the other
    // tests); 10,000 fsyncs would only make this one slow.
    let mut h = open(|b| b.durability(Durability::NoSync)).await;
    let answers: Vec<Answer> = (0..N)
        .map(|i| {
            let len = rng.range(40, 600);
            answer(&mut rng, len, i % 3)
        })
        .collect();
    for (i, a) in answers.iter().enumerate() {
        h.set(key(i), a).await.unwrap();
    }
    h.reopen().await;
    let s = h.stats();
    assert_eq!(
        (s.hot_entries, s.writes_ok),
        (0, 0),
        "a fresh process starts cold"
    );

    let before = h.stats();
    for (i, a) in answers.iter().enumerate() {
        let got: Option<Answer> = h.get(key(i)).await.unwrap();
        assert_eq!(got.as_ref(), Some(a), "entry {i}");
    }
    let after = h.stats();
    assert_eq!(
        Reads::between(&before, &after),
        Reads {
            warm_hits: N as u64,
            ..Reads::default()
        }
    );
    // Every entry was read, so the warm index knows each file, whether or not the background
    // scan has finished: its totals must match the directory exactly.
    assert_eq!(after.warm_entries, N as u64);
    assert_eq!(h.entry_names().len(), N);
    assert_eq!(after.warm_bytes, h.entry_bytes_on_disk());
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_every_queued_write() {
    let mut h = open(|b| b).await;
    for i in 0..200 {
        h.set(key(i), &i).await.unwrap();
    }
    h.cache.close().await.unwrap();
    let s = h.stats();
    assert_eq!(
        (
            s.writes_ok,
            s.writes_failed,
            s.write_queue_depth,
            s.dirty_entries
        ),
        (200, 0, 0, 0)
    );
    assert_eq!(h.entry_names().len(), 200);
    assert!(matches!(
        h.get::<usize>(key(0)).await,
        Err(answercache::Error::Closed)
    ));
    assert!(matches!(
        h.set(key(0), &0).await,
        Err(answercache::Error::Closed)
    ));
    h.reopen_after_close().await;
    for i in 0..200 {
        assert_eq!(h.get::<usize>(key(i)).await.unwrap(), Some(i));
    }
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_and_overwrites_persist() {
    let mut h = open(|b| b).await;
    for i in 0..10 {
        h.set(key(i), &format!("v1 of {i}")).await.unwrap();
    }
    h.reopen().await;
    // Overwrite the even keys, remove every third one (some of them only on disk now).
    for i in (0..10).step_by(2) {
        h.set(key(i), &format!("v2 of {i}")).await.unwrap();
    }
    for i in (0..10).step_by(3) {
        h.remove(key(i)).await.unwrap();
    }
    assert_eq!(h.stats().removes, 4);
    h.reopen().await;
    for i in 0..10 {
        let want = match (i % 3, i % 2) {
            (0, _) => None,
            (_, 0) => Some(format!("v2 of {i}")),
            _ => Some(format!("v1 of {i}")),
        };
        assert_eq!(h.get::<String>(key(i)).await.unwrap(), want, "key {i}");
        assert_eq!(h.on_disk(key(i)), want.is_some(), "entry file of key {i}");
    }
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_empties_both_tiers_and_the_directory() {
    let mut h = open(|b| b).await;
    for i in 0..50 {
        h.set(key(i), &i).await.unwrap();
    }
    h.flush().await.unwrap();
    assert_eq!(h.entry_names().len(), 50);
    h.clear().await.unwrap();
    let s = h.stats();
    assert_eq!(
        (s.hot_entries, s.hot_bytes, s.warm_entries, s.warm_bytes),
        (0, 0, 0, 0)
    );
    assert_eq!(
        h.entry_names().len(),
        0,
        "clear deletes the entry files before returning"
    );
    for i in 0..50 {
        assert_eq!(h.get::<usize>(key(i)).await.unwrap(), None);
    }
    // The cache is usable after a clear, and a clear persists across a restart.
    h.set(key(7), &7usize).await.unwrap();
    h.reopen().await;
    for i in 0..50 {
        let want = (i == 7).then_some(i);
        assert_eq!(h.get::<usize>(key(i)).await.unwrap(), want, "key {i}");
    }
    h.close().await.unwrap();
}

/// `clear` while the disk is still writing an older value of a key, and a newer `set` of that
/// key is waiting behind it: after `clear` returns, neither value may be served, in this
/// process or the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_wins_over_a_write_in_flight() {
    let fs = Arc::new(FaultFs::std());
    let mut h = open(|b| b.io_timeout(Duration::from_secs(300)).fs(fs.clone())).await;
    fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]).times(1));
    h.set("k", "old").await.unwrap();
    while fs.faults_injected() == 0 {
        tokio::task::yield_now().await; // the writer picks the job up and hangs in the disk
    }
    h.set("k", "new").await.unwrap();
    h.advance(Duration::from_secs(1));
    let cache = h.cache.clone();
    let clear = tokio::spawn(async move { cache.clear().await });
    while h.stats().hot_entries != 0 {
        tokio::task::yield_now().await; // clear has dropped the hot tier and waits for the disk
    }
    fs.release_hangs();
    clear.await.unwrap().unwrap();
    let before = h.stats();
    let got = h.get::<String>("k").await.unwrap();
    let reads = Reads::between(&before, &h.stats());
    assert_eq!(got, None, "served after clear ({reads:?})");
    h.flush().await.unwrap();
    assert_eq!(
        h.get::<String>("k").await.unwrap(),
        None,
        "served after clear and flush"
    );
    h.reopen().await;
    assert_eq!(
        h.get::<String>("k").await.unwrap(),
        None,
        "back after clear and restart"
    );
    assert!(!h.on_disk("k"));
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_persists_before_set_returns() {
    let h = open(|b| b.write_policy(WritePolicy::WriteThrough)).await;
    h.set("prompt", "answer").await.unwrap();
    assert!(h.on_disk("prompt"), "entry file exists when set returns");
    let s = h.stats();
    assert_eq!(
        (s.writes_ok, s.write_queue_depth, s.dirty_entries),
        (1, 0, 0)
    );
    h.set("prompt", "better answer").await.unwrap();
    assert_eq!(h.stats().writes_ok, 2);
    h.remove("prompt").await.unwrap();
    assert!(!h.on_disk("prompt"), "entry file gone when remove returns");
    assert_eq!(h.stats().write_queue_depth, 0);
    h.close().await.unwrap();
}
