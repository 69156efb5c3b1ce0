//! Round trips: what goes in comes out equal, typed (a realistic LLM answer with tool calls,
//! through serde) and raw bytes, from 1 byte to 1 MiB, first from the hot tier, then after a
//! restart from the warm tier (gzip files on disk), then from hot again once promoted. And the
//! one read path that is easy to forget: a value pushed out of the hot tier while its disk
//! write is still pending must be served from the write queue, not reported as a miss.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::HOT_ENTRY_OVERHEAD as ENTRY_OVERHEAD;

use answercache::workload::{markdown, Rng};

use crate::support::{answer, open, Answer, Reads};

const SIZES: [usize; 4] = [1, 1 << 10, 64 << 10, 1 << 20];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_answers_round_trip_from_hot_then_warm() {
    let mut rng = Rng::new(7);
    let mut h = open(|b| b).await;
    let answers: Vec<(String, Answer)> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            (
                format!("prompt #{i}: {len} bytes"),
                answer(&mut rng, len, i),
            )
        })
        .collect();
    for (k, a) in &answers {
        h.set(k, a).await.unwrap();
    }

    let before = h.stats();
    for (k, a) in &answers {
        assert_eq!(
            h.get::<Answer>(k).await.unwrap().as_ref(),
            Some(a),
            "hot read of {k}"
        );
    }
    let reads = Reads::between(&before, &h.stats());
    assert_eq!(
        reads,
        Reads {
            hot_hits: 4,
            ..Reads::default()
        }
    );

    h.reopen().await;
    assert_eq!(h.stats().hot_entries, 0);
    for (k, a) in &answers {
        assert_eq!(
            h.get::<Answer>(k).await.unwrap().as_ref(),
            Some(a),
            "warm read of {k}"
        );
    }
    let s = h.stats();
    assert_eq!(
        Reads::between(&before, &s),
        Reads {
            warm_hits: 4,
            ..Reads::default()
        }
    );
    // Warm hits are promoted: the next pass is served from memory.
    for (k, a) in &answers {
        assert_eq!(
            h.get::<Answer>(k).await.unwrap().as_ref(),
            Some(a),
            "promoted read of {k}"
        );
    }
    let reads = Reads::between(&s, &h.stats());
    assert_eq!(
        reads,
        Reads {
            hot_hits: 4,
            ..Reads::default()
        }
    );
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_unchanged_from_hot_then_warm() {
    let mut rng = Rng::new(8);
    let mut h = open(|b| b).await;
    // Random bytes (incompressible) and markdown prose (compressible) of every size, plus the empty value.
    let mut values: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"empty".to_vec(), Vec::new())];
    for len in SIZES {
        values.push((format!("random-{len}").into_bytes(), rng.bytes(len)));
        values.push((
            format!("prose-{len}").into_bytes(),
            markdown(&mut rng, len).into_bytes(),
        ));
    }
    for (k, v) in &values {
        h.set_bytes(k, v).await.unwrap();
    }
    let s = h.stats();
    assert_eq!(s.sets, 9);
    assert_eq!(s.hot_entries, 9);
    let charged: usize = values
        .iter()
        .map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
        .sum();
    assert_eq!(s.hot_bytes, charged as u64, "hot byte accounting is exact");

    for (k, v) in &values {
        assert_eq!(h.get_bytes(k).await.unwrap().as_deref(), Some(&v[..]));
    }
    h.reopen().await;
    let before = h.stats();
    for (k, v) in &values {
        assert_eq!(h.get_bytes(k).await.unwrap().as_deref(), Some(&v[..]));
    }
    let after = h.stats();
    assert_eq!(
        Reads::between(&before, &after),
        Reads {
            warm_hits: 9,
            ..Reads::default()
        }
    );
    assert_eq!(
        after.hot_bytes, charged as u64,
        "promoted entries are charged the same"
    );
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_any_serde_type_coexist_and_a_later_set_replaces() {
    let h = open(|b| b).await;
    h.set("greeting", "hello").await.unwrap();
    h.set("numbers", &vec![1u64, 2, 3]).await.unwrap();
    h.set("nothing", &()).await.unwrap();
    assert_eq!(
        h.get::<String>("greeting").await.unwrap().as_deref(),
        Some("hello")
    );
    assert_eq!(
        h.get::<Vec<u64>>("numbers").await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(h.get::<()>("nothing").await.unwrap(), Some(()));
    assert_eq!(h.get::<String>("absent").await.unwrap(), None);
    // A later set replaces the earlier value, typed or raw.
    h.set_bytes("greeting", b"raw").await.unwrap();
    assert_eq!(
        h.get_bytes("greeting").await.unwrap().as_deref(),
        Some(&b"raw"[..])
    );
    let s = h.stats();
    assert_eq!((s.sets, s.hot_hits, s.misses, s.hot_entries), (4, 4, 1, 3));
    h.close().await.unwrap();
}

/// Writes hang (a stalled disk), the hot tier holds two entries: five sets push three values
/// out of memory before any of them is on disk. Every one must still read back, the three from
/// the write queue; nothing is lost; once the disk moves again all five land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_evicted_before_its_write_landed_is_read_from_the_queue() {
    let fs = Arc::new(FaultFs::std());
    let mut h = open(|b| {
        b.hot_capacity_entries(2)
            .io_timeout(Duration::from_secs(300))
            .fs(fs.clone())
    })
    .await;
    fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
    let keys: Vec<String> = (0..5).map(|i| format!("question {i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        h.set(k, &format!("answer {i}")).await.unwrap();
    }
    let s = h.stats();
    assert_eq!((s.hot_entries, s.hot_evictions, s.lost_writes), (2, 3, 0));
    assert_eq!((s.writes_ok, s.write_queue_depth), (0, 5));
    // Three of the five are no longer in memory (which three depends on the shards): they
    // come from the queue, the other two from hot.
    let before = h.stats();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            h.get::<String>(k).await.unwrap(),
            Some(format!("answer {i}")),
            "{k}"
        );
    }
    let reads = Reads::between(&before, &h.stats());
    assert_eq!(
        reads,
        Reads {
            queue_hits: 3,
            hot_hits: 2,
            ..Reads::default()
        }
    );

    fs.clear_rules();
    h.flush().await.unwrap();
    let s = h.stats();
    assert_eq!(
        (s.writes_ok, s.write_queue_depth, s.lost_writes),
        (5, 0, 0),
        "after flush: (writes_ok, write_queue_depth, lost_writes)"
    );
    h.reopen().await;
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            h.get::<String>(k).await.unwrap(),
            Some(format!("answer {i}")),
            "{k}"
        );
    }
    assert_eq!(h.stats().warm_hits, 5);
    h.close().await.unwrap();
}

