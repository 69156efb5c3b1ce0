//! The promises of acknowledgements, `flush` and judged deletes, each checked by the
//! scenario that broke it (issue 11): a write-through `set` that returned Ok before anything
//! was on disk, `flush` that reported success with nothing persisted (or failure with
//! everything persisted), and a read that deleted a newer write than the file it judged.

use std::sync::Arc;
use std::time::Duration;

use tiercache::testing::{Fault, FaultFs, FsOp, Rule};
use tiercache::Error;

use crate::support::*;

/// A write-through acknowledgement means the entry is on disk, however long the write waited
/// in the queue: waiting is backpressure, not a timeout. Every write here takes 60 ms and
/// only one runs at a time, so the last of 8 concurrent sets waits ~420 ms in the queue,
/// longer than twice the 150 ms `io_timeout` that bounded the wait before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_ack_waits_for_the_disk_not_for_a_timer() {
    let fs = Arc::new(FaultFs::std());
    fs.add_rule(Rule::new(Fault::Delay(Duration::from_millis(60))).ops(&[FsOp::WriteNew]));
    let h = TestCache::new()
        .fs(fs)
        .write_through()
        .write_concurrency(1)
        .io_timeout(Duration::from_millis(150))
        .build()
        .await;
    let value = vec![7u8; 16 << 10];
    let mut sets = Vec::new();
    for i in 0..8 {
        let cache = h.cache.clone();
        let value = value.clone();
        sets.push(tokio::spawn(async move {
            let key = format!("k{i}");
            cache.set_bytes(&key, &value).await.map(|()| key)
        }));
    }
    let root = h.root().to_path_buf();
    let mut acked = 0;
    for s in sets {
        let key = s.await.unwrap().unwrap();
        assert!(
            entry_path(&root, &key).exists(),
            "{key} acknowledged before its file was on disk"
        );
        acked += 1;
    }
    assert_eq!(acked, 8);
    assert_eq!(h.stats().writes_ok, 8);
}
