//! What `malt launch` does with its ranks' output: each line passed on
//! with the rank's prefix, and rank 0's progress bar drawn on the
//! launcher's terminal, cleared and redrawn around the other ranks' lines.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::sync::{Arc, Mutex};

/// Passes a rank's output on, a line at a time, to the launcher's stdout or
/// stderr (once that fails, for good: nobody reads it, and the rest is
/// dropped), with `[rank] ` in front when `prefix` (but not twice: a rank's
/// log lines already start with `[rank N] `). With a `screen`, the
/// launcher's stdout is a terminal that rank 0's progress bar may be on;
/// `on_screen` says whether this pump's destination shows on it.
pub(super) fn pump(
    src: impl Read + Send + 'static,
    rank: usize,
    to_stderr: bool,
    prefix: bool,
    screen: Option<Arc<Mutex<Screen>>>,
) -> std::thread::JoinHandle<()> {
    let on_screen = !to_stderr || std::io::stderr().is_terminal();
    std::thread::spawn(move || {
        let mut r = BufReader::new(src);
        let mut line = Vec::new();
        let mut closed = false;
        let tagged = format!("[rank {rank}] ");
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if closed {
                // Nobody reads the launcher's output any more: the rank's
                // is dropped, so that it neither blocks nor dies writing.
                continue;
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            let prefix = prefix && !line.starts_with(tagged.as_bytes());
            // Rank 0's unfinished line (its progress bar) gives way first.
            let mut guard = screen.as_ref().map(|s| lock(s));
            if let Some(g) = guard.as_mut().filter(|_| on_screen) {
                let cut = g.interrupt();
                if !cut.is_empty() {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(cut).and_then(|_| o.flush());
                }
            }
            let res = if to_stderr {
                let mut e = std::io::stderr().lock();
                if prefix {
                    let _ = write!(e, "[{rank}] ");
                }
                e.write_all(&line)
            } else {
                let mut o = std::io::stdout().lock();
                if prefix {
                    let _ = write!(o, "[{rank}] ");
                }
                o.write_all(&line).and_then(|_| o.flush())
            };
            drop(guard);
            closed = res.is_err();
        }
    })
}

fn lock(s: &Mutex<Screen>) -> std::sync::MutexGuard<'_, Screen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Passes rank 0's stdout on to the launcher's terminal as it comes, not a
/// line at a time, so that its progress bar, redrawn in place, shows.
pub(super) fn pump_to_screen(
    src: impl Read + Send + 'static,
    screen: Arc<Mutex<Screen>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut src = src;
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::with_capacity(buf.len() + 64);
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            out.clear();
            let mut g = lock(&screen);
            g.feed(&buf[..n], &mut out);
            let mut o = std::io::stdout().lock();
            if o.write_all(&out).and_then(|_| o.flush()).is_err() {
                // Nobody reads the terminal any more: drop the rest.
                drop(o);
                drop(g);
                let _ = std::io::copy(&mut src, &mut std::io::sink());
                return;
            }
        }
    })
}

/// The launcher's terminal as rank 0's stdout leaves it: the `[0] ` prefix
/// goes in front of every line, where a line starts after a newline or a
/// carriage return (a redraw in place) and escape sequences do not count as
/// text; and whether rank 0 left a line unfinished (its progress bar),
/// which another rank's line must end first.
#[derive(Debug)]
pub(super) struct Screen {
    /// What goes in front of each of rank 0's lines (empty: nothing).
    prefix: Vec<u8>,
    /// The next text byte starts a line.
    at_start: bool,
    /// Inside an escape sequence.
    esc: Esc,
    /// Bytes written since the last newline.
    open: bool,
    /// The open line has been redrawn in place (a carriage return).
    redrawn: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// In a control sequence (ESC `[` ... final byte).
    Csi,
}

impl Screen {
    pub(super) fn new(prefix: &str) -> Self {
        Screen {
            prefix: prefix.as_bytes().to_vec(),
            at_start: true,
            esc: Esc::None,
            open: false,
            redrawn: false,
        }
    }

