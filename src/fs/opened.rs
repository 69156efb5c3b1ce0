//! What both implementations of [`StdFs`](super::StdFs) do with a file once it is open:
//! check that it is a regular file, and read it whole or its first bytes, bounded.

use std::fs::File;
use std::io::{self, Read};

use super::seam::{FileKind, FileRead};

/// `file` and its length if it is a regular file (by `fstat` on the open file, so that what
/// was checked is what is read); otherwise the kind of what it is.
pub(super) fn regular(file: File) -> io::Result<Result<(File, u64), FileKind>> {
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(Ok((file, meta.len())))
    } else if ft.is_dir() {
        Ok(Err(FileKind::Dir))
    } else {
        Ok(Err(FileKind::Special))
    }
}

/// Reads the first `n` bytes (fewer if the file is shorter) of a regular file `len` bytes
/// long when opened.
pub(super) fn read_first(file: File, len: u64, n: usize) -> io::Result<FileRead> {
    // Never more than the file holds (`n` may be a limit of gigabytes).
    let cap = usize::try_from(len).map_or(n, |len| len.min(n));
    let mut buf = Vec::with_capacity(cap);
    file.take(n as u64).read_to_end(&mut buf)?;
    Ok(FileRead::Data(buf))
}

/// Reads a whole regular file `len` bytes long when opened, if it holds at most `max_len`
/// bytes.
pub(super) fn read_whole(mut file: File, len: u64, max_len: u64) -> io::Result<FileRead> {
    if len > max_len {
        return Ok(FileRead::TooLarge(len));
    }
    let cap = usize::try_from(len).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    // Read one byte past the limit so a file that grew after fstat is still caught.
    (&mut file)
        .take(max_len.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > max_len {
        return Ok(FileRead::TooLarge(buf.len() as u64));
    }
    Ok(FileRead::Data(buf))
}
