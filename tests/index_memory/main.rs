//! What the warm tier's in-memory index costs per entry: at 1,000,000 entries it must hold
//! at most 64 bytes of heap per entry (the index keeps one entry per file on disk, for the
//! life of the process).
//!
//! Counted by a global allocator that adds up what this test's own thread has live (other
//! threads, such as libtest's, are not counted), from an empty index to one holding the
//! entries; the scan's input vector and every other temporary is freed by then. Run:
//! `cargo test --release --test index_memory -- --nocapture` (release: the debug build takes
//! a few seconds more; both count the same bytes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use answercache::testing::WarmIndexProbe;
use answercache::warm::layout::key_hash;
use answercache::workload::Rng;

/// The system allocator, counting the bytes live and their peak on the calling thread while
/// that thread's counting is on.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with`: an allocation while the thread's locals are torn down is not counted.
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.with(|l| {
                let now = l.get() + delta;
                l.set(now);
                PEAK.with(|p| p.set(p.get().max(now)));
            });
        }
    });
}

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counting touches only const-initialized thread locals without destructors (no allocation).
#[allow(
    unsafe_code,
    reason = "a counting global allocator, forwarding to System"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `GlobalAlloc::alloc`, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[allow(unsafe_code, reason = "the attribute needs the unsafe impl above")]
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes live on this thread and their peak since counting started, while `f` runs.
fn counted<T>(f: impl FnOnce() -> T) -> (T, i64, i64) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|on| on.set(true));
    let out = f();
    ON.with(|on| on.set(false));
    (out, LIVE.with(Cell::get), PEAK.with(Cell::get))
}

/// A realistic entry file length: mostly answers of a few hundred bytes to some tens of KiB
/// (a log-uniform draw from 200 B to 256 KiB).
fn file_len(rng: &mut Rng) -> u64 {
    let lo = 200f64.ln();
    let hi = (256.0 * 1024.0f64).ln();
    (lo + rng.unit() * (hi - lo)).exp() as u64
}

/// A realistic expiry: a third never expire, the rest within a minute to a week of `now`.
fn expiry(rng: &mut Rng, now: u64) -> u64 {
    if rng.chance(1.0 / 3.0) {
        0
    } else {
        now + rng.range(60_000, 7 * 24 * 3_600_000) as u64
    }
}

const N: usize = 1_000_000;
/// The bound: bytes of heap per entry at `N` entries.
const MAX_BYTES_PER_ENTRY: i64 = 64;

/// `N` entries: a quarter found by a startup scan, the rest written since, each with a
/// realistic length and expiry; then every one read again (an update of each entry in
/// place), which must not add memory.
fn build(rng: &mut Rng, hashes: &[[u8; 32]]) -> WarmIndexProbe {
    let now = 1_750_000_000_000u64;
    let scanned = N / 4;
    let mut ix = WarmIndexProbe::new();
    let found: Vec<([u8; 32], u64, u64)> = hashes[..scanned]
        .iter()
        .map(|h| (*h, file_len(rng), now - rng.range(0, 86_400_000) as u64))
        .collect();
    ix.merge_scanned(found);
    for h in &hashes[scanned..] {
        ix.put(*h, file_len(rng), expiry(rng, now));
    }
    for h in hashes {
        ix.put(*h, file_len(rng), expiry(rng, now));
    }
    ix
}

#[test]
fn the_index_holds_at_most_64_bytes_per_entry_at_a_million_entries() {
    let hashes: Vec<[u8; 32]> = (0..N as u64).map(|i| key_hash(&i.to_le_bytes())).collect();
    let mut rng = Rng::new(0x1de5);
    let (ix, live, peak) = counted(|| build(&mut rng, &hashes));
    assert_eq!(ix.len(), N);
    let per_entry = live / N as i64;
    println!(
        "index_memory: {N} entries: {live} bytes live ({:.2} B/entry), peak {peak} bytes \
         ({:.2} B/entry)",
        live as f64 / N as f64,
        peak as f64 / N as f64,
    );
    assert!(
        per_entry <= MAX_BYTES_PER_ENTRY,
        "{per_entry} B/entry (over {MAX_BYTES_PER_ENTRY})"
    );
    // Dropping the index gives everything back: nothing counted above was anything else.
    let ((), after_drop, _) = counted(|| drop(ix));
    assert_eq!(after_drop, -live);
}
