//! The selection of the portable file system for a whole test binary, and its proof: a
//! constructor selects it before any test runs, and the tests here check that every way the
//! suite opens caches or reaches the real file system leads to it. Without them, the suite
//! could pass silently on the Linux implementation.

use answercache::testing::{self, FaultFs, TestDir};

/// Selects the portable file system for every fixture of this process
/// ([`testing::use_portable_fs`]).
extern "C" fn select_portable_fs() {
    testing::use_portable_fs();
}

/// Runs [`select_portable_fs`] before `main`, so before any test: libtest has no hook that
/// runs first, and every test opens caches through the fixtures. An ELF constructor
/// (`.init_array`): Linux, where CI runs. Elsewhere the portable file system is the default
/// one anyway, and the tests below still check it.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "a constructor entry; it only sets an atomic flag, which needs nothing initialized"
)]
#[used]
#[link_section = ".init_array"]
static SELECT_PORTABLE_FS: extern "C" fn() = select_portable_fs;

/// What `Debug` shows for the portable implementation.
const PORTABLE: &str = "StdFs { mode: Portable }";

#[test]
fn the_portable_fs_was_selected_before_any_test_ran() {
    assert!(
        testing::portable_fs_selected() || !cfg!(target_os = "linux"),
        "the constructor did not run"
    );
    assert!(testing::real_fs().is_portable());
    assert_eq!(format!("{:?}", testing::real_fs()), PORTABLE);
    let fault = format!("{:?}", FaultFs::std());
    assert!(fault.contains(&format!("inner: {PORTABLE}")), "{fault}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_opens_its_caches_on_the_portable_fs() {
    let plain = TestDir::new().open_cache(|b| b).await;
    assert_eq!(testing::fs_in_use(&plain), PORTABLE);
    let dir = TestDir::new().manual_clock(1_735_689_600_000);
    let cache = dir.open(dir.builder()).await;
    assert_eq!(testing::fs_in_use(&cache), PORTABLE);
    let built = testing::builder(dir.path().join("other"))
        .build()
        .await
        .unwrap();
    assert_eq!(testing::fs_in_use(&built), PORTABLE);
    let faulty = TestDir::new().fault_fs().open_cache(|b| b).await;
    let shown = testing::fs_in_use(&faulty);
    assert!(shown.starts_with("FaultFs {"), "{shown}");
    assert!(shown.contains(&format!("inner: {PORTABLE}")), "{shown}");

    // Reads take the timed path on the blocking pool: the portable fs never reads inline.
    plain.set_bytes("k", b"on disk".to_vec()).await.unwrap();
    let mut plain = plain;
    plain.reopen().await;
    assert_eq!(
        plain.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"on disk"[..])
    );
    let s = plain.stats();
    assert_eq!((s.warm_hits, s.inline_reads), (1, 0));
    for c in [cache, built] {
        c.close().await.unwrap();
    }
    plain.close().await.unwrap();
    faulty.close().await.unwrap();
}
