//! Slurm host lists (`SLURM_STEP_NODELIST`, `SLURM_JOB_NODELIST`): the first
//! host, and whether there are others.
//!
//! A list is comma-separated entries; an entry is a host name in which
//! bracket expressions stand for numbers: `node[007-010,012],gpu3` is
//! node007, node008, node009, node010, node012 and gpu3. A range keeps the
//! zero padding of its low bound. An entry may hold several bracket
//! expressions (`rack[1-2]n[01-04]`); the first host takes the first number
//! of each. Ranges are never expanded, so the work is linear in the length
//! of the text, which is itself bounded ([`MAX_LEN`]).

use std::fmt;

/// The longest list accepted, in bytes: Linux limits one environment
/// string to 128 KiB.
pub const MAX_LEN: usize = 128 * 1024;
/// The most digits of one number in a bracket expression.
const MAX_DIGITS: usize = 18;
/// The longest host name (RFC 1035 limits a name to 255 bytes).
const MAX_HOST: usize = 255;

/// Why a host list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Nothing in it.
    Empty,
    /// Longer than [`MAX_LEN`] bytes.
    TooLong(usize),
    /// An empty entry (two commas in a row, or a comma at either end).
    EmptyEntry,
    /// A character that has no place in a host list, at this byte offset.
    BadChar(char, usize),
    /// A `[` without its `]`.
    Unclosed,
    /// A `]` without its `[`.
    Unopened,
    /// `[` inside brackets.
    Nested,
    /// `[]`, or an empty item such as `[1,]` or `[-3]`.
    EmptyRange,
    /// A number in brackets longer than 18 digits.
    LongNumber,
    /// A range whose low bound is above its high bound, such as `[9-3]`.
    Backwards(String),
    /// The first host name is longer than 255 bytes.
    LongHost,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Empty => f.write_str("it is empty"),
            Reason::TooLong(n) => write!(f, "it is {n} bytes long (at most {MAX_LEN})"),
            Reason::EmptyEntry => f.write_str("it has an empty entry"),
            Reason::BadChar(c, at) => write!(f, "{c:?} at byte {at} has no place in a host list"),
            Reason::Unclosed => f.write_str("a '[' is not closed"),
            Reason::Unopened => f.write_str("a ']' has no '['"),
            Reason::Nested => f.write_str("brackets are nested"),
            Reason::EmptyRange => f.write_str("a bracket expression has an empty item"),
            Reason::LongNumber => {
                write!(f, "a number in brackets has more than {MAX_DIGITS} digits")
            }
            Reason::Backwards(r) => write!(f, "the range {r} goes backwards"),
            Reason::LongHost => write!(f, "the first host name is longer than {MAX_HOST} bytes"),
        }
    }
}

/// A host list that could not be read, with the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostlistError {
    /// The environment variable that held the list.
    pub var: String,
    /// The start of the list (at most 64 characters).
    pub value: String,
    /// What is wrong with it.
    pub reason: Reason,
}

impl fmt::Display for HostlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not a Slurm host list: {}",
            self.var, self.value, self.reason
        )
    }
}

impl std::error::Error for HostlistError {}

/// The first host of a well-formed list, and whether the list names more
/// than one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstHost {
    /// The first host, as Slurm expands it (`node[007-010]` → `node007`).
    pub host: String,
    /// The list names another host after it (more entries, or a bracket
    /// expression with more than one number).
    pub more: bool,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// Reads the list `list` taken from the variable `var`: checks all of it
/// and returns its first host.
pub fn first_host(var: &str, list: &str) -> Result<FirstHost, HostlistError> {
    parse(list).map_err(|reason| HostlistError {
        var: var.to_string(),
        value: list.chars().take(64).collect(),
        reason,
    })
}

fn parse(list: &str) -> Result<FirstHost, Reason> {
    let s = list.as_bytes();
    if s.len() > MAX_LEN {
        return Err(Reason::TooLong(s.len()));
    }
    if s.is_empty() {
        return Err(Reason::Empty);
    }
    let mut first = String::new();
    let mut more = false;
    let mut entry = 0usize; // index of the current entry
    let mut entry_len = 0usize; // bytes of the current entry so far
    let mut i = 0usize;
    while i < s.len() {
        let b = s[i];
        match b {
            b',' => {
                if entry_len == 0 {
                    return Err(Reason::EmptyEntry);
                }
                entry += 1;
                entry_len = 0;
                more = true;
                i += 1;
            }
            b'[' => {
                let (end, first_num, several) = bracket(s, i)?;
                if entry == 0 {
                    first.push_str(first_num);
                    more |= several;
                }
                entry_len += end + 1 - i;
                i = end + 1;
            }
            b']' => return Err(Reason::Unopened),
            b if is_name_byte(b) => {
                if entry == 0 {
                    first.push(b as char);
                }
                entry_len += 1;
                i += 1;
            }
            _ => return Err(Reason::BadChar(char_at(s, i), i)),
        }
        if entry == 0 && first.len() > MAX_HOST {
            return Err(Reason::LongHost);
        }
    }
    if entry_len == 0 {
        return Err(Reason::EmptyEntry);
    }
    Ok(FirstHost { host: first, more })
}