    /// Appends to `out` what the terminal gets for `chunk` of rank 0's
    /// stdout.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            match self.esc {
                Esc::Start => {
                    self.esc = if b == b'[' { Esc::Csi } else { Esc::None };
                    out.push(b);
                    continue;
                }
                Esc::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.esc = Esc::None;
                    }
                    out.push(b);
                    continue;
                }
                Esc::None => {}
            }
            match b {
                0x1b => self.esc = Esc::Start,
                b'\n' => {
                    self.at_start = true;
                    self.open = false;
                    self.redrawn = false;
                    out.push(b);
                    continue;
                }
                b'\r' => {
                    self.at_start = true;
                    self.redrawn = true;
                }
                _ if self.at_start => {
                    out.extend_from_slice(&self.prefix);
                    self.at_start = false;
                }
                _ => {}
            }
            self.open = true;
            out.push(b);
        }
    }

    /// What ends rank 0's unfinished line before another line is written:
    /// a line redrawn in place (the progress bar) is cleared, and redrawn
    /// on the next tick; other text is ended with a newline.
    fn interrupt(&mut self) -> &'static [u8] {
        if !self.open || self.esc != Esc::None {
            return b"";
        }
        let cut: &'static [u8] = if self.redrawn { b"\r\x1b[2K" } else { b"\n" };
        self.open = false;
        self.redrawn = false;
        self.at_start = true;
        cut
    }
}

/// The width of the launcher's terminal (its stdout), else `COLUMNS`, else
/// 80.
pub(super) fn screen_width() -> u16 {
    console::Term::stdout()
        .size_checked()
        .map(|(_, w)| w)
        .filter(|w| *w > 0)
        .or_else(|| {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse().ok())
        })
        .unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(screen: &mut Screen, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for c in chunks {
            screen.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rank_0s_lines_and_redraws_get_the_prefix_and_escapes_do_not_count_as_text() {
        let mut s = Screen::new("[0] ");
        // Lines, split anywhere across chunks.
        assert_eq!(shown(&mut s, &[b"one\ntw", b"o\n"]), "[0] one\n[0] two\n");
        // A bar: drawn, cleared and redrawn in place; the prefix follows
        // the clear, not the carriage return.
        assert_eq!(
            shown(&mut s, &[b"bar 1", b"\r\x1b[2Kbar 2", b"\x1b[1A\r\x1b[2K"]),
            "[0] bar 1\r\x1b[2K[0] bar 2\x1b[1A\r\x1b[2K"
        );
        // After the bar is cleared, the summary line starts a line.
        assert_eq!(shown(&mut s, &[b"svm done\n"]), "[0] svm done\n");
        // An escape sequence split across chunks.
        assert_eq!(
            shown(&mut s, &[b"\x1b[3", b"2mgreen\n"]),
            "\x1b[32m[0] green\n"
        );
        // No prefix: passed through unchanged.
        let mut plain = Screen::new("");
        let bytes = b"a\r\x1b[2Kb\nc";
        assert_eq!(shown(&mut plain, &[bytes]).as_bytes(), bytes);
    }

    #[test]
    fn another_line_clears_the_bar_or_ends_unfinished_text() {
        let mut s = Screen::new("[0] ");
        assert_eq!(s.interrupt(), b"", "nothing open");
        shown(&mut s, &[b"line\n"]);
        assert_eq!(s.interrupt(), b"", "a finished line stays");
        shown(&mut s, &[b"\r\x1b[2Kbar 10%"]);
        assert_eq!(s.interrupt(), b"\r\x1b[2K", "the bar is cleared");
        assert_eq!(s.interrupt(), b"", "once");
        // The next frame starts a line of its own, with the prefix.
        assert_eq!(shown(&mut s, &[b"bar 20%"]), "[0] bar 20%");
        let mut t = Screen::new("[0] ");
        shown(&mut t, &[b"loading... "]);
        assert_eq!(t.interrupt(), b"\n", "text is kept, its line ended");
        assert_eq!(shown(&mut t, &[b"done\n"]), "[0] done\n");
    }
}
