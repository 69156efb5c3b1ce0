//! Fault-injecting file system and fixtures for tests of code that embeds answercache: a
//! fault-injecting [`Fs`](crate::fs::Fs) decorator ([`FaultFs`]), a power-loss simulator
//! ([`CrashFs`]), and the fixture that builds caches for tests ([`TestDir`], [`TestCache`],
//! [`wait_until`], [`copy_dir`]).
//!
//! Available to this crate's tests and, with the `test-util` feature, to code that embeds
//! answercache and wants to test its own behaviour on a sick disk.
//!
//! ```
//! use std::sync::Arc;
//! use answercache::testing::{Fault, FaultFs, FsOp, Rule};
//! let fs = Arc::new(FaultFs::std());
//! // Every entry write fails with ENOSPC from the third one on.
//! fs.add_rule(Rule::new(Fault::Errno(libc_enospc())).ops(&[FsOp::WriteNew]).skip(2));
//! # fn libc_enospc() -> i32 { 28 }
//! ```
//!
//! Files: `fault` ([`FaultFs`] and its rules), `crash` ([`CrashFs`]), `fixture` ([`TestDir`],
//! [`TestCache`]), `real` (which real file system the fixtures use: [`use_portable_fs`]),
//! `index` (the warm tier's in-memory index for its own memory test and bench, hidden: not
//! part of the API).

mod crash;
mod fault;
mod fixture;
mod index;
#[cfg(feature = "redis")]
mod memory_shared;
mod real;

pub use crash::CrashFs;
pub use fault::{Fault, FaultFs, FsOp, Rule};
pub use fixture::{
    builder, copy_dir, disk_errors, fs_in_use, temp_files, wait_until, TestCache, TestDir,
};
#[doc(hidden)]
pub use index::WarmIndexProbe;
#[cfg(feature = "redis")]
pub use memory_shared::{MemoryShared, SharedFault, SharedOpKind};
pub use real::{portable_fs_selected, real_fs, use_portable_fs};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileRead, Fs};
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn rules_skip_fire_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::WriteNew])
                .skip(1)
                .times(2),
        );
        let p = |i: u32| dir.path().join(format!("f{i}"));
        assert!(fs.write_new(&p(0), b"x", false).is_ok());
        assert_eq!(
            fs.write_new(&p(1), b"x", false).unwrap_err().raw_os_error(),
            Some(5)
        );
        assert_eq!(
            fs.write_new(&p(2), b"x", false).unwrap_err().raw_os_error(),
            Some(5)
        );
        assert!(fs.write_new(&p(3), b"x", true).is_ok());
        assert_eq!(fs.calls(FsOp::WriteNew), 4);
        assert_eq!(fs.calls(FsOp::SyncFile), 1);
        assert_eq!(fs.faults_injected(), 2);
    }

    #[test]
    fn short_write_leaves_half_a_file_and_flips_flip() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::ShortWrite(28))
                .ops(&[FsOp::WriteNew])
                .times(1),
        );
        let p = dir.path().join("f");
        assert_eq!(
            fs.write_new(&p, b"abcdef", false)
                .unwrap_err()
                .raw_os_error(),
            Some(28)
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        fs.add_rule(
            Rule::new(Fault::FlipBit(8))
                .ops(&[FsOp::ReadFile])
                .path_contains("f"),
        );
        match fs.read_file(&p, 10).unwrap() {
            FileRead::Data(d) => assert_eq!(d, b"acc"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hang_blocks_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::std());
        fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::ReadDir]).times(1));
        let fs2 = fs.clone();
        let path = dir.path().to_owned();
        let t = std::thread::spawn(move || fs2.read_dir(&path).map(|v| v.len()));
        while fs.faults_injected() == 0 {
            std::thread::yield_now();
        }
        assert!(!t.is_finished());
        fs.release_hangs();
        assert_eq!(t.join().unwrap().unwrap(), 0);
    }

    #[test]
    fn crash_keeps_only_what_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("old")).unwrap();
        std::fs::write(root.join("old/f"), b"old").unwrap();
        let fs = CrashFs::new(&root).unwrap();
        let root = fs.root().to_owned();
        // Replaced by a rename whose directory is synced: the new data survives. Data never
        // fsynced, under a synced name, comes back torn.
        fs.write_new(&root.join("old/t1"), b"new", true).unwrap();
        fs.rename(&root.join("old/t1"), &root.join("old/f"))
            .unwrap();
        fs.write_new(&root.join("old/torn"), b"abcdef", false)
            .unwrap();
        fs.sync_dir(&root.join("old")).unwrap();
        // Renamed and removed without a sync: the old names survive.
        fs.rename(&root.join("old/f"), &root.join("old/g")).unwrap();
        fs.remove_file(&root.join("old/torn")).unwrap();
        // A directory whose own name was never synced is lost with what it holds.
        fs.create_dir_all(&root.join("new/sub")).unwrap();
        fs.write_new(&root.join("new/sub/x"), b"x", true).unwrap();
        fs.sync_dir(&root.join("new/sub")).unwrap();
        fs.sync_dir(&root.join("new")).unwrap();
        let calls = fs.calls();
        let image = dir.path().join("image");
        fs.crash(&image).unwrap();
        assert!(fs.read_dir(&root).is_err(), "the power is off");
        assert_eq!(fs.calls(), calls + 1);
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&image), ["old"]);
        assert_eq!(names(&image.join("old")), ["f", "torn"]);
        assert_eq!(std::fs::read(image.join("old/f")).unwrap(), b"new");
        assert_eq!(std::fs::read(image.join("old/torn")).unwrap(), b"abc");
    }

    #[test]
    fn power_off_refuses_calls_and_lying_syncs_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fs = CrashFs::new(dir.path().join("r")).unwrap();
        let root = fs.root().to_owned();
        fs.power_off_after(2);
        fs.write_new(&root.join("a"), b"a", true).unwrap();
        fs.sync_dir(&root).unwrap();
        assert!(!fs.is_powered_off());
        assert_eq!(
            fs.write_new(&root.join("b"), b"b", true)
                .unwrap_err()
                .raw_os_error(),
            Some(5)
        );
        assert!(fs.is_powered_off());
        assert!(!root.join("b").exists(), "a refused call changes nothing");
        fs.crash(&dir.path().join("img")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("img/a")).unwrap(), b"a");

        let fs = CrashFs::new(dir.path().join("r2")).unwrap();
        let root = fs.root().to_owned();
        fs.drop_file_syncs(true);
        fs.write_new(&root.join("a"), b"abcd", true).unwrap();
        fs.sync_dir(&root).unwrap();
        fs.drop_dir_syncs(true);
        fs.write_new(&root.join("b"), b"b", true).unwrap();
        fs.sync_dir(&root).unwrap();
        fs.crash(&dir.path().join("img2")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("img2/a")).unwrap(), b"ab");
        assert!(!dir.path().join("img2/b").exists());
    }
}
