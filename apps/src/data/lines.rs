//! Line reading shared by the text readers: one reused buffer, line numbers
//! and byte offsets for error locations, also when reading a shard.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::PathBuf;

use super::Location;

/// Reads lines into one reused buffer and keeps track of where they are.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    name: String,
    /// The file the bytes come from, when known: used to count the lines
    /// before `start` for error messages.
    path: Option<PathBuf>,
    /// Offset in the file of the first byte `inner` yields.
    start: u64,
    /// Offset in the file of the next unread byte.
    pos: u64,
    /// Offset in the file of the current line.
    line_start: u64,
    /// Lines read from `inner` so far (the current line's 1-based number
    /// counted from `start`).
    lines: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Reads `inner` from the beginning of a file named `name`.
    pub(crate) fn new(inner: R, name: String) -> Self {
        Self::with_range(inner, name, None, 0)
    }

    /// Reads `inner`, whose first byte is at offset `start` of the file at
    /// `path` (named `name` in messages).
    pub(crate) fn with_range(inner: R, name: String, path: Option<PathBuf>, start: u64) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(4096),
            name,
            path,
            start,
            pos: start,
            line_start: start,
            lines: 0,
        }
    }

    /// Reads the next line (without `\n` or `\r\n`); `false` at the end.
    pub(crate) fn next_line(&mut self) -> io::Result<bool> {
        self.buf.clear();
        let n = self.inner.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line_start = self.pos;
        self.pos += n as u64;
        self.lines += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(true)
    }

    /// The current line.
    pub(crate) fn line(&self) -> &[u8] {
        &self.buf
    }
}

impl<R> LineReader<R> {
    /// The name used in messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Offset in the file of the next unread byte.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// 1-based number of the current line counted from the start of this
    /// reader.
    pub(crate) fn lines_read(&self) -> u64 {
        self.lines
    }

    /// Where the current line is. For a reader over a byte range, the lines
    /// before the range are counted now (this only happens on the error path).
    pub(crate) fn location(&self) -> Location {
        let line = if self.start == 0 {
            Some(self.lines)
        } else {
            self.path
                .as_ref()
                .and_then(|p| count_newlines(p, self.start).ok())
                .map(|before| before + self.lines)
        };
        Location {
            file: self.name.clone(),
            line,
            byte: self.line_start,
        }
    }
}

/// Number of `\n` bytes in the first `len` bytes of the file.
fn count_newlines(path: &std::path::Path, len: u64) -> io::Result<u64> {
    let mut f = File::open(path)?.take(len);
    let mut chunk = vec![0u8; 1 << 16];
    let mut count = 0u64;
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            return Ok(count);
        }
        count += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Splits on spaces and tabs, skipping empty fields.
pub(crate) fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
}

/// `text` for a message: lossy UTF-8, cut to a readable length.
pub(crate) fn show(text: &[u8]) -> String {
    const MAX: usize = 40;
    let s = String::from_utf8_lossy(text);
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    #[test]
    fn strips_terminators_and_counts_lines() {
        let data = b"a\r\nbb\n\nccc";
        let mut r = LineReader::new(&data[..], "t".into());
        let mut got = Vec::new();
        while r.next_line().unwrap() {
            got.push((r.line().to_vec(), r.location()));
        }
        let lines: Vec<&[u8]> = got.iter().map(|(l, _)| l.as_slice()).collect();
        assert_eq!(lines, vec![&b"a"[..], b"bb", b"", b"ccc"]);
        let locs: Vec<(Option<u64>, u64)> = got.iter().map(|(_, l)| (l.line, l.byte)).collect();
        assert_eq!(
            locs,
            vec![(Some(1), 0), (Some(2), 3), (Some(3), 6), (Some(4), 7)]
        );
        assert_eq!(r.position(), data.len() as u64);
    }

    #[test]
    fn range_reader_reports_absolute_lines() {
        let dir = TempDir::new("lines");
        let path = dir.path().join("f.txt");
        std::fs::write(&path, b"l1\nl2\nl3\nl4\n").unwrap();
        // Start at "l3".
        let r = LineReader::with_range(&b"l3\nl4\n"[..], "f.txt".into(), Some(path.clone()), 6);
        let mut r = r;
        assert!(r.next_line().unwrap());
        assert!(r.next_line().unwrap());
        let loc = r.location();
        assert_eq!(loc.line, Some(4));
        assert_eq!(loc.byte, 9);
        assert_eq!(loc.to_string(), "f.txt:4");
        // Without a path the byte offset still locates the line.
        let mut r = LineReader::with_range(&b"l3\n"[..], "f.txt".into(), None, 6);
        assert!(r.next_line().unwrap());
        let loc = r.location();
        assert_eq!(loc.line, None);
        assert_eq!(loc.to_string(), "f.txt (line starting at byte 6)");
    }

    #[test]
    fn fields_skip_repeated_separators() {
        let got: Vec<&[u8]> = fields(b" a\t\tb  c ").collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn show_cuts_long_text() {
        assert_eq!(show(b"abc"), "abc");
        let long = vec![b'x'; 100];
        assert_eq!(show(&long).len(), 43);
    }
}
