//! Log lines as a user reads them: the filter (`MALT_LOG`, else
//! `RUST_LOG`, else `warn`), a tag naming the writer on every line, no
//! colour codes in a file, and what `info` and `debug` say about a job.

mod common;

use common::{malt, run_with_deadline, Job};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

/// `malt launch -n 2 -- malt check` with its standard error in a file (not
/// a terminal); returns the job and the file's contents.
fn check_job(tag: &str, env: &[(&str, &str)]) -> (Job, String) {
    let file: PathBuf =
        std::env::temp_dir().join(format!("malt-logs-{tag}-{}.err", std::process::id()));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec "$0" launch -n 2 -- "$0" check 2>"$1""#)
        .arg(malt())
        .arg(&file)
        .env_remove("MALT_LOG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let job = run_with_deadline(cmd, DEADLINE);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    (job, text)
}

/// The lines of `text` that say `what`, written by `who` (`[launch]`,
/// `[rank 0]`, ...).
fn said<'a>(text: &'a str, who: &str, what: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{who} ")) && l.contains(what))
        .collect()
}

#[test]
fn every_line_names_its_writer_and_a_file_gets_no_colour() {
    let (job, text) = check_job("info", &[("MALT_LOG", "info")]);
    assert_eq!(job.code, Some(0), "{job:?}\n{text}");
    assert!(!text.contains('\x1b'), "colour codes in a file: {text:?}");
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            ["[launch] ", "[rank 0] ", "[rank 1] "]
                .iter()
                .any(|t| line.starts_with(t)),
            "a line without its writer: {line:?}"
        );
    }
    // info: the rendezvous, each rank's joining, each rank's exit.
    assert_eq!(
        said(&text, "[launch]", "rendezvous complete").len(),
        1,
        "{text}"
    );
    assert_eq!(said(&text, "[rank 0]", "joined the job").len(), 1, "{text}");
    assert_eq!(said(&text, "[rank 1]", "joined the job").len(), 1, "{text}");
    assert_eq!(said(&text, "[launch]", "rank exited").len(), 2, "{text}");
    // Times are rounded for a reader.
    for l in said(&text, "[launch]", "rank exited") {
        let at = l.split("at=").nth(1).and_then(|r| r.split(' ').next());
        let decimals = at
            .and_then(|a| a.split_once('.'))
            .map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "{l}");
    }
}

#[test]
fn debug_tells_of_connections_and_objects() {
    let (job, text) = check_job("debug", &[("MALT_LOG", "debug")]);
    assert_eq!(job.code, Some(0), "{job:?}\n{text}");
    for rank in ["[rank 0]", "[rank 1]"] {
        for what in [
            "welcomed by the coordinator",
            "created a segment",
            "mapped a peer's segment",
            "created an object object=malt-check",
        ] {
            assert!(
                !said(&text, rank, what).is_empty(),
                "{rank} {what}:\n{text}"
            );
        }
    }
    assert_eq!(
        said(&text, "[launch]", "a rank joined the rendezvous").len(),
        2,
        "{text}"
    );
}

#[test]
fn rust_log_is_honoured_when_malt_log_is_unset() {
    let (job, text) = check_job("rust-log", &[("RUST_LOG", "info")]);
    assert_eq!(job.code, Some(0), "{job:?}\n{text}");
    assert_eq!(said(&text, "[rank 1]", "joined the job").len(), 1, "{text}");
    // MALT_LOG wins when both are set.
    let (job, text) = check_job("both", &[("RUST_LOG", "info"), ("MALT_LOG", "warn")]);
    assert_eq!(job.code, Some(0), "{job:?}\n{text}");
    assert!(!text.contains(" INFO "), "{text}");
    // Neither: warnings only, and this job has none.
    let (job, text) = check_job("default", &[]);
    assert_eq!(job.code, Some(0), "{job:?}\n{text}");
    assert_eq!(text, "", "{text}");
}

#[test]
fn a_filter_that_does_not_parse_is_reported() {
    let (job, text) = check_job("bad", &[("MALT_LOG", "dstorm=loud")]);
    assert_eq!(job.code, Some(0), "{job:?}\n{text}");
    assert!(
        said(
            &text,
            "[launch]",
            "MALT_LOG=\"dstorm=loud\" is not a log filter"
        )
        .len()
            == 1,
        "{text}"
    );
}

#[test]
fn a_terminal_gets_colour() {
    if !Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("SKIPPED a_terminal_gets_colour: util-linux `script` is not installed");
        return;
    }
    let typescript = std::env::temp_dir().join(format!(
        "malt-logs-colour-{}.typescript",
        std::process::id()
    ));
    let mut cmd = Command::new("script");
    cmd.arg("-qec")
        .arg(format!("'{}' launch -n 1 -- true", malt()))
        .arg(&typescript)
        .env("MALT_LOG", "info")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    let job = run_with_deadline(cmd, DEADLINE);
    let shown =
        String::from_utf8_lossy(&std::fs::read(&typescript).unwrap_or_default()).into_owned();
    let _ = std::fs::remove_file(&typescript);
    assert_eq!(job.code, Some(0), "{job:?}");
    let started: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("[launch] ") && l.contains("started the ranks"))
        .collect();
    assert_eq!(started.len(), 1, "{shown:?}");
    assert!(
        started[0].contains("\x1b["),
        "no colour on a terminal: {shown:?}"
    );
}

/// A rank whose standard error is a pipe nobody reads any more (its
/// launcher was SIGKILLed) must neither panic nor hang when it logs: a
/// one-rank `malt check` logging at debug level still finishes, exit 0.
#[test]
fn a_closed_standard_error_neither_panics_nor_hangs_a_rank() {
    use std::os::fd::AsRawFd;
    // A pipe without a reader, inherited by the shell (no close-on-exec),
    // which makes it the rank's standard error.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            r#"exec "$0" check --rounds 3 --size 64 2>&{}"#,
            write.as_raw_fd()
        ))
        .arg(malt())
        .env("MALT_LOG", "debug")
        .env_remove("RUST_LOG");
    let job = run_with_deadline(cmd, Duration::from_secs(30));
    drop(write);
    assert!(!job.timed_out, "the rank hung: {job:?}");
    assert_eq!(job.code, Some(0), "{job:?}");
    assert!(job.stdout.contains("\"ok\":true"), "{job:?}");
}