/// Checks the bracket expression opening at `s[open]`: returns the index of
/// its `]`, its first number as written (zero padding kept) and whether it
/// stands for more than one number.
fn bracket(s: &[u8], open: usize) -> Result<(usize, &str, bool), Reason> {
    let mut i = open + 1;
    let mut items = 0usize;
    let mut several = false;
    let mut first: Option<&[u8]> = None;
    loop {
        let (lo, next) = number(s, i)?;
        i = next;
        let mut hi = lo;
        if s.get(i) == Some(&b'-') {
            let (h, next) = number(s, i + 1)?;
            hi = h;
            i = next;
        }
        if value(hi) < value(lo) {
            let lo_s = String::from_utf8_lossy(lo);
            let hi_s = String::from_utf8_lossy(hi);
            return Err(Reason::Backwards(format!("{lo_s}-{hi_s}")));
        }
        several |= value(hi) > value(lo);
        items += 1;
        first.get_or_insert(lo);
        match s.get(i) {
            Some(b',') => i += 1,
            Some(b']') => break,
            Some(b'[') => return Err(Reason::Nested),
            None => return Err(Reason::Unclosed),
            // Within brackets only digits, '-' and ',' may appear.
            Some(_) => return Err(Reason::BadChar(char_at(s, i), i)),
        }
    }
    several |= items > 1;
    // Digits only: always UTF-8.
    let first = std::str::from_utf8(first.unwrap_or_default()).unwrap_or_default();
    Ok((i, first, several))
}

/// The digits starting at `s[at]` and the index after them.
fn number(s: &[u8], at: usize) -> Result<(&[u8], usize), Reason> {
    let mut end = at;
    while end < s.len() && s[end].is_ascii_digit() {
        end += 1;
        if end - at > MAX_DIGITS {
            return Err(Reason::LongNumber);
        }
    }
    if end == at {
        return match s.get(at) {
            None => Err(Reason::Unclosed),
            Some(b'[') => Err(Reason::Nested),
            Some(b']' | b',' | b'-') => Err(Reason::EmptyRange),
            Some(_) => Err(Reason::BadChar(char_at(s, at), at)),
        };
    }
    Ok((&s[at..end], end))
}

