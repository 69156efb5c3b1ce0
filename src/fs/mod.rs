//! The I/O seam: every disk call of the warm tier goes through [`Fs`].
//!
//! The trait is small, synchronous and object-safe (`&self`, `io::Result`) so that it runs on
//! tokio's blocking pool, and so that tests can wrap it in decorators that fail the Nth call,
//! fail by path, flip bytes on read or hang (see `testing`). Paths are absolute, under the
//! cache root. The std implementation ([`StdFs`]) never follows a symlink and never blocks on
//! a FIFO.
//!
//! Files: `seam` (the trait and what it returns), `std_fs` ([`StdFs`]: which implementation
//! runs), `linux` (the Linux implementation, with its fast paths) and `nowait` (its
//! non-blocking page-cache read and the closer thread), `portable` (the portable
//! implementation, any Unix), `opened` (what both do with a file once it is open), `error`
//! (how an I/O error counts).
//!
//! Everything Linux-only is compiled under `#[cfg(all(target_os = "linux",
//! not(answercache_force_portable)))]`: building with `RUSTFLAGS="--cfg
//! answercache_force_portable"` compiles on Linux what every other Unix compiles (`.ci/run`
//! checks it).

mod error;
#[cfg(all(target_os = "linux", not(answercache_force_portable)))]
mod linux;
#[cfg(all(target_os = "linux", not(answercache_force_portable)))]
mod nowait;
mod opened;
mod portable;
mod seam;
mod std_fs;

