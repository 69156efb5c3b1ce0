//! A small volume is used: the default free-space floor scales with the filesystem (the
//! smaller of 64 MiB and 5% of its size), so a cache on a real 32 MiB tmpfs writes its
//! entries instead of treating every write like a full disk. A floor set explicitly is kept as
//! it is.

use std::path::Path;

use answercache::TieredCache;

use crate::support::{
    child_dir, mount_tmpfs, role, root_or_skip, run_child_in_temp_dir, runtime, test_name, umount,
    Wrap,
};

#[test]
fn a_32_mib_volume_is_used_with_the_default_floor() {
    if role().as_deref() == Some("small-volume") {
        return child();
    }
    if !root_or_skip("small-volume") {
        return;
    }
    run_child_in_temp_dir(
        &test_name(
            module_path!(),
            "a_32_mib_volume_is_used_with_the_default_floor",
        ),
        "small-volume",
        Wrap::Namespace,
    );
}

fn child() {
    let mnt = child_dir().join("vol");
    mount_tmpfs(&mnt, "size=32m,mode=0700");
    runtime().block_on(run(&mnt));
    umount(&mnt);
}

async fn run(mnt: &Path) {
    // Defaults: the floor is 5% of 32 MiB (1.6 MiB), not 64 MiB.
    let cache = TieredCache::builder(mnt.join("default"))
        .build()
        .await
        .unwrap();
    for i in 0..100u32 {
        cache
            .set(format!("k{i}"), &format!("answer {i}"))
            .await
            .unwrap();
    }
    cache.flush().await.unwrap();
    let s = cache.stats();
    assert_eq!(
        (s.writes_ok, s.writes_failed, s.warm_entries),
        (100, 0, 100)
    );
    cache.close().await.unwrap();

    // An explicit floor above the volume is kept: every write is refused like a full disk.
    let cache = TieredCache::builder(mnt.join("explicit"))
        .min_free_bytes(64 << 20)
        .build()
        .await
        .unwrap();
    cache.set("k", &"v").await.unwrap();
    let flushed = cache.flush().await;
    assert!(
        matches!(&flushed, Err(answercache::Error::NotPersisted { failed: 1, last_error }) if last_error.contains("min_free_bytes (67108864)")),
        "{flushed:?}"
    );
    assert_eq!(cache.stats().writes_ok, 0);
    let _ = cache.close().await;
}
