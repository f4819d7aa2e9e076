//! A small aligned-column table printer for the client commands' human output.
//!
//! Columns are padded to their widest cell (counted in characters); numeric columns may be
//! right-aligned. No borders: the output reads like `docker ps` and greps well.

use std::fmt;

/// How a column's cells are aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right (text).
    Left,
    /// Padded on the left (numbers).
    Right,
}

/// A table: a header row and data rows of the same width.
#[derive(Clone, Debug)]
pub struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

/// Text shown for a missing value.
pub const NONE: &str = "-";

/// The spaces between two columns.
const GAP: &str = "  ";

impl Table {
    /// A table with these column headers, all left-aligned.
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let aligns = vec![Align::Left; headers.len()];
        Self {
            headers,
            aligns,
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at these indexes (out-of-range indexes are ignored).
    pub fn right_align(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(a) = self.aligns.get_mut(c) {
                *a = Align::Right;
            }
        }
        self
    }

    /// Appends a row; missing cells are shown as [`NONE`], extra cells are dropped.
    pub fn push<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| sanitize(c.into()))
            .collect();
        row.resize(self.headers.len(), NONE.to_owned());
        self.rows.push(row);
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    fn write_row(
        f: &mut fmt::Formatter<'_>,
        cells: &[String],
        widths: &[usize],
        aligns: &[Align],
    ) -> fmt::Result {
        let mut line = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, ((cell, &width), &align)) in cells.iter().zip(widths).zip(aligns).enumerate() {
            if i > 0 {
                line.push_str(GAP);
            }
            let pad = width.saturating_sub(cell.chars().count());
            match align {
                Align::Left => {
                    line.push_str(cell);
                    // No trailing blanks after the last column.
                    if i != last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
        }
        writeln!(f, "{}", line.trim_end())
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        Self::write_row(f, &self.headers, &widths, &self.aligns)?;
        for row in &self.rows {
            Self::write_row(f, row, &widths, &self.aligns)?;
        }
        Ok(())
    }
}

/// Cells are one line: control characters (newlines, tabs, escapes) become spaces, and an
/// empty cell shows [`NONE`] so columns never collapse.
fn sanitize(cell: String) -> String {
    let clean: String = cell
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.trim().is_empty() {
        NONE.to_owned()
    } else {
        clean
    }
}

/// Prints `key: value` pairs with the keys padded to one width (the detail view of one item).
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = sanitize(value.clone());
        let label = format!("{key}:");
        out.push_str(&format!("{label:<w$}  {value}\n", w = width + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut t = Table::new(["ID", "STATUS", "CPU"]).right_align(&[2]);
        t.push(["a", "running", "1.5"]);
        t.push(["bbbb", "ok", "12"]);
        let text = t.to_string();
        assert_eq!(
            text,
            "ID    STATUS   CPU\n\
             a     running  1.5\n\
             bbbb  ok        12\n"
        );
    }

    #[test]
    fn missing_empty_and_multiline_cells_keep_the_grid() {
        let mut t = Table::new(["A", "B", "C"]);
        t.push(["x"]);
        t.push(["line1\nline2", "", "z", "dropped"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "x            -  -");
        assert_eq!(lines[2], "line1 line2  -  z");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut t = Table::new(["NAME", "X"]);
        t.push(["é", "1"]);
        assert_eq!(t.to_string().lines().nth(1), Some("é     1"));
    }

    #[test]
    fn key_values_align_the_values() {
        let text = key_values(&[("id", "1".into()), ("status", "ok".into())]);
        assert_eq!(text, "id:      1\nstatus:  ok\n");
    }
}