/// What the warm tier writes: an entry whose stored (gzip level 0) file fits in one allocation
/// unit of the file system is stored, the value verbatim after a 5-byte block header; a
/// larger one is compressed at the configured level (`compression_level(0)`: stored too).
/// Both read back from the disk as they went in. The unit is the file system's, 512 B to
/// 1 MiB: a 96-byte value is stored on any, a 2 MiB one compressed on any: written stored
/// first, and compressed by the background compaction (`Builder::compress_in_background`),
/// which this waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_fit_one_unit_are_stored_larger_ones_compressed_at_the_level() {
    use crate::support::OnDisk;
    let small = b"The capital of France is Paris. ".repeat(3);
    let large = markdown(&mut Rng::new(11), 2 << 20).into_bytes();
    // Where the gzip member of an entry file starts (the header, then the 5-byte keys).
    const MEMBER: usize = 88 + 5;
    for level in [0u32, 1, 3, 9] {
        let mut h = open(|b| b.compression_level(level)).await;
        h.set_bytes("small", small.clone()).await.unwrap();
        h.set_bytes("large", large.clone()).await.unwrap();
        h.flush().await.unwrap();
        let compacted = u64::from(level != 0);
        assert!(
            answercache::testing::wait_until(std::time::Duration::from_secs(20), || {
                h.stats().warm_compactions == compacted
            })
            .await,
            "level {level}"
        );
        assert_eq!(h.stats().warm_compaction_backlog, 0, "level {level}");

        let file = std::fs::read(h.entry_path("small")).unwrap();
        // gzip header (XFL 4: level 0), one final stored block of 96 bytes, trailer.
        assert_eq!(file.len(), MEMBER + 10 + 5 + 96 + 8, "level {level}");
        assert_eq!(file[MEMBER + 8], 4, "XFL, level {level}");
        assert_eq!(&file[MEMBER + 10..MEMBER + 15], &[0x01, 96, 0, !96, 0xff]);
        assert_eq!(&file[MEMBER + 15..MEMBER + 15 + 96], &small[..]);

        let file = std::fs::read(h.entry_path("large")).unwrap();
        let block_type = (file[MEMBER + 10] >> 1) & 0b11;
        let xfl = file[MEMBER + 8];
        if level == 0 {
            assert_eq!((xfl, block_type), (4, 0b00), "stored");
            assert!(file.len() > MEMBER + large.len());
        } else {
            assert_ne!(block_type, 0b00, "level {level}: compressed");
            assert_eq!(xfl, [0, 4, 0, 0, 0, 0, 0, 0, 0, 2][level as usize]);
            assert!(
                file.len() < large.len() * 3 / 4,
                "level {level}: {}",
                file.len()
            );
        }

        h.reopen().await;
        assert_eq!(
            h.get_bytes("small").await.unwrap().as_deref(),
            Some(&small[..])
        );
        assert_eq!(
            h.get_bytes("large").await.unwrap().as_deref(),
            Some(&large[..])
        );
        assert_eq!(h.stats().warm_hits, 2, "level {level}");
        h.close().await.unwrap();
    }
}

/// Compile-time: the handle is shared across tasks, and what it returns crosses threads.
#[test]
fn the_handle_and_its_results_are_send_and_sync() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<answercache::TieredCache>();
    shareable::<answercache::Stats>();
    shareable::<answercache::Error>();
    shareable::<std::sync::Arc<[u8]>>();
}
