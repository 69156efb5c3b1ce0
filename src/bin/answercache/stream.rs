//! Output written as it is produced, for the commands whose output grows with the directory
//! (`ls`, the file list of `purge --json`): memory stays flat on any size of cache.
//!
//! - [`Stdout`]: buffered stdout; a reader that left (`answercache ls DIR | head`) closes it
//!   quietly ([`Stdout::closed`]), any other write error is an I/O error.
//! - [`JsonArrayDoc`]: a `--json` document `{ head fields, "<name>": [items], tail fields }`
//!   written byte for byte as [`print_json`](crate::output::print_json) would write the whole
//!   document, its array item by item. Nothing is written before the first item (or the end):
//!   a command that fails before it has anything to list still fails with one error document.

use std::io::{BufWriter, ErrorKind, Write};

use serde::Serialize;

use crate::error::{CliError, Kind};
use crate::output;

/// Buffered writes on stdout (or, in tests, any writer).
pub struct Stdout<W: Write = std::io::StdoutLock<'static>> {
    out: BufWriter<W>,
    closed: bool,
}

impl Stdout {
    /// Stdout, locked for the command's lifetime.
    pub fn new() -> Self {
        Stdout::to(std::io::stdout().lock())
    }
}

impl<W: Write> Stdout<W> {
    /// Writes go to `out`.
    pub fn to(out: W) -> Self {
        Stdout {
            out: BufWriter::new(out),
            closed: false,
        }
    }

    /// Writes `bytes`; nothing once the reader has left.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        if self.closed {
            return Ok(());
        }
        let r = self.out.write_all(bytes);
        self.check(r)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<(), CliError> {
        if self.closed {
            return Ok(());
        }
        let r = self.out.flush();
        self.check(r)
    }

    /// Whether the reader has left (a broken pipe): nothing more will be written.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn check(&mut self, r: std::io::Result<()>) -> Result<(), CliError> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(output::stdout_error(&e)),
        }
    }
}

/// A `--json` document with one array written item by item (see the module docs).
pub struct JsonArrayDoc<W: Write = std::io::StdoutLock<'static>> {
    out: Stdout<W>,
    /// `{` and the head's fields, then the array's opening, until written.
    opening: Option<String>,
    items: u64,
}

impl JsonArrayDoc {
    /// A document on stdout that starts with the fields of `head` (an object), then the
    /// array `name`.
    pub fn new<H: Serialize>(head: &H, name: &str) -> Result<Self, CliError> {
        JsonArrayDoc::to(Stdout::new(), head, name)
    }
}

impl<W: Write> JsonArrayDoc<W> {
    /// The same, written to `out`.
    pub fn to<H: Serialize>(out: Stdout<W>, head: &H, name: &str) -> Result<Self, CliError> {
        let head = pretty(head)?;
        // `{\n  "a": 1\n}` -> `{\n  "a": 1,\n  "name": [`; an empty head `{}` -> `{\n  "name": [`.
        let fields = head
            .strip_suffix('}')
            .map(str::trim_end)
            .filter(|f| *f != "{")
            .map(|f| format!("{f},"))
            .unwrap_or_else(|| "{".to_owned());
        let name = serde_json::to_string(name)
            .map_err(|e| CliError::new(Kind::Io, format!("writing the JSON document: {e}")))?;
        Ok(JsonArrayDoc {
            out,
            opening: Some(format!("{fields}\n  {name}: [")),
            items: 0,
        })
    }

    /// Writes one item of the array.
    pub fn item<T: Serialize>(&mut self, item: &T) -> Result<(), CliError> {
        self.open()?;
        let sep = if self.items == 0 { "\n    " } else { ",\n    " };
        // JSON strings hold no raw newline: every line break is the pretty printer's.
        let text = pretty(item)?.replace('\n', "\n    ");
        self.items += 1;
        self.out.write(sep.as_bytes())?;
        self.out.write(text.as_bytes())
    }

