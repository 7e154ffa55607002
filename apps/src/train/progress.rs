//! The progress bar rank 0 shows while training: epoch, last objective,
//! examples per second and the time left.
//!
//! It is drawn on stdout and only when stdout is a terminal, the run is not
//! quiet, and this is rank 0; otherwise every call is a no-op.

use std::io::IsTerminal;

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A progress bar over this rank's examples, or nothing.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar of `total` examples when `rank == 0`, `!quiet` and stdout is a
    /// terminal; a hidden one otherwise.
    pub fn new(total: u64, rank: usize, quiet: bool) -> Self {
        if quiet || rank != 0 || !std::io::stdout().is_terminal() {
            return Progress::hidden();
        }
        Progress::on_stdout(total)
    }

    /// A bar drawn on stdout whether or not it is a terminal.
    pub fn on_stdout(total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {percent:>3}% {msg} {rate} ETA {eta}",
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let shown = Progress::on_stdout(10);
        assert!(shown.is_visible());
        shown.advance(4);
        assert_eq!(shown.bar.as_ref().map(|b| b.position()), Some(4));
        shown.finish();
    }
}
