//! The progress bar under `malt train --ranks N` and `malt launch`: drawn
//! by rank 0 on the launcher's terminal when there is one (run here under
//! util-linux `script`, which gives the command a pseudo-terminal and
//! records what it shows), and nowhere when there is none.

mod common;

use common::{malt, run_with_deadline, Job};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(300);

/// Fewest redraws the bar must show before the summary.
const MIN_REDRAWS: usize = 10;

/// A directory of its own for one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("malt-progress-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether util-linux `script` is there; says so when it is not.
fn have_script(test: &str) -> bool {
    let ok = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED {test}: util-linux `script` is not installed (apt-get install bsdutils)");
    }
    ok
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `command` (a shell command line) on a pseudo-terminal in `dir`
/// and returns the job and the typescript: what the terminal showed.
fn on_a_terminal(dir: &TempDir, command: &str, env: &[(&str, &str)]) -> (Job, Vec<u8>) {
    let typescript = dir.0.join("typescript");
    let mut cmd = Command::new("script");
    // -q: no banner of its own on stdout; -e: the command's exit status;
    // -c: the command; the typescript is the last argument.
    cmd.arg("-qec")
        .arg(command)
        .arg(&typescript)
        .current_dir(&dir.0)
        .env_remove("MALT_LOG")
        .env_remove("RUST_LOG")
        .env_remove("MALT_PROGRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let job = run_with_deadline(cmd, DEADLINE);
    let shown = std::fs::read(&typescript).unwrap_or_default();
    (job, shown)
}

/// Redraws in place before `summary`: carriage returns that are not the
/// terminal's end of a line (`\r\n`), and cursor-up moves.
fn redraws_before(shown: &[u8], summary: &str) -> usize {
    let end = find(shown, summary.as_bytes())
        .unwrap_or_else(|| panic!("no {summary:?} in {:?}", String::from_utf8_lossy(shown)));
    let before = &shown[..end];
    let returns = before
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count();
    returns.max(count(before, b"\x1b[1A"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The frames of the bar: the text drawn after each clear of the line, up
/// to the next escape sequence or carriage return.
fn frames(shown: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(shown);
    text.split("\x1b[2K")
        .skip(1)
        .map(|f| {
            let f = f.strip_prefix("\x1b[1A").unwrap_or(f);
            f.split(['\x1b', '\r']).next().unwrap_or("").to_string()
        })
        .filter(|f| f.contains("examples/s"))
        .collect()
}

#[test]
fn train_with_ranks_draws_the_bar_on_the_terminal() {
    if !have_script("train_with_ranks_draws_the_bar_on_the_terminal") {
        return;
    }
    let dir = TempDir::new("train");
    let command = format!("{} train svm --ranks 2", quoted(malt()));
    let (job, shown) = on_a_terminal(&dir, &command, &[("COLUMNS", "100")]);
    assert_eq!(job.code, Some(0), "{job:?}");
    let redraws = redraws_before(&shown, "svm ranks=2");
    println!("malt train svm --ranks 2 on a terminal: {redraws} redraws before the summary");
    assert!(
        redraws >= MIN_REDRAWS,
        "{redraws} redraws: {:?}",
        String::from_utf8_lossy(&shown)
    );
    let frames = frames(&shown);
    assert!(
        frames.iter().any(|f| f.contains("epoch ")),
        "the bar shows the epoch: {frames:?}"
    );
    // As wide as the terminal (COLUMNS, the pseudo-terminal has no size):
    // never wider, or it would wrap and leave copies behind.
    for f in &frames {
        assert!(
            f.chars().count() <= 100,
            "{} columns: {f:?}",
            f.chars().count()
        );
    }
}

#[test]
fn launch_passes_rank_0s_bar_to_the_terminal_with_its_prefix() {
    if !have_script("launch_passes_rank_0s_bar_to_the_terminal_with_its_prefix") {
        return;
    }
    let dir = TempDir::new("launch");
    let command = format!(
        "{m} launch -n 2 -- {m} train svm --synth-rows 200000",
        m = quoted(malt())
    );
    let (job, shown) = on_a_terminal(&dir, &command, &[("COLUMNS", "100")]);
    assert_eq!(job.code, Some(0), "{job:?}");
    let redraws = redraws_before(&shown, "[0] svm ranks=2");
    println!(
        "malt launch -n 2 -- malt train svm on a terminal: {redraws} redraws before the summary"
    );
    assert!(
        redraws >= MIN_REDRAWS,
        "{redraws} redraws: {:?}",
        String::from_utf8_lossy(&shown)
    );
    let frames = frames(&shown);
    assert!(!frames.is_empty(), "{:?}", String::from_utf8_lossy(&shown));
    for f in &frames {
        assert!(
            f.starts_with("[0] "),
            "every frame has rank 0's prefix: {f:?}"
        );
        // The launcher narrowed the bar by the prefix.
        assert!(
            f.chars().count() <= 100,
            "{} columns: {f:?}",
            f.chars().count()
        );
    }
}

#[test]
fn without_a_terminal_no_bar_is_drawn() {
    let dir = TempDir::new("pipe");
    let mut cmd = Command::new(malt());
    cmd.args(["train", "svm", "--ranks", "2", "--synth-rows", "50000"])
        .current_dir(&dir.0)
        // Only the launcher decides: its stdout is a pipe here.
        .env("MALT_PROGRESS", "1")
        .env_remove("MALT_LOG")
        .env_remove("RUST_LOG");
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    assert!(job.stdout.contains("svm ranks=2"), "{job:?}");
    assert!(
        !job.stdout.contains('\r') && !job.stdout.contains('\x1b'),
        "no bar in a pipe: {:?}",
        job.stdout
    );
}
