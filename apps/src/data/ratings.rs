//! Reader for `user item rating` triplets.
//!
//! Three layouts are read, one per file:
//!
//! - [`RatingsFormat::Whitespace`]: `user item rating`, separated by spaces or
//!   tabs (what [`synth_ratings`](super::synth::synth_ratings) writes);
//! - [`RatingsFormat::Csv`]: `user,item,rating`; a first line whose first field
//!   is not a number is a header and is skipped (`userId,movieId,rating,...`);
//! - [`RatingsFormat::MovieLens`]: `user::item::rating` (MovieLens `.dat`).
//!
//! [`RatingsFormat::Auto`] picks the layout from the first data line: `::`
//! means MovieLens, else `,` means CSV, else whitespace. Fields after the
//! third (such as timestamps) are ignored. Blank lines and lines starting with
//! `#` are skipped. Users and items are non-negative integers that fit in 32
//! bits, ratings finite numbers. A malformed line is a
//! [`RatingsError::Parse`] naming the file and the line number.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::lines::{show, LineReader};
use super::shard::{self, ByteRange, ShardError, ShardInput};
use super::Location;

/// One rating.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rating {
    /// User id as written in the file.
    pub user: u32,
    /// Item id as written in the file.
    pub item: u32,
    /// The rating.
    pub value: f32,
}

/// Layout of a ratings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RatingsFormat {
    /// Decide from the first data line.
    #[default]
    Auto,
    /// Fields separated by spaces or tabs.
    Whitespace,
    /// Fields separated by `,`, optional header line.
    Csv,
    /// Fields separated by `::`.
    MovieLens,
}

impl RatingsFormat {
    fn detect(line: &[u8]) -> RatingsFormat {
        if line.windows(2).any(|w| w == b"::") {
            RatingsFormat::MovieLens
        } else if line.contains(&b',') {
            RatingsFormat::Csv
        } else {
            RatingsFormat::Whitespace
        }
    }
}

/// What is wrong with a ratings line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatingsProblem {
    /// The line has fewer than three fields; names the first missing one.
    MissingField(&'static str),
    /// The user is not a non-negative 32-bit integer.
    BadUser(String),
    /// The item is not a non-negative 32-bit integer.
    BadItem(String),
    /// The rating is not a finite number.
    BadRating(String),
}

impl fmt::Display for RatingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RatingsProblem::MissingField(field) => {
                write!(f, "missing {field} (expected `user item rating`)")
            }
            RatingsProblem::BadUser(t) => {
                write!(f, "bad user `{t}` (expected a non-negative integer)")
            }
            RatingsProblem::BadItem(t) => {
                write!(f, "bad item `{t}` (expected a non-negative integer)")
            }
            RatingsProblem::BadRating(t) => {
                write!(f, "bad rating `{t}` (expected a finite number)")
            }
        }
    }
}

/// Errors of the ratings reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RatingsError {
    /// Reading failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A line is malformed.
    #[error("{at}: {problem}")]
    Parse {
        /// The file and line.
        at: Location,
        /// What is wrong.
        problem: RatingsProblem,
    },
    /// The shard could not be computed or opened.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// Splits `line` into its first three fields; returns how many were found.
fn first_fields(line: &[u8], format: RatingsFormat) -> ([&[u8]; 3], usize) {
    let mut out: [&[u8]; 3] = [&[]; 3];
    let mut n = 0;
    match format {
        RatingsFormat::Whitespace | RatingsFormat::Auto => {
            for f in super::lines::fields(line).take(3) {
                out[n] = f;
                n += 1;
            }
        }
        RatingsFormat::Csv => {
            for f in line.split(|&b| b == b',').take(3) {
                out[n] = trim(f);
                n += 1;
            }
        }
        RatingsFormat::MovieLens => {
            let mut rest = line;
            while n < 3 {
                match rest.windows(2).position(|w| w == b"::") {
                    Some(i) => {
                        out[n] = trim(&rest[..i]);
                        rest = &rest[i + 2..];
                    }
                    None => {
                        out[n] = trim(rest);
                        n += 1;
                        break;
                    }
                }
                n += 1;
            }
        }
    }
    // An empty trailing field counts as missing.
    while n > 0 && out[n - 1].is_empty() {
        n -= 1;
    }
    (out, n)
}

