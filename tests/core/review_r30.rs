//! r30: adversarial guards of `LinuxFs::rename`'s shared-parent check (a892627: a parent
//! checked once when `from` and `to` share it), held against the portable implementation:
//! symlinks planted at the fan-out level, paths that compare equal as `Path` but are spelled
//! differently (`./`, `//`), and parents that differ only through `..`. Nothing outside the
//! cache root may be touched. See `REVIEW_R30_FINDINGS.md`.

use std::path::{Path, PathBuf};

use answercache::fs::Fs;
use answercache::StdFs;

const ENOTDIR: i32 = 20;
const ELOOP: i32 = 40;

fn implementations() -> [(&'static str, StdFs); 2] {
    [("linux", StdFs::new()), ("portable", StdFs::portable())]
}

/// `root/v2/cd` a real fan-out directory holding `x`; `root/v2/ab` a symlink to `outside`,
/// which holds `victim`.
fn plant() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("v2").join("cd")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"outside").unwrap();
    std::fs::write(root.join("v2/cd/x"), b"inside").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("v2/ab")).unwrap();
    (dir, root, outside)
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every rename with a symlink on the way of either end is refused, by both implementations,
/// in both variants, whether the two parents are spelled alike, alike up to `./` and `//`, or
/// differently through `..`; nothing in `outside` changes and nothing leaves the cache.
#[test]
fn a_rename_through_a_planted_symlink_is_refused_however_the_parents_are_spelled() {
    let mut seen = Vec::new();
    for (name, fs) in implementations() {
        for noreplace in [false, true] {
            let (_dir, root, outside) = plant();
            let v2 = root.join("v2");
            let cases: [(&str, PathBuf, PathBuf); 6] = [
                ("same parent", v2.join("ab/victim"), v2.join("ab/dest")),
                (
                    "same parent, ./",
                    v2.join("ab/./victim"),
                    v2.join("ab/dest"),
                ),
                (
                    "same parent, //",
                    PathBuf::from(format!("{}//ab/victim", v2.display())),
                    v2.join("ab/./dest"),
                ),
                ("into the link", v2.join("cd/x"), v2.join("ab/x")),
                (
                    "out of the link",
                    v2.join("ab/victim"),
                    v2.join("cd/victim"),
                ),
                ("through ..", v2.join("cd/x"), v2.join("ab/../root/v2/cd/y")),
            ];
            for (what, from, to) in cases {
                let r = if noreplace {
                    fs.rename_noreplace(&from, &to)
                } else {
                    fs.rename(&from, &to)
                };
                let errno = r.err().and_then(|e| e.raw_os_error());
                assert!(
                    matches!(errno, Some(ELOOP | ENOTDIR)),
                    "{name} noreplace={noreplace} {what}: {errno:?}"
                );
                seen.push((name, noreplace, what, errno));
                assert_eq!(
                    listing(&outside),
                    vec![("victim".to_owned(), b"outside".to_vec())],
                    "{name} {what}"
                );
                assert_eq!(
                    listing(&v2.join("cd")),
                    vec![("x".to_owned(), b"inside".to_vec())],
                    "{name} {what}"
                );
            }
        }
    }
    // The two implementations give the same errno, case by case (ENOTDIR where the link is
    // the parent itself, ELOOP where it is further up or followed by `..`).
    let (linux, portable) = seen.split_at(seen.len() / 2);
    for (l, p) in linux.iter().zip(portable) {
        assert_eq!((l.1, l.2, l.3), (p.1, p.2, p.3), "linux vs portable");
    }
    let linux_errnos: Vec<_> = linux.iter().map(|c| (c.1, c.2, c.3)).collect();
    let mut want = Vec::new();
    for noreplace in [false, true] {
        for what in [
            "same parent",
            "same parent, ./",
            "same parent, //",
            "into the link",
            "out of the link",
        ] {
            want.push((noreplace, what, Some(ENOTDIR)));
        }
        want.push((noreplace, "through ..", Some(ELOOP)));
    }
    assert_eq!(linux_errnos, want);
}

/// The same-parent rename of every write, spelled with `./` or `//` on one side, still works
/// in a real fan-out directory (the single check does not refuse what two checks allowed).
#[test]
fn a_rename_within_a_real_fan_out_dir_spelled_two_ways_works() {
    for (name, fs) in implementations() {
        let (_dir, root, _outside) = plant();
        let cd = root.join("v2/cd");
        fs.rename(&cd.join("./x"), &cd.join("y")).unwrap();
        fs.rename_noreplace(
            &PathBuf::from(format!("{}//y", cd.display())),
            &cd.join("z"),
        )
        .unwrap();
        assert_eq!(
            listing(&cd),
            vec![("z".to_owned(), b"inside".to_vec())],
            "{name}"
        );
    }
}
