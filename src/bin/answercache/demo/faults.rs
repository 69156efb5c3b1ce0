//! The demo's failing disk: a fault-injecting [`Fs`] with one switch.
//!
//! Failing a real device needs privileges (a read-only remount, a full tmpfs) a demo must not
//! assume, so the demo's caches run on [`FailingFs`]: the real file system until the switch is
//! thrown, then EIO (what a dying disk answers) from every call. The library's own
//! fault-injecting file systems (`answercache::testing`, feature `test-util`) do far more; the
//! shipped binary does not build them.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use answercache::fs::{DirEntryInfo, FileRead, Fs};

/// EIO: what a dying disk answers.
const EIO: i32 = 5;

/// An [`Fs`] that delegates every call to the one it wraps, or, while [`FailingFs::fail`] is
/// on, fails every call with EIO without making it.
#[derive(Debug)]
pub struct FailingFs {
    inner: Arc<dyn Fs>,
    failing: AtomicBool,
}

impl FailingFs {
    /// The file system `inner`, healthy.
    pub fn new(inner: Arc<dyn Fs>) -> Self {
        FailingFs {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    /// Makes every call fail with EIO (`true`) or work again (`false`).
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// The wrapped file system, or EIO while failing.
    fn inner(&self) -> io::Result<&dyn Fs> {
        if self.failing.load(Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(EIO))
        } else {
            Ok(&*self.inner)
        }
    }
}

impl Fs for FailingFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.inner()?.read_file(path, max_len)
    }

    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner()?.read_prefix(path, n)
    }

    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.inner()?.write_new(path, data, sync)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner()?.rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner()?.rename_noreplace(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner()?.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner()?.remove_dir_all(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner()?.create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner()?.sync_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.inner()?.read_dir(path)
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.inner()?.available_space(path)
    }

    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner()?.total_space(path)
    }

    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner()?.block_size(path)
    }

    /// Never: as with the library's fault injectors, every read takes the timed path on the
    /// blocking pool, where the faults are seen.
    fn nowait_reads(&self, _root: &Path) -> bool {
        false
    }

    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        self.inner()?.read_file_nowait(path, max_len)
    }
    fn settle_deferred_closes(&self, timeout: std::time::Duration) -> bool {
        // The closes were deferred by the inner file system, failing or not.
        self.inner.settle_deferred_closes(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use answercache::StdFs;

    #[test]
    fn every_call_fails_while_the_switch_is_on() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fs = FailingFs::new(Arc::new(StdFs::new()));
        let file = dir.path().join("f");
        fs.write_new(&file, b"x", false)?;
        fs.fail(true);
        let errors = [
            fs.read_file(&file, 10).err(),
            fs.read_prefix(&file, 1).err(),
            fs.write_new(&dir.path().join("g"), b"x", false).err(),
            fs.rename(&file, &dir.path().join("h")).err(),
            fs.rename_noreplace(&file, &dir.path().join("h")).err(),
            fs.remove_file(&file).err(),
            fs.remove_dir_all(dir.path()).err(),
            fs.create_dir_all(&dir.path().join("d")).err(),
            fs.sync_dir(dir.path()).err(),
            fs.read_dir(dir.path()).err(),
            fs.available_space(dir.path()).err(),
            fs.read_file_nowait(&file, 10).err(),
        ];
        for e in errors {
            assert_eq!(e.and_then(|e| e.raw_os_error()), Some(EIO));
        }
        assert!(!fs.nowait_reads(dir.path()));
        fs.fail(false);
        assert_eq!(fs.read_dir(dir.path())?.len(), 1);
        assert!(matches!(fs.read_file(&file, 10)?, FileRead::Data(d) if d == b"x"));
        Ok(())
    }
}