fn trim(f: &[u8]) -> &[u8] {
    let start = f
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(f.len());
    let end = f
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &f[start..end]
}

fn parse_id(t: &[u8]) -> Option<u32> {
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

fn is_skipped(line: &[u8]) -> bool {
    let t = trim(line);
    t.is_empty() || t[0] == b'#'
}

/// Parses one data line in a known layout (`Auto` is read as whitespace).
/// Returns `Ok(None)` for a blank or `#` comment line.
pub fn parse_rating_line(
    line: &[u8],
    format: RatingsFormat,
) -> Result<Option<Rating>, RatingsProblem> {
    if is_skipped(line) {
        return Ok(None);
    }
    let (f, n) = first_fields(line, format);
    if n < 3 {
        return Err(RatingsProblem::MissingField(["user", "item", "rating"][n]));
    }
    let user = parse_id(f[0]).ok_or_else(|| RatingsProblem::BadUser(show(f[0])))?;
    let item = parse_id(f[1]).ok_or_else(|| RatingsProblem::BadItem(show(f[1])))?;
    let value = std::str::from_utf8(f[2])
        .ok()
        .and_then(|s| s.parse::<f32>().ok())
        .filter(|v| v.is_finite())
        .ok_or_else(|| RatingsProblem::BadRating(show(f[2])))?;
    Ok(Some(Rating { user, item, value }))
}

/// Streaming ratings reader over any [`BufRead`].
#[derive(Debug)]
pub struct RatingsReader<R> {
    lines: LineReader<R>,
    format: RatingsFormat,
    /// A header may still come: reading from the start of the file and no
    /// data line seen yet.
    header_possible: bool,
}

impl RatingsReader<BufReader<File>> {
    /// Opens the file at `path`.
    pub fn open(path: &Path, format: RatingsFormat) -> Result<Self, RatingsError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| RatingsError::Io {
            file: name.clone(),
            source,
        })?;
        Ok(Self::new(
            BufReader::with_capacity(1 << 18, f),
            name,
            format,
        ))
    }
}

impl RatingsReader<ShardInput> {
    /// Opens the part of the file at `path` that rank `rank` of `world` reads
    /// (see [`shard`]). Only rank 0 can see a CSV header.
    pub fn open_shard(
        path: &Path,
        rank: usize,
        world: usize,
        format: RatingsFormat,
    ) -> Result<Self, RatingsError> {
        let range = shard::shard(path, rank, world)?;
        Self::open_range(path, range, format)
    }

    /// Opens `range` of the file at `path`; `range` must start on a line.
    pub fn open_range(
        path: &Path,
        range: ByteRange,
        format: RatingsFormat,
    ) -> Result<Self, RatingsError> {
        let input = shard::open_range(path, range)?;
        Ok(RatingsReader {
            lines: LineReader::with_range(
                input,
                path.display().to_string(),
                Some(path.to_path_buf()),
                range.start,
            ),
            format,
            header_possible: range.start == 0,
        })
    }
}

impl<R: BufRead> RatingsReader<R> {
    /// Reads from `inner` (the start of a file); `name` names it in errors.
    pub fn new(inner: R, name: impl Into<String>, format: RatingsFormat) -> Self {
        RatingsReader {
            lines: LineReader::new(inner, name.into()),
            format,
            header_possible: true,
        }
    }

    /// The layout in use; `Auto` until the first data line was read.
    pub fn format(&self) -> RatingsFormat {
        self.format
    }

    /// Reads the next rating; `Ok(None)` at the end of the input.
    pub fn read_rating(&mut self) -> Result<Option<Rating>, RatingsError> {
        loop {
            let more = self.lines.next_line().map_err(|source| RatingsError::Io {
                file: self.lines.name().to_string(),
                source,
            })?;
            if !more {
                return Ok(None);
            }
            let line = self.lines.line();
            if is_skipped(line) {
                continue;
            }
            if self.format == RatingsFormat::Auto {
                self.format = RatingsFormat::detect(line);
            }
            if self.header_possible {
                self.header_possible = false;
                if self.format == RatingsFormat::Csv {
                    let (f, n) = first_fields(line, RatingsFormat::Csv);
                    if n > 0
                        && std::str::from_utf8(f[0])
                            .ok()
                            .and_then(|s| s.parse::<f64>().ok())
                            .is_none()
                    {
                        continue;
                    }
                }
            }
            return parse_rating_line(line, self.format).map_err(|problem| RatingsError::Parse {
                at: self.lines.location(),
                problem,
            });
        }
    }
}

