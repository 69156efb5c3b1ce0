//! Aligned plain-text tables and the number formats the CLI prints.

use std::fmt;
use std::time::Duration;

/// One row: a label and its values.
#[derive(Debug, Clone)]
struct Row {
    label: String,
    cells: Vec<String>,
}

/// A table whose first column is left-aligned and whose other columns are right-aligned
/// (numbers), unless marked left-aligned (text).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Row>,
    /// Columns (counting the label column as 0) aligned left.
    left: Vec<usize>,
}

impl Table {
    /// A table with these column headers (the first one heads the label column).
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            left: Vec::new(),
        }
    }

    /// Aligns these columns left (column 0, the label, always is).
    pub fn left_aligned(mut self, columns: &[usize]) -> Self {
        self.left.extend_from_slice(columns);
        self
    }

    /// Adds a row.
    pub fn row<S: Into<String>>(
        &mut self,
        label: impl Into<String>,
        cells: impl IntoIterator<Item = S>,
    ) {
        self.rows.push(Row {
            label: label.into(),
            cells: cells.into_iter().map(Into::into).collect(),
        });
    }

    /// Adds a row of a file count and their bytes: `1,234   5.6 KiB (5,734 B)`.
    pub fn files_row(&mut self, label: impl Into<String>, files: u64, bytes: u64) {
        self.row(label, [count(files), bytes_exact(bytes)]);
    }

    /// Adds a row of a count alone (an empty bytes column).
    pub fn count_row(&mut self, label: impl Into<String>, n: u64) {
        self.row(label, [count(n), String::new()]);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in std::iter::once(&row.label).chain(&row.cells).enumerate() {
                let n = c.chars().count();
                if i >= w.len() {
                    w.push(n);
                } else if n > w[i] {
                    w[i] = n;
                }
            }
        }
        w
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.widths();
        let total: usize = w.iter().sum::<usize>() + 3 * w.len().saturating_sub(1);
        let line = |f: &mut fmt::Formatter<'_>, label: &str, cells: &[String]| -> fmt::Result {
            let mut out = format!("{label:<width$}", width = w[0]);
            for (i, c) in cells.iter().enumerate() {
                if self.left.contains(&(i + 1)) {
                    out.push_str(&format!("   {c:<width$}", width = w[i + 1]));
                } else {
                    out.push_str(&format!("   {c:>width$}", width = w[i + 1]));
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        if let Some((first, rest)) = self.header.split_first() {
            line(f, first, rest)?;
            writeln!(f, "{}", "-".repeat(total))?;
        }
        for row in &self.rows {
            line(f, &row.label, &row.cells)?;
        }
        Ok(())
    }
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: `512 B`, `3.9 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A percentage of `num / den` with one decimal; `-` when `den` is zero.
pub fn percent(num: u64, den: u64) -> String {
    if den == 0 {
        "-".into()
    } else {
        format!("{:.1}%", num as f64 * 100.0 / den as f64)
    }
}

/// A human duration: `850 ms`, `12.4 s`, `3m 07s`, `1h 02m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A unix-ms wall-clock time as UTC, `2025-01-01T00:00:00Z`; `-` for 0 (never).
pub fn time_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A span of time in at most two units: `0s`, `42s`, `5m 03s`, `2h 07m`, `3d 04h`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// A key for a message or a table, in double quotes: its text when it is UTF-8, with `"`,
/// `\` and what is not printable (control characters) escaped the way Rust writes them
/// (`\n`, `\u{1b}`); else its bytes escaped (`\xff`).
pub fn key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("\"{}\"", key.escape_ascii()),
    }
}

/// Bytes in binary units with the exact count: `3.9 KiB (4,012 B)`; just `512 B` below 1 KiB.
pub fn bytes_exact(n: u64) -> String {
    if n < 1024 {
        bytes(n)
    } else {
        format!("{} ({} B)", bytes(n), count(n))
    }
}

/// `io 12, no-space 3`, or `-` when empty.
pub fn by_name<K: fmt::Display>(m: &std::collections::BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {}", count(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Label/value pairs, labels padded to one width.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<w$}   {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(duration(Duration::from_secs(187)), "3m 07s");
        assert_eq!(bytes_exact(4096), "4.0 KiB (4,096 B)");
        assert_eq!(time_ms(0), "-");
        assert_eq!(time_ms(1_735_689_600_000), "2025-01-01T00:00:00Z");
        assert_eq!(time_ms(951_782_400_000 + 3_723_000), "2000-02-29T01:02:03Z");
        assert_eq!(span(999), "0s");
        assert_eq!(span(59_999), "59s");
        assert_eq!(span(187_000), "3m 07s");
        assert_eq!(span(7_620_000), "2h 07m");
        assert_eq!(span(273_600_000), "3d 04h");
    }

    #[test]
    fn keys_are_quoted_and_escaped() {
        assert_eq!(key(b"capital of France?"), r#""capital of France?""#);
        assert_eq!(key("naïve \"q\"".as_bytes()), r#""naïve \"q\"""#);
        assert_eq!(key(b"a\nb\x1b[31m"), r#""a\nb\u{1b}[31m""#);
        assert_eq!(key(b"\xff\x00k"), r#""\xff\x00k""#);
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(["", "a", "total"]);
        t.row("requests", ["1", "1,000"]);
        t.row("hits", ["22", "3"]);
        let s = t.to_string();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "            a   total");
        assert_eq!(lines[1], "-".repeat(21));
        assert_eq!(lines[2], "requests    1   1,000");
        assert_eq!(lines[3], "hits       22       3");
    }
}
