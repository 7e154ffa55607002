//! Splitting a line-oriented file between ranks by byte ranges.
//!
//! Rank `r` of `world` owns the lines whose **first byte** lies in
//! `[s_r, s_{r+1})`, where `s_0 = 0`, `s_world = size`, and for `0 < r < world`
//! `s_r` is the first line start at or after `p_r = size * r / world` (a line
//! starts at offset 0 and right after every `\n`). Because every `s_r` is a
//! line start and `s_r` never decreases with `r`, the ranges partition the file
//! into whole lines: each line, hence each example, belongs to exactly one
//! rank. Some ranges may be empty (tiny files, `world` larger than the number
//! of lines, very long lines).
//!
//! Finding `s_r` reads only from `p_r - 1` to the next `\n`, so a rank computes
//! its own range by reading two short stretches of the file, never the whole
//! file.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A half-open byte range `[start, end)` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ByteRange {
    /// Offset of the first byte (a line start).
    pub start: u64,
    /// Offset one past the last byte (a line start, or the file size).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Errors of [`shard`] and [`open_range`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The file could not be opened, sized or read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// `world` is 0 or `rank` is not below `world`.
    #[error("invalid shard: rank {rank} of world {world} (need world >= 1 and rank < world)")]
    InvalidRank {
        /// The rank asked for.
        rank: usize,
        /// The number of ranks.
        world: usize,
    },
    /// The range does not fit in the file.
    #[error("{file}: byte range {start}..{end} is outside the file ({size} bytes)")]
    OutOfFile {
        /// The file.
        file: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// Size of the file.
        size: u64,
    },
}

/// A buffered reader over one byte range of a file.
pub type ShardInput = BufReader<io::Take<File>>;

