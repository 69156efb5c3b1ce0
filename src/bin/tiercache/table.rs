//! Aligned plain-text tables and the number formats the CLI prints.

use std::fmt;
use std::time::Duration;

/// One row: a label and its values.
#[derive(Debug, Clone)]
struct Row {
    label: String,
    cells: Vec<String>,
}

/// A table whose first column is left-aligned and whose other columns are right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Row>,
}

impl Table {
    /// A table with these column headers (the first one heads the label column).
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
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
                out.push_str(&format!("   {c:>width$}", width = w[i + 1]));
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
        if i > 0 && (digits.len() - i) % 3 == 0 {
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
