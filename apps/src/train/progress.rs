//! The progress bar rank 0 shows while training: epoch, last objective,
//! examples per second and the time left.
//!
//! It is drawn only by rank 0 of a run that is not quiet, on its standard
//! output, when that is a terminal, or when the launcher says that it
//! passes it on to one (`MALT_PROGRESS=1`, set by `malt launch` and `malt
//! train --ranks N` for rank 0 when their own standard output is a
//! terminal; `COLUMNS` then gives the width). Otherwise every call is a
//! no-op.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{
    HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike,
};

/// Set to `1` by the launcher for rank 0 when the launcher's standard
/// output, to which it passes rank 0's, is a terminal.
pub const PROGRESS_VAR: &str = "MALT_PROGRESS";

/// Redraws per second at most.
const REFRESH_HZ: u8 = 20;

/// A progress bar over this rank's examples, or nothing.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar of `total` examples when `rank == 0`, `!quiet` and stdout is a
    /// terminal; a hidden one otherwise.
    pub fn new(total: u64, rank: usize, quiet: bool) -> Self {
        if quiet || rank != 0 {
            return Progress::hidden();
        }
        if std::io::stdout().is_terminal() {
            return Progress::on_stdout(total);
        }
        match launcher_terminal(|k| std::env::var(k).ok()) {
            Some(width) => Progress::through_launcher(total, width),
            None => Progress::hidden(),
        }
    }

    /// A bar drawn on stdout when it is a terminal.
    pub fn on_stdout(total: u64) -> Self {
        Progress::styled(ProgressBar::with_draw_target(
            Some(total),
            ProgressDrawTarget::stdout_with_hz(REFRESH_HZ),
        ))
    }

    /// A bar drawn on stdout, which is a pipe the launcher passes on to its
    /// terminal, `width` columns wide.
    pub fn through_launcher(total: u64, width: u16) -> Self {
        Progress::drawn_into(total, width, Box::new(std::io::stdout()), Some(REFRESH_HZ))
    }

    /// A bar drawn into `out` as on a terminal `width` columns wide, at most
    /// `hz` times a second (`None`: at every change).
    fn drawn_into(total: u64, width: u16, out: Box<dyn Write + Send>, hz: Option<u8>) -> Self {
        let term = Box::new(PipedTerminal {
            width,
            out: Mutex::new(out),
        });
        let target = match hz {
            Some(hz) => ProgressDrawTarget::term_like_with_hz(term, hz),
            None => ProgressDrawTarget::term_like(term),
        };
        Progress::styled(ProgressBar::with_draw_target(Some(total), target))
    }

    fn styled(bar: ProgressBar) -> Self {
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} {rate} ETA {eta}",
        )
        .map(|s| {
            s.with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} examples/s", HumanCount(state.per_sec() as u64));
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar: Some(bar) }
    }

    /// A bar that shows nothing.
    pub fn hidden() -> Self {
        Progress { bar: None }
    }

    /// Whether anything is drawn.
    pub fn is_visible(&self) -> bool {
        self.bar.is_some()
    }

    /// `n` more examples done.
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Shows the epoch and the last objective.
    pub fn status(&self, epoch: u32, epochs: u32, objective: Option<f64>) {
        if let Some(b) = &self.bar {
            match objective {
                Some(o) => b.set_message(format!("epoch {}/{} loss {:.5}", epoch, epochs, o)),
                None => b.set_message(format!("epoch {}/{}", epoch, epochs)),
            }
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The width of the launcher's terminal when the launcher passes this
/// process's standard output on to one (`MALT_PROGRESS=1`): `COLUMNS`, else
/// 80.
fn launcher_terminal(get: impl Fn(&str) -> Option<String>) -> Option<u16> {
    if get(PROGRESS_VAR).as_deref().map(str::trim) != Some("1") {
        return None;
    }
    let width = get("COLUMNS")
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| *w >= 20)
        .unwrap_or(80);
    Some(width)
}

/// Standard output as a terminal of a known width: the escape sequences a
/// terminal understands, written to whatever stdout is (the launcher passes
/// them on to its own terminal).
struct PipedTerminal {
    width: u16,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for PipedTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedTerminal")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl PipedTerminal {
    fn out(&self) -> std::sync::MutexGuard<'_, Box<dyn Write + Send>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, s: &str) -> std::io::Result<()> {
        self.out().write_all(s.as_bytes())
    }

    fn cursor(&self, n: usize, code: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for PipedTerminal {
    fn width(&self) -> u16 {
        self.width
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(s)?;
        self.put("\n")
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        self.out().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn quiet_and_other_ranks_show_nothing() {
        assert!(!Progress::new(10, 0, true).is_visible());
        assert!(!Progress::new(10, 1, false).is_visible());
        let hidden = Progress::hidden();
        hidden.advance(3);
        hidden.status(1, 2, Some(0.5));
        hidden.finish();
        // Under the test harness stdout is captured, not a terminal.
        if !std::io::stdout().is_terminal() {
            assert!(!Progress::new(10, 0, false).is_visible());
        }
        let shown = Progress::drawn_into(10, 80, Box::new(std::io::sink()), None);
        assert!(shown.is_visible());
        shown.advance(4);
        assert_eq!(shown.bar.as_ref().map(|b| b.position()), Some(4));
        shown.finish();
    }

    /// What the bar writes, shared with the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn through_a_pipe_the_bar_redraws_one_line_of_the_given_width() {
        let out = Shared::default();
        // No rate limit: every change is drawn.
        let bar = Progress::drawn_into(100, 120, Box::new(out.clone()), None);
        bar.status(1, 2, Some(0.25));
        for _ in 0..3 {
            bar.advance(10);
        }
        bar.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\n'), "one line, redrawn in place: {text:?}");
        let draws: Vec<&str> = text.split("\r\x1b[2K").collect();
        assert!(draws.len() >= 3, "redraws: {text:?}");
        assert!(draws.iter().any(|d| d.contains("epoch 1/2 loss 0.25000")));
        // Every drawn line fills the width exactly (so that the cursor
        // stays on it), and the last clear leaves nothing behind.
        for d in &draws[..draws.len() - 1] {
            if !d.is_empty() {
                assert_eq!(console_width(d), 120, "{d:?}");
            }
        }
        assert_eq!(draws.last(), Some(&""));
    }

    fn console_width(s: &str) -> usize {
        // The bar's glyphs are one column each; no colour through a pipe.
        s.chars().count()
    }

    #[test]
    fn the_launcher_says_when_stdout_reaches_a_terminal_and_how_wide_it_is() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(launcher_terminal(env(&[])), None);
        assert_eq!(launcher_terminal(env(&[("MALT_PROGRESS", "0")])), None);
        assert_eq!(launcher_terminal(env(&[("MALT_PROGRESS", "1")])), Some(80));
        assert_eq!(
            launcher_terminal(env(&[("MALT_PROGRESS", "1"), ("COLUMNS", "132")])),
            Some(132)
        );
        assert_eq!(
            launcher_terminal(env(&[("MALT_PROGRESS", "1"), ("COLUMNS", "wide")])),
            Some(80)
        );
    }
}
