//! Two threads setting the same key at once on a multi-thread runtime: the local store and
//! the shared queue must end in the same order.

use std::sync::{Arc, Barrier};

use answercache::testing::MemoryShared;

use super::*;
use crate::mem::*;

/// Per replica, the last `set` wins, and the shared copy is that value (README "Shared tier":
/// "the last `set`/`remove` wins, as without it"). Two OS threads set each of 2000 keys at
/// once (a barrier per key), one `"a"`, one `"b"`. Afterwards (flushed), for every key the
/// value this replica serves and the value on the server must be the same. `Tiers::set_as`
/// stores the value locally under the write queue's lock (src/cache.rs:666-689) and queues
/// it for the shared tier after releasing it (src/cache.rs:694): between the two, the other
/// thread's `set` can store and queue, so the local order is (a, b) and the shared one (b, a).
#[test]
fn concurrent_sets_of_one_key_leave_the_same_value_here_and_on_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = MemoryShared::new();
    let dir = answercache::testing::TestDir::new();
    let a = Arc::new(rt.block_on(async {
        let cache = dir
            .builder()
            .clock(clock())
            .shared(server.config().prefix(PREFIX))
            .build()
            .await
            .unwrap();
        // A real clock here: wait for the start-up `PING` to close the breaker.
        for _ in 0..2000 {
            if cache.shared_state() == Some(answercache::BreakerState::Closed) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            cache.shared_state(),
            Some(answercache::BreakerState::Closed)
        );
        cache
    }));
    const KEYS: usize = 2000;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|v| {
            let (a, barrier, handle) = (a.clone(), barrier.clone(), rt.handle().clone());
            std::thread::spawn(move || {
                for i in 0..KEYS {
                    barrier.wait();
                    handle
                        .block_on(a.set_bytes(format!("k{i}").as_str(), v.as_bytes()))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let diverged = rt.block_on(async {
        a.flush().await.unwrap();
        let mut diverged = Vec::new();
        for i in 0..KEYS {
            let key = format!("k{i}");
            let here = text(a.get_bytes(key.as_str()).await.unwrap());
            let there = held(&server, key.as_bytes());
            if here != there {
                diverged.push((key, here, there));
            }
        }
        diverged
    });
    assert_eq!(
        diverged.len(),
        0,
        "keys whose local and shared values differ (first 3): {:?}",
        &diverged[..diverged.len().min(3)]
    );
}