    /// Whether the reader has left: the caller may stop producing items.
    pub fn closed(&self) -> bool {
        self.out.closed()
    }

    /// Closes the array, writes the fields of `tail` (an object) and ends the document.
    pub fn end<T: Serialize>(mut self, tail: &T) -> Result<(), CliError> {
        self.open()?;
        let close = if self.items == 0 { "]" } else { "\n  ]" };
        let tail = pretty(tail)?;
        // `{\n  "b": 2\n}` -> `,\n  "b": 2\n}`; an empty tail `{}` -> `\n}`.
        let rest = match tail.strip_prefix('{') {
            Some(rest) if rest != "}" => format!(",{rest}"),
            _ => "\n}".to_owned(),
        };
        self.out.write(format!("{close}{rest}\n").as_bytes())?;
        self.out.flush()
    }

    fn open(&mut self) -> Result<(), CliError> {
        match self.opening.take() {
            Some(opening) => self.out.write(opening.as_bytes()),
            None => Ok(()),
        }
    }
}

fn pretty<T: Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(v)
        .map_err(|e| CliError::new(Kind::Io, format!("writing the JSON document: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A writer whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.borrow().clone()).unwrap()
        }
    }

    #[derive(Serialize, Clone)]
    struct Item {
        hash: String,
        n: Option<u64>,
        inner: Vec<u8>,
    }

    #[derive(Serialize)]
    struct Head {
        dir: String,
        dry_run: bool,
    }

    #[derive(Serialize)]
    struct Tail {
        count: u64,
        errors: Vec<String>,
    }

    #[derive(Serialize)]
    struct Whole {
        dir: String,
        dry_run: bool,
        entries: Vec<Item>,
        count: u64,
        errors: Vec<String>,
    }

    fn streamed(items: &[Item]) -> String {
        let head = Head {
            dir: "/a \"b\"\n".into(),
            dry_run: true,
        };
        let buf = Shared::default();
        let mut doc = JsonArrayDoc::to(Stdout::to(buf.clone()), &head, "entries").unwrap();
        for i in items {
            doc.item(i).unwrap();
        }
        let tail = Tail {
            count: items.len() as u64,
            errors: vec!["x".into()],
        };
        doc.end(&tail).unwrap();
        buf.text()
    }

    #[test]
    fn a_streamed_document_is_byte_for_byte_the_whole_one() {
        let item = |i: u64| Item {
            hash: format!("h{i}\n\"q\""),
            n: i.is_multiple_of(2).then_some(i),
            inner: vec![1, 2],
        };
        for n in [0, 1, 3] {
            let items: Vec<Item> = (0..n).map(item).collect();
            let whole = Whole {
                dir: "/a \"b\"\n".into(),
                dry_run: true,
                entries: items.clone(),
                count: n,
                errors: vec!["x".into()],
            };
            let mut want = serde_json::to_string_pretty(&whole).unwrap();
            want.push('\n');
            assert_eq!(streamed(&items), want, "{n} items");
        }
    }

    #[test]
    fn empty_head_and_tail() {
        #[derive(Serialize)]
        struct Empty {}
        let buf = Shared::default();
        let mut doc = JsonArrayDoc::to(Stdout::to(buf.clone()), &Empty {}, "a").unwrap();
        doc.item(&1).unwrap();
        doc.end(&Empty {}).unwrap();
        let text = buf.text();
        assert_eq!(text, "{\n  \"a\": [\n    1\n  ]\n}\n");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!({"a": [1]}));
    }

    #[test]
    fn a_reader_that_left_closes_the_stream_quietly() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(ErrorKind::BrokenPipe.into())
            }
        }
        let mut out = Stdout::to(Gone);
        // Buffered: the first write fits.
        out.write(&[0; 10]).unwrap();
        assert!(!out.closed());
        out.flush().unwrap();
        assert!(out.closed());
        out.write(&[0; 100_000]).unwrap();
    }
}
