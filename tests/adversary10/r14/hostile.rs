//! A shared hit promoted into the warm tier is written to disk as the bytes read
//! (`SharedHit.file`, the MAC cut off): values no replica of this build would write (an older
//! format version, a gzip member with header fields, another level), a MAC'd value, a large
//! value verified on the blocking pool, one with an expiry. Each must be served the same
//! from the server, from the disk after a restart with the server emptied, and never be
//! judged corrupt by the disk when the shared check passed it.

use std::io::Write;
use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::warm::format::{self, EntryMeta};
use answercache::{Encoding, Source};

use super::*;

/// Plants `file` for `key`, reads it through a fresh replica on `dir` (a shared hit, promoted
/// and written to its disk), then restarts that replica with the server emptied: returns
/// the first read, the disk file after the first replica closed, the read after the
/// restart, and the second replica's corruption count.
async fn promote_then_restart(
    server: &MemoryShared,
    key: &str,
    file: &[u8],
    edit: impl Fn(answercache::SharedConfig) -> answercache::SharedConfig,
) -> (
    Option<(Vec<u8>, Source)>,
    Option<Vec<u8>>,
    Option<(Vec<u8>, Source)>,
    u64,
) {
    let dir = TestDir::new();
    server.plant(&entry_key(key.as_bytes()), file, None);
    let raw = |a: Option<answercache::Answer<std::sync::Arc<[u8]>>>| {
        a.map(|a| (a.value.to_vec(), a.source))
    };
    let a = open_on(&dir, server, &edit, |b| b).await;
    let first = raw(a.get_bytes_answer(key).await.unwrap());
    a.close().await.unwrap();
    let on_disk = disk_file(&dir, key.as_bytes());
    server.delete(&entry_key(key.as_bytes()));
    let b = open_on(&dir, server, &edit, |b| b).await;
    let second = raw(b.get_bytes_answer(key).await.unwrap());
    let corrupted = b.stats().corrupted;
    b.close().await.unwrap();
    (first, on_disk, second, corrupted)
}

fn meta(created_ms: u64, expires_ms: u64) -> EntryMeta {
    EntryMeta {
        created_ms,
        expires_ms,
        cost: 3,
        encoding: Encoding::Raw,
    }
}

/// A version-1 entry (what an older replica writes; its flags say gzip only): promoted as
/// it is, and read back from the disk after a restart with the same value. (Over 4 KiB: a
/// smaller value is stored uncompressed by the disk, its own file, `warm::encoded`.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_older_format_version_is_promoted_as_it_is_and_read_back() {
    let server = MemoryShared::new();
    let value = b"written by an older replica".repeat(200);
    let payload = format::deflate(&value, 6).unwrap();
    let file = format::assemble(
        b"k",
        value.len() as u64,
        &payload,
        meta(now_ms(), 0),
        1,
        format::FLAG_GZIP,
    );
    let (first, disk, second, corrupted) = promote_then_restart(&server, "k", &file, |c| c).await;
    assert_eq!(first, Some((value.clone(), Source::Shared)));
    assert_eq!(
        disk.as_deref(),
        Some(&file[..]),
        "the bytes read, as they are"
    );
    assert_eq!((second, corrupted), (Some((value, Source::Warm)), 0));
}

/// A gzip member no encoder here makes (level 1, a file name, a comment and an extra
/// field in its header), larger than one inline inflate step (the disk's stepped read):
/// valid for the shared check, so valid for the disk.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_gzip_member_with_header_fields_is_read_back_from_the_disk() {
    let server = MemoryShared::new();
    let value = incompressible(100 << 10, 7);
    let mut gz = flate2::GzBuilder::new()
        .filename("answer.txt")
        .comment("planted")
        .extra(vec![1, 2, 3, 4])
        .write(Vec::new(), flate2::Compression::new(1));
    gz.write_all(&value).unwrap();
    let payload = gz.finish().unwrap();
    let file = format::assemble(
        b"k",
        value.len() as u64,
        &payload,
        meta(now_ms(), 0),
        format::VERSION,
        format::flags_for(Encoding::Raw),
    );
    let (first, disk, second, corrupted) = promote_then_restart(&server, "k", &file, |c| c).await;
    assert_eq!(first, Some((value.clone(), Source::Shared)));
    assert_eq!(disk.as_deref(), Some(&file[..]));
    assert_eq!((second, corrupted), (Some((value, Source::Warm)), 0));
}

/// With a MAC key, the disk gets the entry file without the 32-byte tag; a value over the
/// inline-verify bound (verified on the blocking pool) likewise. (Over 4 KiB: a smaller
/// value is stored uncompressed by the disk, its own file.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_maced_value_reaches_the_disk_without_its_tag() {
    let key = [9u8; 32];
    for len in [5000, 200 << 10] {
        let server = MemoryShared::new();
        let value = incompressible(len, len as u64);
        // Written by another replica with the same key.
        let w = crate::mem::replica_with(&server, |c| c.mac_key(key), |b| b).await;
        w.set_bytes("k", &value[..]).await.unwrap();
        w.flush().await.unwrap();
        w.cache.close().await.unwrap();
        let sealed = server.raw(&entry_key(b"k")).unwrap();
        let (first, disk, second, corrupted) =
            promote_then_restart(&server, "k", &sealed, |c| c.mac_key(key)).await;
        assert_eq!(first, Some((value.clone(), Source::Shared)), "len {len}");
        assert_eq!(
            disk.as_deref(),
            Some(&sealed[..sealed.len() - 32]),
            "len {len}"
        );
        assert_eq!(
            (second, corrupted),
            (Some((value, Source::Warm)), 0),
            "len {len}"
        );
    }
}

/// A promoted entry keeps the header's expiry on disk too: after it passes, the restarted
/// replica serves nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_promoted_expiry_holds_on_disk() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    // Over 4 KiB, so that the disk writes the file read (`warm::encoded`).
    let answer = "expires in 10 s. ".repeat(300);
    let file = mem_entry(b"k", answer.as_bytes(), now_ms(), now_ms() + 10_000);
    server.plant(&entry_key(b"k"), &file, None);
    let a = open_plain(&dir, &server).await;
    assert_eq!(read_src(&a, "k").await, Some((answer, Source::Shared)));
    a.close().await.unwrap();
    assert_eq!(disk_file(&dir, b"k").as_deref(), Some(&file[..]));
    tokio::time::sleep(Duration::from_secs(11)).await;
    server.delete(&entry_key(b"k"));
    let b = open_plain(&dir, &server).await;
    assert_eq!(read_src(&b, "k").await, None);
    b.close().await.unwrap();
}

fn mem_entry(key: &[u8], value: &[u8], created: u64, expires: u64) -> Vec<u8> {
    crate::mem::entry(key, value, created, expires, 3)
}