/// The character at byte `i` of the text `s` (only called where every
/// byte before `i` was ASCII, so `i` is a character boundary).
fn char_at(s: &[u8], i: usize) -> char {
    let end = s.len().min(i + 4);
    (i + 1..=end)
        .find_map(|e| std::str::from_utf8(&s[i..e]).ok())
        .and_then(|t| t.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The value of at most 18 ASCII digits.
fn value(digits: &[u8]) -> u64 {
    digits
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn first(list: &str) -> (String, bool) {
        let f = first_host("SLURM_STEP_NODELIST", list).unwrap_or_else(|e| panic!("{e}"));
        (f.host, f.more)
    }

    fn reason(list: &str) -> Reason {
        match first_host("SLURM_JOB_NODELIST", list) {
            Ok(f) => panic!("{list:?} was read as {f:?}"),
            Err(e) => {
                assert_eq!(e.var, "SLURM_JOB_NODELIST");
                assert!(e.to_string().contains("SLURM_JOB_NODELIST"), "{e}");
                e.reason
            }
        }
    }

    #[test]
    fn plain_names_and_lists() {
        assert_eq!(first("node1"), ("node1".into(), false));
        assert_eq!(first("a.example.org"), ("a.example.org".into(), false));
        assert_eq!(first("gpu-3,gpu-4"), ("gpu-3".into(), true));
        assert_eq!(first("x_1"), ("x_1".into(), false));
    }

    #[test]
    fn ranges_keep_their_zero_padding() {
        assert_eq!(first("node[007-010,012],gpu3"), ("node007".into(), true));
        assert_eq!(first("node[7-10]"), ("node7".into(), true));
        assert_eq!(first("n[01]"), ("n01".into(), false));
        assert_eq!(first("n[5-5]"), ("n5".into(), false));
        assert_eq!(first("n[5-5],m"), ("n5".into(), true));
        assert_eq!(first("n[3,1]"), ("n3".into(), true));
        assert_eq!(first("n[0000-0003]-ib"), ("n0000-ib".into(), true));
    }

    #[test]
    fn several_bracket_expressions_in_one_entry() {
        assert_eq!(first("rack[1-2]n[01-04]"), ("rack1n01".into(), true));
        assert_eq!(first("rack[2]n[04]"), ("rack2n04".into(), false));
        assert_eq!(first("[1-3]"), ("1".into(), true));
    }

    #[test]
    fn huge_ranges_are_not_expanded() {
        let t = std::time::Instant::now();
        assert_eq!(
            first("n[000000000000000000-999999999999999999]"),
            ("n000000000000000000".into(), true)
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn malformed_lists_are_refused_with_the_variable_named() {
        assert_eq!(reason(""), Reason::Empty);
        assert_eq!(reason("a,,b"), Reason::EmptyEntry);
        assert_eq!(reason(",a"), Reason::EmptyEntry);
        assert_eq!(reason("a,"), Reason::EmptyEntry);
        assert_eq!(reason("n[1-3"), Reason::Unclosed);
        assert_eq!(reason("n[1-"), Reason::Unclosed);
        assert_eq!(reason("n["), Reason::Unclosed);
        assert_eq!(reason("n1]"), Reason::Unopened);
        assert_eq!(reason("n[1[2]]"), Reason::Nested);
        assert_eq!(reason("n[]"), Reason::EmptyRange);
        assert_eq!(reason("n[1,]"), Reason::EmptyRange);
        assert_eq!(reason("n[-3]"), Reason::EmptyRange);
        assert_eq!(reason("n[9-3]"), Reason::Backwards("9-3".into()));
        assert_eq!(reason("n[1-2-3]"), Reason::BadChar('-', 5));
        assert_eq!(reason("n[a]"), Reason::BadChar('a', 2));
        assert_eq!(reason("n[1 ]"), Reason::BadChar(' ', 3));
        assert_eq!(reason("a b"), Reason::BadChar(' ', 1));
        assert_eq!(reason("nœud"), Reason::BadChar('œ', 1));
        assert_eq!(reason("n[1œ]"), Reason::BadChar('œ', 3));
        assert_eq!(reason("n[œ]"), Reason::BadChar('œ', 2));
        assert_eq!(reason("n;rm -rf"), Reason::BadChar(';', 1));
        assert_eq!(reason("n[1234567890123456789]"), Reason::LongNumber);
        assert_eq!(reason(&"a".repeat(300)), Reason::LongHost);
        assert_eq!(reason(&"a,".repeat(MAX_LEN)), Reason::TooLong(2 * MAX_LEN));
    }

    #[test]
    fn the_error_shows_only_the_start_of_a_long_list() {
        let e = first_host("SLURM_JOB_NODELIST", &format!("{}]", "n,".repeat(1000))).unwrap_err();
        assert_eq!(e.value.chars().count(), 64);
        assert!(e.to_string().len() < 200, "{e}");
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,200}") {
            let _ = first_host("SLURM_JOB_NODELIST", &s);
        }

        #[test]
        fn never_panics_on_list_like_text(s in "[a-z0-9\\[\\],\\-]{0,100}") {
            if let Ok(f) = first_host("SLURM_JOB_NODELIST", &s) {
                prop_assert!(!f.host.is_empty());
                prop_assert!(f.host.bytes().all(is_name_byte), "{:?}", f.host);
                prop_assert!(f.more || !s.contains(','));
            }
        }

        #[test]
        fn a_well_formed_range_gives_its_low_bound(
            prefix in "[a-z]{1,8}",
            lo in 0u64..100_000,
            span in 0u64..100_000,
            width in 1usize..8,
            rest in proptest::collection::vec("[a-z]{1,5}", 0..3),
        ) {
            let lo_s = format!("{lo:0width$}");
            let list = std::iter::once(format!("{prefix}[{lo_s}-{}]", lo + span))
                .chain(rest.iter().cloned())
                .collect::<Vec<_>>()
                .join(",");
            let f = first_host("SLURM_STEP_NODELIST", &list).unwrap();
            prop_assert_eq!(f.host, format!("{prefix}{lo_s}"));
            prop_assert_eq!(f.more, span > 0 || !rest.is_empty());
        }
    }
}