/// The byte range of the file at `path` that rank `rank` of `world` reads.
///
/// See the module documentation for the convention; the ranges of ranks
/// `0..world` partition the file on line boundaries.
pub fn shard(path: &Path, rank: usize, world: usize) -> Result<ByteRange, ShardError> {
    check_rank(rank, world)?;
    let io_err = |source| ShardError::Io {
        file: path.display().to_string(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let size = f.metadata().map_err(io_err)?.len();
    range_of(&mut f, size, rank, world).map_err(io_err)
}

/// [`shard`] over any seekable input of `size` bytes.
pub fn shard_of<R: Read + Seek>(
    input: &mut R,
    size: u64,
    rank: usize,
    world: usize,
) -> Result<ByteRange, ShardError> {
    check_rank(rank, world)?;
    range_of(input, size, rank, world).map_err(|source| ShardError::Io {
        file: "(input)".to_string(),
        source,
    })
}

/// Opens the file at `path` for reading only `range`.
pub fn open_range(path: &Path, range: ByteRange) -> Result<ShardInput, ShardError> {
    let file = path.display().to_string();
    let io_err = |source| ShardError::Io {
        file: file.clone(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let size = f.metadata().map_err(io_err)?.len();
    if range.start > range.end || range.end > size {
        return Err(ShardError::OutOfFile {
            file,
            start: range.start,
            end: range.end,
            size,
        });
    }
    f.seek(SeekFrom::Start(range.start)).map_err(io_err)?;
    Ok(BufReader::with_capacity(1 << 18, f.take(range.len())))
}

/// [`shard`] followed by [`open_range`].
pub fn open_shard(
    path: &Path,
    rank: usize,
    world: usize,
) -> Result<(ShardInput, ByteRange), ShardError> {
    let range = shard(path, rank, world)?;
    Ok((open_range(path, range)?, range))
}

fn check_rank(rank: usize, world: usize) -> Result<(), ShardError> {
    if world == 0 || rank >= world {
        return Err(ShardError::InvalidRank { rank, world });
    }
    Ok(())
}

fn range_of<R: Read + Seek>(
    input: &mut R,
    size: u64,
    rank: usize,
    world: usize,
) -> io::Result<ByteRange> {
    let start = boundary(input, size, rank, world)?;
    let end = boundary(input, size, rank + 1, world)?;
    Ok(ByteRange { start, end })
}

/// `s_r`: the first line start at or after `size * r / world`.
fn boundary<R: Read + Seek>(input: &mut R, size: u64, r: usize, world: usize) -> io::Result<u64> {
    if r == 0 {
        return Ok(0);
    }
    if r >= world {
        return Ok(size);
    }
    let p = (u128::from(size) * r as u128 / world as u128) as u64;
    if p == 0 {
        return Ok(0);
    }
    // p is a line start iff the byte before it is '\n'; scanning from p - 1
    // for the first '\n' covers both cases.
    let mut at = p - 1;
    input.seek(SeekFrom::Start(at))?;
    let mut chunk = [0u8; 8192];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
            return Ok((at + i as u64 + 1).min(size));
        }
        at += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// The lines of `data` (each with its terminator) that start in `range`.
    fn lines_in(data: &[u8], range: ByteRange) -> Vec<Vec<u8>> {
        data[range.start as usize..range.end as usize]
            .split_inclusive(|&b| b == b'\n')
            .map(|l| l.to_vec())
            .collect()
    }

    fn all_lines(data: &[u8]) -> Vec<Vec<u8>> {
        data.split_inclusive(|&b| b == b'\n')
            .map(|l| l.to_vec())
            .collect()
    }

    fn is_line_start(data: &[u8], off: u64) -> bool {
        off == 0 || off as usize == data.len() || data[off as usize - 1] == b'\n'
    }

    /// Checks that the ranges for `world` partition `data` into whole lines.
    fn check_partition(data: &[u8], world: usize) {
        let mut cur = Cursor::new(data);
        let mut expected_start = 0u64;
        let mut got = Vec::new();
        for rank in 0..world {
            let r = shard_of(&mut cur, data.len() as u64, rank, world).unwrap();
            assert_eq!(
                r.start, expected_start,
                "rank {rank} of {world}: gap or overlap"
            );
            assert!(r.start <= r.end);
            assert!(is_line_start(data, r.start), "rank {rank}: start mid-line");
            assert!(is_line_start(data, r.end), "rank {rank}: end mid-line");
            got.extend(lines_in(data, r));
            expected_start = r.end;
        }
        assert_eq!(
            expected_start,
            data.len() as u64,
            "world {world}: tail not covered"
        );
        assert_eq!(got, all_lines(data), "world {world}: lines differ");
    }

    #[test]
    fn partitions_edge_cases_for_worlds_1_to_8() {
        let long = format!("{}\nshort\n", "x".repeat(20_000));
        let cases: Vec<&[u8]> = vec![
            b"",
            b"\n",
            b"a",
            b"a\n",
            b"\n\n\n",
            b"1 1:1\n-1 2:1\n1 3:1",
            b"1 1:1\n\n\n-1 2:1\n\n1 3:1\n",
            b"one line that is much longer than the others\nb\nc\n",
            b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n",
            long.as_bytes(),
        ];
        for data in cases {
            for world in 1..=8 {
                check_partition(data, world);
            }
        }
    }

    #[test]
    fn world_larger_than_lines_gives_empty_ranges() {
        let data = b"a\nb\n";
        let mut cur = Cursor::new(&data[..]);
        let ranges: Vec<ByteRange> = (0..8)
            .map(|r| shard_of(&mut cur, 4, r, 8).unwrap())
            .collect();
        assert_eq!(ranges.iter().filter(|r| !r.is_empty()).count(), 2);
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<u64>(), 4);
    }

    #[test]
    fn one_rank_gets_everything() {
        let data = b"a\nbb\nccc";
        let mut cur = Cursor::new(&data[..]);
        let r = shard_of(&mut cur, data.len() as u64, 0, 1).unwrap();
        assert_eq!(r, ByteRange { start: 0, end: 8 });
    }

    #[test]
    fn splits_near_the_proportional_point() {
        // 100 lines of 10 bytes: each of 4 ranks gets exactly 25 lines.
        let data: Vec<u8> = (0..100)
            .flat_map(|i| format!("line {i:04}\n").into_bytes())
            .collect();
        assert_eq!(data.len(), 1000);
        let mut cur = Cursor::new(&data);
        for rank in 0..4 {
            let r = shard_of(&mut cur, 1000, rank, 4).unwrap();
            assert_eq!(r.len(), 250, "rank {rank}: {r:?}");
        }
    }

    #[test]
    fn rejects_bad_rank() {
        let mut cur = Cursor::new(&b"a\n"[..]);
        assert!(matches!(
            shard_of(&mut cur, 2, 2, 2),
            Err(ShardError::InvalidRank { rank: 2, world: 2 })
        ));
        assert!(matches!(
            shard_of(&mut cur, 2, 0, 0),
            Err(ShardError::InvalidRank { rank: 0, world: 0 })
        ));
    }

    #[test]
    fn file_shards_read_back_every_line_once() {
        let dir = TempDir::new("shard");
        let path = dir.path().join("f.txt");
        let data: Vec<u8> = (0..1000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        std::fs::write(&path, &data).unwrap();
        for world in 1..=8 {
            let mut seen = Vec::new();
            for rank in 0..world {
                let (mut input, range) = open_shard(&path, rank, world).unwrap();
                let mut text = String::new();
                input.read_to_string(&mut text).unwrap();
                assert_eq!(text.len() as u64, range.len());
                seen.extend(text.lines().map(|l| l.parse::<u32>().unwrap()));
            }
            assert_eq!(seen, (0..1000).collect::<Vec<u32>>(), "world {world}");
        }
    }

    #[test]
    fn missing_file_and_bad_range_are_typed_errors() {
        let dir = TempDir::new("shard-missing");
        let path = dir.path().join("nope.txt");
        let err = shard(&path, 0, 1).unwrap_err();
        assert!(matches!(err, ShardError::Io { .. }));
        assert!(err.to_string().contains("nope.txt"));
        let path = dir.path().join("f.txt");
        std::fs::write(&path, b"abc\n").unwrap();
        let err = open_range(&path, ByteRange { start: 0, end: 10 }).unwrap_err();
        assert!(matches!(err, ShardError::OutOfFile { size: 4, .. }));
    }

    proptest! {
        #[test]
        fn ranges_partition_arbitrary_text(
            lines in proptest::collection::vec("[a-z :]{0,30}", 0..40),
            trailing in any::<bool>(),
            world in 1usize..=8,
        ) {
            let mut data = lines.join("\n");
            if trailing && !data.is_empty() {
                data.push('\n');
            }
            check_partition(data.as_bytes(), world);
        }
    }
}
