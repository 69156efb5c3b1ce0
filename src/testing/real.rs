//! Which real file system the fixtures of this module run on: the platform's
//! ([`StdFs::new`]), or, in a test process that asked for it with [`use_portable_fs`], the
//! portable one ([`StdFs::portable`]), so that a whole test suite runs on it unchanged.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::fs::StdFs;

/// Set by [`use_portable_fs`].
static PORTABLE: AtomicBool = AtomicBool::new(false);

/// From now on, in this process, the fixtures ([`builder`](super::builder) and so
/// [`TestDir`](super::TestDir) and [`TestCache`](super::TestCache), [`FaultFs::std`](super::FaultFs::std),
/// [`CrashFs`](super::CrashFs), [`real_fs`]) run caches on [`StdFs::portable`]. Call it before
/// any test runs (the test target `tests/portable` does, from a constructor); a test that
/// hands its own file system to a builder keeps it.
pub fn use_portable_fs() {
    PORTABLE.store(true, Ordering::SeqCst);
}

/// Whether [`use_portable_fs`] was called in this process.
pub fn portable_fs_selected() -> bool {
    PORTABLE.load(Ordering::SeqCst)
}

/// The real file system the fixtures use: [`StdFs::portable`] after [`use_portable_fs`],
/// else [`StdFs::new`]. Decorators that tests write over the real file system wrap it.
pub fn real_fs() -> StdFs {
    if portable_fs_selected() {
        StdFs::portable()
    } else {
        StdFs::new()
    }
}