pub use error::IoErrorKind;
pub use seam::{DirEntryInfo, FileKind, FileRead, Fs};
pub use std_fs::StdFs;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io;
    use std::path::Path;

    #[test]
    fn classification_follows_the_design_table() {
        let c = |code: i32| IoErrorKind::classify(&io::Error::from_raw_os_error(code));
        use rustix::io::Errno;
        assert_eq!(c(Errno::NOSPC.raw_os_error()), IoErrorKind::NoSpace);
        assert_eq!(c(Errno::DQUOT.raw_os_error()), IoErrorKind::NoSpace);
        assert_eq!(c(Errno::IO.raw_os_error()), IoErrorKind::Io);
        assert_eq!(c(Errno::ROFS.raw_os_error()), IoErrorKind::ReadOnly);
        assert_eq!(c(Errno::ACCESS.raw_os_error()), IoErrorKind::Permission);
        assert_eq!(c(Errno::PERM.raw_os_error()), IoErrorKind::Permission);
        assert_eq!(c(Errno::FBIG.raw_os_error()), IoErrorKind::FileTooLarge);
        assert!(!IoErrorKind::FileTooLarge.is_device_failure());
        assert!(IoErrorKind::NoSpace.is_device_failure());
        assert_eq!(
            IoErrorKind::classify(&io::Error::from(io::ErrorKind::TimedOut)),
            IoErrorKind::Timeout
        );
    }

    /// Makes a FIFO `dir/fifo`.
    pub(crate) fn mkfifo(dir: &Path) -> std::path::PathBuf {
        let fifo = dir.join("fifo");
        mkfifo_at(&fifo);
        fifo
    }

    /// Makes a FIFO at `path` (`mknodat`, which rustix does not offer on every Unix).
    #[cfg(all(target_os = "linux", not(answercache_force_portable)))]
    pub(crate) fn mkfifo_at(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    /// Makes a FIFO at `path` (mkfifo(1), POSIX).
    #[cfg(not(all(target_os = "linux", not(answercache_force_portable))))]
    pub(crate) fn mkfifo_at(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo {}", path.display());
    }

    #[test]
    fn std_fs_refuses_symlinks_and_fifos_and_bounds_length() {
        for fs in [StdFs::new(), StdFs::portable()] {
            refuses_symlinks_and_fifos_and_bounds_length(fs);
        }
    }

    fn refuses_symlinks_and_fifos_and_bounds_length(fs: StdFs) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            fs.read_file(&link, 100).unwrap(),
            FileRead::NotRegular(FileKind::Symlink)
        ));
        assert!(matches!(
            fs.read_file(dir.path(), 100).unwrap(),
            FileRead::NotRegular(FileKind::Dir)
        ));
        assert!(matches!(
            fs.read_file(&target, 3).unwrap(),
            FileRead::TooLarge(6)
        ));
        match fs.read_file(&target, 6).unwrap() {
            FileRead::Data(d) => assert_eq!(d, b"secret"),
            other => panic!("{other:?}"),
        }
        let fifo = mkfifo(dir.path());
        assert!(matches!(
            fs.read_file(&fifo, 100).unwrap(),
            FileRead::NotRegular(FileKind::Special)
        ));
        let kinds: Vec<_> = {
            let mut v = fs.read_dir(dir.path()).unwrap();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v.into_iter().map(|e| (e.name, e.kind)).collect()
        };
        assert_eq!(
            kinds,
            vec![
                ("fifo".into(), FileKind::Special),
                ("link".into(), FileKind::Symlink),
                ("target".into(), FileKind::File)
            ]
        );
    }

    #[cfg(all(target_os = "linux", not(answercache_force_portable)))]
    #[test]
    fn nowait_reads_only_from_memory_and_never_through_symlinks_or_fifos() {
        use std::fs::File;
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        assert!(
            StdFs::new().nowait_reads(dir.path()),
            "the temp dir must be on ext4, xfs or btrfs for this test"
        );
        let target = dir.path().join("target");
        StdFs::new().write_new(&target, b"secret", true).unwrap();
        match StdFs::new().read_file_nowait(&target, 6).unwrap() {
            Some(FileRead::Data(d)) => assert_eq!(d, b"secret"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            StdFs::new().read_file_nowait(&target, 5).unwrap(),
            Some(FileRead::TooLarge(6))
        ));
        // Out of the page cache: it would block, so it is not read here.
        // The kernel may keep a page that another CPU's LRU batch still holds after one
        // DONTNEED (seen 2 in 300 runs): repeat the advice until the page is gone.
        let f = File::open(&target).unwrap();
        let mut cached = true;
        for _ in 0..200 {
            rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
            if StdFs::new().read_file_nowait(&target, 6).unwrap().is_none() {
                cached = false;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            !cached,
            "a page out of the page cache was read without blocking"
        );
        // A name never looked up has no (negative) dentry yet: the lookup would block.
        let missing = dir.path().join("missing");
        assert!(StdFs::new()
            .read_file_nowait(&missing, 6)
            .unwrap()
            .is_none());
        let slow = StdFs::new().read_file(&missing, 6).unwrap_err();
        assert_eq!(slow.kind(), io::ErrorKind::NotFound);
        // Now the kernel remembers that it is missing: a miss answered without blocking.
        let fast = StdFs::new().read_file_nowait(&missing, 6).unwrap_err();
        assert_eq!(fast.kind(), io::ErrorKind::NotFound);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            StdFs::new().read_file_nowait(&link, 100).unwrap(),
            Some(FileRead::NotRegular(FileKind::Symlink))
        ));
        // A symlinked directory above the file is refused too.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(&sub, dir.path().join("sublink")).unwrap();
        assert!(matches!(
            StdFs::new()
                .read_file_nowait(&dir.path().join("sublink/f"), 100)
                .unwrap(),
            Some(FileRead::NotRegular(FileKind::Symlink))
        ));
        assert!(matches!(
            StdFs::new().read_file_nowait(&sub, 100).unwrap(),
            Some(FileRead::NotRegular(FileKind::Dir))
        ));
        let fifo = mkfifo(dir.path());
        assert!(matches!(
            StdFs::new().read_file_nowait(&fifo, 100).unwrap(),
            Some(FileRead::NotRegular(FileKind::Special))
        ));
    }

    #[test]
    fn write_new_refuses_to_overwrite() {
        for std_fs in [StdFs::new(), StdFs::portable()] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f");
            std_fs.write_new(&p, b"one", true).unwrap();
            let err = std_fs.write_new(&p, b"two", false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(fs::read(&p).unwrap(), b"one");
        }
    }

    #[test]
    fn std_fs_says_which_implementation_runs() {
        assert_eq!(
            format!("{:?}", StdFs::portable()),
            "StdFs { mode: Portable }"
        );
        assert!(StdFs::portable().is_portable());
        assert_eq!(StdFs::default(), StdFs::new());
        let native = cfg!(all(target_os = "linux", not(answercache_force_portable)));
        assert_eq!(StdFs::new().is_portable(), !native);
        let expected = if native {
            "StdFs { mode: Linux }"
        } else {
            "StdFs { mode: Portable }"
        };
        assert_eq!(format!("{:?}", StdFs::new()), expected);
    }
}
