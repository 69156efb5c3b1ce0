//! Adversary 10: attacks on the shared tier's promises (SHARED_TIER.md, README "Shared tier",
//! RELIABILITY.md): no wrong, torn, foreign, stale or removed answer across replicas; a sick
//! server costs no errors and bounded latency; hostile values are counted and deleted.
//! Findings are the `#[ignore = "FINDING Dn: ..."]` tests, listed in FINDINGS.md.
#![cfg(all(feature = "redis", feature = "test-util"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure with its location"
)]

/// The real-server harness of tests/shared, used in part (not copied).
#[allow(unused_imports, reason = "the shared harness, used in part")]
#[path = "../shared/support/mod.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: support::alloc::Tracking = support::alloc::Tracking;

/// The in-memory fixture, copied from tests/shared_orchestration/support.rs.
#[allow(dead_code, reason = "a fixture, used in part")]
mod mem;
mod util;

mod faults;
mod hostile;
/// Adversary 11 (the entry paths after the D1–D6 fixes): tests/adversary10/r11/FINDINGS.md.
mod r11;
/// Adversary 12 (session 13's shared-tier fixes): tests/adversary10/r12/FINDINGS.md.
mod r12;
mod r13;
/// Adversary 14 (encode once: b50c44e, d0b8409): tests/adversary10/r14/FINDINGS.md.
mod r14;
/// Adversary 15 (the E1 and E3 fixes of 2c3da5f): tests/adversary10/r15/FINDINGS.md.
mod r15;
/// Adversary 16 (the G1, G3 and G4 fixes of 980e1f7): tests/adversary10/r16/FINDINGS.md.
mod r16;
/// Adversary 17 (the H1 fix of 5d28383 and the fence's write path): tests/adversary10/r17/FINDINGS.md.
mod r17;
/// Adversary 18 (the I1/I2 fix of cd4d82f: read-compare-write of the fence under locks): tests/adversary10/r18/FINDINGS.md.
mod r18;
/// Adversary 19 (the J1/J2 fix of cd4d82f/bfa1abf: one more than another writer's fence, `fence_written`, the in-memory raise): tests/adversary10/r19/FINDINGS.md.
mod r19;
/// Adversary 20 (the K1 fix of 7ae3d62: `fence_written` shared with `Freshness`, failed and given-up fence writes vs another instance's same-ms clear): tests/adversary10/r20/FINDINGS.md.
mod r20;
mod races;
mod superseded;