impl<R: BufRead> Iterator for RatingsReader<R> {
    type Item = Result<Rating, RatingsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_rating().transpose()
    }
}

/// Reads every rating of the file at `path`.
pub fn load(path: &Path, format: RatingsFormat) -> Result<Vec<Rating>, RatingsError> {
    RatingsReader::open(path, format)?.collect()
}

/// Reads the ratings of rank `rank` of `world` of the file at `path`.
pub fn load_shard(
    path: &Path,
    rank: usize,
    world: usize,
    format: RatingsFormat,
) -> Result<Vec<Rating>, RatingsError> {
    RatingsReader::open_shard(path, rank, world, format)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    fn r(user: u32, item: u32, value: f32) -> Rating {
        Rating { user, item, value }
    }

    fn read(text: &str, format: RatingsFormat) -> Result<Vec<Rating>, RatingsError> {
        RatingsReader::new(text.as_bytes(), "r.txt", format).collect()
    }

    #[test]
    fn reads_whitespace_csv_and_movielens() {
        let expected = vec![r(1, 2, 3.5), r(4, 5, 1.0)];
        for (text, format) in [
            ("1 2 3.5\n4\t5  1\n", RatingsFormat::Whitespace),
            ("1,2,3.5\n4, 5 ,1\n", RatingsFormat::Csv),
            ("1::2::3.5\n4::5::1\n", RatingsFormat::MovieLens),
        ] {
            assert_eq!(read(text, format).unwrap(), expected, "{format:?}");
            let mut reader = RatingsReader::new(text.as_bytes(), "r", RatingsFormat::Auto);
            let got: Vec<Rating> = (&mut reader).collect::<Result<_, _>>().unwrap();
            assert_eq!(got, expected, "auto for {format:?}");
            assert_eq!(reader.format(), format);
        }
    }

    #[test]
    fn ignores_extra_fields_comments_blank_lines_and_crlf() {
        let text = "# users items ratings\n\n1::10::5::978300760\r\n2::20::3::978302109\r\n";
        assert_eq!(
            read(text, RatingsFormat::Auto).unwrap(),
            vec![r(1, 10, 5.0), r(2, 20, 3.0)]
        );
        let csv = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n";
        assert_eq!(read(csv, RatingsFormat::Auto).unwrap(), vec![r(1, 31, 2.5)]);
        assert_eq!(read(csv, RatingsFormat::Csv).unwrap(), vec![r(1, 31, 2.5)]);
        assert_eq!(read("", RatingsFormat::Auto).unwrap(), vec![]);
    }

    #[test]
    fn header_only_allowed_first_and_for_csv() {
        // A second non-numeric line is an error.
        let err = read("user,item,rating\nu,i,r\n", RatingsFormat::Csv).unwrap_err();
        match err {
            RatingsError::Parse { at, problem } => {
                assert_eq!(at.line, Some(2));
                assert_eq!(problem, RatingsProblem::BadUser("u".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Whitespace files have no header.
        let err = read("user item rating\n1 2 3\n", RatingsFormat::Whitespace).unwrap_err();
        assert!(matches!(
            err,
            RatingsError::Parse {
                problem: RatingsProblem::BadUser(_),
                ..
            }
        ));
    }

    #[test]
    fn malformed_lines_give_line_numbers() {
        let cases: Vec<(&str, RatingsFormat, u64, RatingsProblem)> = vec![
            (
                "1 2 3\n1 2\n",
                RatingsFormat::Whitespace,
                2,
                RatingsProblem::MissingField("rating"),
            ),
            (
                "1\n",
                RatingsFormat::Whitespace,
                1,
                RatingsProblem::MissingField("item"),
            ),
            (
                "1 2 3\n\n-1 2 3\n",
                RatingsFormat::Whitespace,
                3,
                RatingsProblem::BadUser("-1".into()),
            ),
            (
                "1 x 3\n",
                RatingsFormat::Whitespace,
                1,
                RatingsProblem::BadItem("x".into()),
            ),
            (
                "1 99999999999 3\n",
                RatingsFormat::Whitespace,
                1,
                RatingsProblem::BadItem("99999999999".into()),
            ),
            (
                "1 2 abc\n",
                RatingsFormat::Whitespace,
                1,
                RatingsProblem::BadRating("abc".into()),
            ),
            (
                "1 2 inf\n",
                RatingsFormat::Whitespace,
                1,
                RatingsProblem::BadRating("inf".into()),
            ),
            (
                "1,2,\n",
                RatingsFormat::Csv,
                1,
                RatingsProblem::MissingField("rating"),
            ),
            (
                "1,2,3\n1,,3\n",
                RatingsFormat::Csv,
                2,
                RatingsProblem::BadItem("".into()),
            ),
            (
                "1::2\n",
                RatingsFormat::MovieLens,
                1,
                RatingsProblem::MissingField("rating"),
            ),
            (
                "1::2::x::4\n",
                RatingsFormat::MovieLens,
                1,
                RatingsProblem::BadRating("x".into()),
            ),
        ];
        for (text, format, line, problem) in cases {
            match read(text, format) {
                Err(RatingsError::Parse { at, problem: got }) => {
                    assert_eq!(got, problem, "{text:?}");
                    assert_eq!(at.line, Some(line), "{text:?}");
                    let msg = RatingsError::Parse { at, problem: got }.to_string();
                    assert!(msg.starts_with(&format!("r.txt:{line}: ")), "{msg}");
                }
                other => panic!("{text:?}: expected parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn shards_cover_each_rating_once() {
        let dir = TempDir::new("ratings-shard");
        let path = dir.path().join("r.csv");
        let mut text = String::from("userId,movieId,rating\n");
        for i in 0..300u32 {
            text.push_str(&format!("{},{},{}\n", i, i * 7 % 13, (i % 5) + 1));
        }
        std::fs::write(&path, &text).unwrap();
        for world in 1..=8 {
            let mut users = Vec::new();
            for rank in 0..world {
                let got = load_shard(&path, rank, world, RatingsFormat::Auto).unwrap();
                users.extend(got.iter().map(|r| r.user));
            }
            assert_eq!(users, (0..300).collect::<Vec<u32>>(), "world {world}");
        }
        assert_eq!(load(&path, RatingsFormat::Csv).unwrap().len(), 300);
    }

    #[test]
    fn missing_file_is_typed() {
        let dir = TempDir::new("ratings-missing");
        let err = load(&dir.path().join("none.txt"), RatingsFormat::Auto).unwrap_err();
        assert!(matches!(err, RatingsError::Io { .. }));
        assert!(err.to_string().contains("none.txt"));
    }

    fn any_format() -> impl proptest::strategy::Strategy<Value = RatingsFormat> {
        proptest::prop_oneof![
            proptest::strategy::Just(RatingsFormat::Auto),
            proptest::strategy::Just(RatingsFormat::Whitespace),
            proptest::strategy::Just(RatingsFormat::Csv),
            proptest::strategy::Just(RatingsFormat::MovieLens),
        ]
    }

    proptest::proptest! {
        #[test]
        fn line_parser_never_panics_on_arbitrary_bytes(
            line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            format in any_format(),
        ) {
            if let Ok(Some(r)) = parse_rating_line(&line, format) {
                proptest::prop_assert!(r.value.is_finite());
            }
        }

        #[test]
        fn line_parser_never_panics_on_number_like_text(
            line in "[0-9:,. \t#+eE-]{0,60}",
            format in any_format(),
        ) {
            let _ = parse_rating_line(line.as_bytes(), format);
        }

        #[test]
        fn reader_never_panics_on_arbitrary_bytes(
            text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            format in any_format(),
        ) {
            for r in RatingsReader::new(&text[..], "p", format) {
                match r {
                    Ok(r) => proptest::prop_assert!(r.value.is_finite()),
                    Err(RatingsError::Parse { at, .. }) => {
                        proptest::prop_assert_eq!(at.file, "p");
                        break;
                    }
                    Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
    }
}
