//! Log lines of the `malt` command: which ones (`MALT_LOG`, else
//! `RUST_LOG`, else `warn`), colour only when standard error is a terminal,
//! and a tag in front of every line that says who wrote it: `[rank N]` in a
//! rank of a job, `[launch]` in a process that starts ranks.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The filter used when neither `MALT_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "warn";

/// Rank variables of the launchers, in the order the job configuration
/// reads them (see `dstorm::Config::from_env`).
pub const RANK_VARS: &[&str] = &[
    "MALT_RANK",
    "RANK",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "SLURM_PROCID",
];

static TAG: OnceLock<String> = OnceLock::new();

/// Tags every later log line of this process with `[tag]`; the first call
/// wins (a rank stays a rank).
pub fn set_tag(tag: impl Into<String>) {
    let _ = TAG.set(tag.into());
}

/// This process's rank as its launcher gave it, if any.
pub fn rank_from_env() -> Option<usize> {
    rank_from(|k| std::env::var(k).ok())
}

fn rank_from(get: impl Fn(&str) -> Option<String>) -> Option<usize> {
    RANK_VARS
        .iter()
        .find_map(|k| get(k))
        .and_then(|v| v.trim().parse().ok())
}

/// The log filter: `MALT_LOG` when set (and not empty), else `RUST_LOG`,
/// else [`DEFAULT_FILTER`]. A filter that does not parse gives the default
/// and a warning to print once logging works.
pub fn filter_from(get: impl Fn(&str) -> Option<String>) -> (EnvFilter, Option<String>) {
    for var in ["MALT_LOG", "RUST_LOG"] {
        let Some(spec) = get(var).filter(|s| !s.trim().is_empty()) else {
            continue;
        };
        return match EnvFilter::try_new(&spec) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "{var}={spec:?} is not a log filter ({e}); using {DEFAULT_FILTER}"
                )),
            ),
        };
    }
    (EnvFilter::new(DEFAULT_FILTER), None)
}

/// Installs the subscriber: log lines on standard error, coloured only when
/// it is a terminal (and `NO_COLOR` is not set), each tagged with this
/// process's rank when a launcher gave it one.
pub fn init() {
    if let Some(rank) = rank_from_env() {
        set_tag(format!("rank {rank}"));
    }
    let (filter, warning) = filter_from(|k| std::env::var(k).ok());
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colour = std::io::stderr().is_terminal() && !no_colour;
    let format = Tagged(tracing_subscriber::fmt::format().with_ansi(colour));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A rank's standard error is often a pipe to `malt launch`, which
        // may be gone (SIGKILLed): a failed log write must not become a
        // second write to that pipe, whose failure panics the thread that
        // logged (and a panicking main or control thread hangs the rank).
        .log_internal_errors(false)
        .with_ansi(colour)
        .event_format(format)
        .init();
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
}

/// A log line format with this process's tag in front.
#[derive(Debug)]
struct Tagged<F>(F);

impl<S, N, F> FormatEvent<S, N> for Tagged<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(tag) = TAG.get() {
            write!(writer, "[{tag}] ")?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn malt_log_wins_over_rust_log_which_wins_over_the_default() {
        let (f, w) = filter_from(env(&[("MALT_LOG", "debug"), ("RUST_LOG", "error")]));
        assert_eq!(f.to_string(), "debug");
        assert!(w.is_none());
        let (f, _) = filter_from(env(&[("RUST_LOG", "malt::launch=info")]));
        assert_eq!(f.to_string(), "malt::launch=info");
        let (f, _) = filter_from(env(&[("MALT_LOG", " "), ("RUST_LOG", "info")]));
        assert_eq!(f.to_string(), "info");
        let (f, _) = filter_from(env(&[]));
        assert_eq!(f.to_string(), DEFAULT_FILTER);
        let (f, w) = filter_from(env(&[("MALT_LOG", "dstorm=loud"), ("RUST_LOG", "info")]));
        assert_eq!(f.to_string(), DEFAULT_FILTER);
        assert!(w.is_some_and(|w| w.contains("MALT_LOG")), "a warning");
    }

    #[test]
    fn the_rank_comes_from_the_first_launcher_variable() {
        assert_eq!(rank_from(env(&[("SLURM_PROCID", "0")])), Some(0));
        assert_eq!(
            rank_from(env(&[("SLURM_PROCID", "0"), ("OMPI_COMM_WORLD_RANK", "3")])),
            Some(3)
        );
        assert_eq!(
            rank_from(env(&[("MALT_RANK", "1"), ("RANK", "2")])),
            Some(1)
        );
        assert_eq!(rank_from(env(&[])), None);
        assert_eq!(rank_from(env(&[("MALT_RANK", "x")])), None);
    }
}
