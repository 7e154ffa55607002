//! The Markdown page of `malt bench report`: the table of every system at
//! every size, the ratios to the peers, the targets and the runs' load,
//! and the human-readable sizes and numbers it is written with.

use std::fmt::Write as _;

use super::report::{Report, Row, Spread, SystemStats, EXCHANGE_SYSTEMS, WRITE_SYSTEMS};

/// Human size of a byte count: 4 KiB, 1 MiB, ...
pub fn human_bytes(b: usize) -> String {
    if b >= 1 << 20 && b.trailing_zeros() >= 20 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b.trailing_zeros() >= 10 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// Human element count: 1 Ki, 16 Mi, ...
pub fn human_floats(n: usize) -> String {
    if n >= 1 << 20 && n.trailing_zeros() >= 20 {
        format!("{} Mi", n >> 20)
    } else if n >= 1 << 10 && n.trailing_zeros() >= 10 {
        format!("{} Ki", n >> 10)
    } else {
        n.to_string()
    }
}

/// Three significant digits, no exponent for the sizes seen here.
fn sig(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn cell(s: Option<&SystemStats>, single: bool) -> (String, String) {
    match s {
        None => ("–".into(), "–".into()),
        Some(s) if single || s.value.runs < 2 => (sig(s.value.median), sig(s.cpu_us.median)),
        Some(s) => (
            format!(
                "{} ({}–{})",
                sig(s.value.median),
                sig(s.value.min),
                sig(s.value.max)
            ),
            sig(s.cpu_us.median),
        ),
    }
}

fn ratio_cell(row: &Row, peer: &str) -> String {
    let runs: Vec<f64> = row
        .ratio_runs
        .get(peer)
        .map(|v| v.iter().map(|x| x.1).collect())
        .unwrap_or_default();
    match (row.ratios.get(peer), Spread::of(&runs)) {
        (Some(r), Some(sp)) => format!("**{r:.2}** ({:.2}–{:.2})", sp.min, sp.max),
        (Some(r), None) => format!("**{r:.2}**"),
        _ => "–".into(),
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The three acceptance ratios run by run, next to the load when the run
/// started: on a shared machine the peers that spin lose more to other
/// processes than malt, which parks.
fn per_run_table(m: &mut String, r: &Report) {
    const MIB4: usize = 4 << 20;
    let keys = [
        ("4 MiB write / MPI_Put", &r.write, "mpi_put"),
        ("1 Mi round / MPI_Allreduce", &r.exchange, "mpi"),
        ("1 Mi round / Gloo", &r.exchange, "gloo"),
    ];
    let cols: Vec<(&str, &Vec<(usize, f64)>)> = keys
        .iter()
        .filter_map(|(label, rows, peer)| {
            rows.iter()
                .find(|x| x.ranks == 2 && x.bytes == MIB4)
                .and_then(|x| x.ratio_runs.get(*peer))
                .map(|v| (*label, v))
        })
        .collect();
    if cols.is_empty() {
        return;
    }
    let loads = r.load.as_ref().map(|l| l.per_run.as_slice()).unwrap_or(&[]);
    let mut runs: Vec<usize> = cols.iter().flat_map(|c| c.1.iter().map(|x| x.0)).collect();
    runs.sort_unstable();
    runs.dedup();
    let _ = write!(
        m,
        "Run by run (malt's speed over the peer's, 2 ranks; load: 1-minute load average \
         at the start, others: cores other processes took during the run):\n\n\
         | run | load | others |"
    );
    for (label, _) in &cols {
        let _ = write!(m, " {label} |");
    }
    let _ = write!(m, "\n|---|---|---|");
    for _ in &cols {
        m.push_str("---|");
    }
    m.push('\n');
    for run in runs {
        let this = loads.iter().find(|l| l.run == run);
        let load = this
            .map(|l| format!("{:.2}", l.loadavg1))
            .unwrap_or_else(|| "–".into());
        let others = this
            .and_then(|l| l.others_cores)
            .map(|o| format!("{o:.2}"))
            .unwrap_or_else(|| "–".into());
        let _ = write!(m, "| {run} | {load} | {others} |");
        for (_, v) in &cols {
            match v.iter().find(|x| x.0 == run) {
                Some((_, ratio)) => {
                    let _ = write!(m, " {ratio:.2} |");
                }
                None => m.push_str(" – |"),
            }
        }
        m.push('\n');
    }
    m.push('\n');
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let runs = r.summary.runs;
    let _ = writeln!(m, "## malt against Open MPI and Gloo\n");
    let _ = writeln!(m, "Measured {} on {}.", r.date, r.machine);
    if let Some(l) = &r.load {
        let _ = write!(
            m,
            "1-minute load average when runs started: {:.2} to {:.2}",
            l.min, l.max
        );
        match l.others_max {
            Some(o) => {
                let _ = writeln!(m, "; other processes took up to {o:.2} cores during a run.");
            }
            None => m.push_str(".\n"),
        }
    }
    m.push('\n');
    let _ = writeln!(
        m,
        "Medians of {runs} runs (systems interleaved run by run), smallest and largest run in \
         parentheses. Ratios are malt's speed over the peer's: above 1, malt is faster; \
         the range is over runs measured side by side. CPU is user + system time of all \
         ranks (getrusage) per write or per round.{}\n",
        if r.summary.quick {
            " Quick mode: fewer sizes and runs."
        } else {
            ""
        }
    );
    let s = &r.summary;
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    let _ = writeln!(m, "| target | ratio | |\n|---|---|---|");
    let _ = writeln!(
        m,
        "| 4 MiB write ≥ 1.2 × MPI_Put + flush | {} | {} |",
        f(s.write_vs_mpi_put_4mib),
        yes_no(
            s.targets_met
                .get("write_vs_mpi_put_4MiB>=1.2")
                .copied()
                .flatten()
        )
    );
    let _ = writeln!(
        m,
        "| 1 Mi floats, 2 ranks, round ≥ 2 × MPI_Allreduce | {} | {} |",
        f(s.gather_vs_mpi_allreduce_1m),
        yes_no(
            s.targets_met
                .get("gather_vs_mpi_allreduce_1M>=2")
                .copied()
                .flatten()
        )
    );
    let _ = writeln!(
        m,
        "| 1 Mi floats, 2 ranks, round ≥ 1.5 × Gloo allreduce | {} | {} |\n",
        f(s.gather_vs_gloo_allreduce_1m),
        yes_no(
            s.targets_met
                .get("gather_vs_gloo_allreduce_1M>=1.5")
                .copied()
                .flatten()
        )
    );

    per_run_table(&mut m, r);

    if !r.write.is_empty() {
        let _ = writeln!(
            m,
            "### One-sided write, 2 ranks: throughput in Gbit/s, CPU in µs per write\n"
        );
        let mut head = String::from("| size |");
        let mut rule = String::from("|---|");
        for (_, label) in WRITE_SYSTEMS {
            let _ = write!(head, " {label} | CPU |");
            rule.push_str("---|---|");
        }
        head.push_str(" malt / MPI_Put | malt / MPI_Put (create) | malt / memcpy |");
        rule.push_str("---|---|---|");
        let _ = writeln!(m, "{head}\n{rule}");
        for row in &r.write {
            let mut line = format!("| {} |", human_bytes(row.bytes));
            for (key, _) in WRITE_SYSTEMS {
                let (v, c) = cell(row.systems.get(*key), false);
                let _ = write!(line, " {v} | {c} |");
            }
            let _ = writeln!(
                m,
                "{line} {} | {} | {} |",
                ratio_cell(row, "mpi_put"),
                ratio_cell(row, "mpi_put_create"),
                ratio_cell(row, "memcpy")
            );
        }
        m.push('\n');
    }

    let mut ranks: Vec<usize> = r.exchange.iter().map(|x| x.ranks).collect();
    ranks.dedup();
    for n in ranks {
        let _ = writeln!(
            m,
            "### Model exchange, {n} ranks: µs per round (wall), CPU in µs per round\n"
        );
        let mut head = String::from("| floats |");
        let mut rule = String::from("|---|");
        for (_, label) in EXCHANGE_SYSTEMS {
            let _ = write!(head, " {label} | CPU |");
            rule.push_str("---|---|");
        }
        head.push_str(" malt / MPI | malt / Gloo |");
        rule.push_str("---|---|");
        let _ = writeln!(m, "{head}\n{rule}");
        for row in r.exchange.iter().filter(|x| x.ranks == n) {
            let mut line = format!(
                "| {} ({}) |",
                human_floats(row.floats),
                human_bytes(row.bytes)
            );
            for (key, _) in EXCHANGE_SYSTEMS {
                let (v, c) = cell(row.systems.get(*key), false);
                let _ = write!(line, " {v} | {c} |");
            }
            let _ = writeln!(
                m,
                "{line} {} | {} |",
                ratio_cell(row, "mpi"),
                ratio_cell(row, "gloo")
            );
        }
        m.push('\n');
    }
    m
}
