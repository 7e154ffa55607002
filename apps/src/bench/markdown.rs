//! The Markdown page of `malt bench report`: the targets, the round ratios
//! per rank count and schedule, the ratios run by run next to the load, and
//! the tables of every system at every size, with the human-readable sizes
//! and numbers they are written with.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use super::report::{
    geomean, rank_counts, target_text, Report, Row, Scores, SystemStats, EXCHANGE_SYSTEMS,
    MALT_AUTO, MALT_WRITE, ROUND_FLOATS, TARGETS, WRITE_BYTES, WRITE_SYSTEMS,
};

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

fn cell(s: Option<&SystemStats>) -> (String, String) {
    match s {
        None => ("–".into(), "–".into()),
        Some(s) if s.value.runs < 2 => (sig(s.value.median), sig(s.cpu_us.median)),
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

/// The median ratio of `malt` over `peer` with its spread over runs, in
/// bold when `strong`.
fn ratio_cell(row: &Row, malt: &str, peer: &str, strong: bool) -> String {
    let b = if strong { "**" } else { "" };
    match row.ratio(malt, peer) {
        Some(r) if r.spread.runs > 1 => format!(
            "{b}{:.2}{b} ({:.2}–{:.2})",
            r.spread.median, r.spread.min, r.spread.max
        ),
        Some(r) => format!("{b}{:.2}{b}", r.spread.median),
        None => "–".into(),
    }
}

fn num(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// What each key of [`TARGETS`] measures, for the table.
fn target_label(key: &str) -> &'static str {
    match key {
        "min_geomean_round_vs_mpi_allreduce" => {
            "round / MPI_Allreduce: geometric mean over sizes, smallest over rank counts"
        }
        "min_geomean_round_vs_gloo" => {
            "round / Gloo allreduce: geometric mean over sizes, smallest over rank counts"
        }
        "min_cell_round_vs_mpi_allreduce" => {
            "round / MPI_Allreduce: smallest of any size and rank count"
        }
        "min_cell_round_vs_gloo" => "round / Gloo allreduce: smallest of any size and rank count",
        "min_write_vs_two_slot" => "write / two-slot memcpy: smallest of 64 KiB to 64 MiB",
        _ => "",
    }
}

/// The geometric mean over the sizes of `rows` in `range` (of `size(row)`)
/// of run `run`'s ratio of `malt` over `peer`; `None` unless that run
/// measured every such size.
fn run_geomean(
    rows: &[&Row],
    malt: &str,
    peer: &str,
    size: fn(&Row) -> usize,
    range: &RangeInclusive<usize>,
    run: usize,
) -> Option<f64> {
    let v: Option<Vec<f64>> = rows
        .iter()
        .filter(|r| range.contains(&size(r)))
        .map(|r| {
            r.ratio(malt, peer)
                .and_then(|x| x.per_run.iter().find(|p| p.0 == run))
                .map(|p| p.1)
        })
        .collect();
    v.as_deref().and_then(geomean)
}

/// The targets' ratios run by run, next to the load when the run started:
/// on a shared machine the peers that spin lose more to other processes
/// than malt, which parks.
fn per_run_table(m: &mut String, r: &Report) {
    struct Col<'a> {
        label: String,
        rows: Vec<&'a Row>,
        malt: &'static str,
        peer: &'static str,
        size: fn(&Row) -> usize,
        range: &'static RangeInclusive<usize>,
    }
    let mut cols: Vec<Col<'_>> = Vec::new();
    for n in rank_counts(&r.exchange) {
        for (peer, name) in [("mpi", "MPI"), ("gloo", "Gloo")] {
            cols.push(Col {
                label: format!("{n} ranks / {name}"),
                rows: r.exchange.iter().filter(|x| x.ranks == n).collect(),
                malt: MALT_AUTO,
                peer,
                size: |x| x.floats,
                range: &ROUND_FLOATS,
            });
        }
    }
    cols.push(Col {
        label: "write / two-slot".into(),
        rows: r.write.iter().collect(),
        malt: MALT_WRITE,
        peer: "memcpy_two_slot",
        size: |x| x.bytes,
        range: &WRITE_BYTES,
    });
    let value = |c: &Col<'_>, run| run_geomean(&c.rows, c.malt, c.peer, c.size, c.range, run);
    let mut runs: Vec<usize> = cols
        .iter()
        .flat_map(|c| c.rows.iter())
        .flat_map(|row| row.ratios.values().flat_map(|p| p.values()))
        .flat_map(|x| x.per_run.iter().map(|p| p.0))
        .collect();
    runs.sort_unstable();
    runs.dedup();
    cols.retain(|c| runs.iter().any(|&run| value(c, run).is_some()));
    if cols.is_empty() {
        return;
    }
    let loads = r.load.as_ref().map(|l| l.per_run.as_slice()).unwrap_or(&[]);
    let _ = write!(
        m,
        "Run by run: geometric means over sizes of the run's ratios (malt's speed over the \
         peer's; the auto schedule for rounds, 64 KiB to 64 MiB for writes); load: \
         1-minute load average at the start, others: cores other processes took during \
         the run.\n\n| run | load | others |"
    );
    for c in &cols {
        let _ = write!(m, " {} |", c.label);
    }
    let _ = write!(m, "\n|---|---|---|");
    for _ in &cols {
        m.push_str("---|");
    }
    m.push('\n');
    for run in runs {
        let this = loads.iter().find(|l| l.run == run);
        let load = num(this.map(|l| l.loadavg1));
        let others = num(this.and_then(|l| l.others_cores));
        let _ = write!(m, "| {run} | {load} | {others} |");
        for c in &cols {
            let _ = write!(m, " {} |", num(value(c, run)));
        }
        m.push('\n');
    }
    m.push('\n');
}

fn targets_table(m: &mut String, r: &Report) {
    let s = &r.summary;
    let _ = writeln!(m, "| target | value | |\n|---|---|---|");
    for &(key, least) in TARGETS {
        let met = s
            .targets_met
            .get(&target_text(key, least))
            .copied()
            .flatten();
        let _ = writeln!(
            m,
            "| {} ≥ {least:?} | {} | {} |",
            target_label(key),
            num(s.value(key)),
            yes_no(met)
        );
    }
    m.push('\n');
    if s.round_by_ranks.is_empty() {
        return;
    }
    let _ = writeln!(
        m,
        "Round ratios per rank count and malt schedule (geometric mean over sizes of \
         the median ratios, and the smallest of them):\n\n\
         | ranks | malt | geomean / MPI | smallest / MPI | geomean / Gloo | smallest / Gloo |\n\
         |---|---|---|---|---|---|"
    );
    for (n, per) in &s.round_by_ranks {
        for name in ["auto", "direct", "allreduce"] {
            let x: Scores = per.get(name).copied().unwrap_or_default();
            let _ = writeln!(
                m,
                "| {n} | {name} | {} | {} | {} | {} |",
                num(x.geomean_vs_mpi_allreduce),
                num(x.min_cell_vs_mpi_allreduce),
                num(x.geomean_vs_gloo),
                num(x.min_cell_vs_gloo)
            );
        }
    }
    m.push('\n');
}

fn write_table(m: &mut String, r: &Report) {
    let _ = writeln!(
        m,
        "### One-sided write, 2 ranks: throughput in Gbit/s, CPU in µs per write\n"
    );
    let peers = [
        ("mpi_put", "MPI_Put"),
        ("mpi_put_create", "MPI_Put (create)"),
        ("memcpy", "memcpy"),
        ("memcpy_two_slot", "two-slot memcpy"),
    ];
    let mut head = String::from("| size |");
    let mut rule = String::from("|---|");
    for (_, label) in WRITE_SYSTEMS {
        let _ = write!(head, " {label} | CPU |");
        rule.push_str("---|---|");
    }
    for (_, label) in peers {
        let _ = write!(head, " malt / {label} |");
        rule.push_str("---|");
    }
    let _ = writeln!(m, "{head}\n{rule}");
    for row in &r.write {
        let mut line = format!("| {} |", human_bytes(row.bytes));
        for (key, _) in WRITE_SYSTEMS {
            let (v, c) = cell(row.systems.get(*key));
            let _ = write!(line, " {v} | {c} |");
        }
        for (peer, _) in peers {
            let _ = write!(line, " {} |", ratio_cell(row, MALT_WRITE, peer, true));
        }
        let _ = writeln!(m, "{line}");
    }
    m.push('\n');
}

fn exchange_table(m: &mut String, r: &Report, n: usize) {
    let _ = writeln!(
        m,
        "### Model exchange, {n} ranks: µs per round (wall), CPU in µs per round\n"
    );
    let mut head = String::from("| floats | auto |");
    let mut rule = String::from("|---|---|");
    for (_, label) in EXCHANGE_SYSTEMS {
        let _ = write!(head, " {label} | CPU |");
        rule.push_str("---|---|");
    }
    let ratios = [
        ("malt_direct", "mpi", "direct / MPI"),
        ("malt_allreduce", "mpi", "allreduce / MPI"),
        ("malt_direct", "gloo", "direct / Gloo"),
        ("malt_allreduce", "gloo", "allreduce / Gloo"),
    ];
    for (_, _, label) in ratios {
        let _ = write!(head, " {label} |");
        rule.push_str("---|");
    }
    let _ = writeln!(m, "{head}\n{rule}");
    for row in r.exchange.iter().filter(|x| x.ranks == n) {
        let auto = row.auto.as_deref().unwrap_or("");
        let mut line = format!(
            "| {} ({}) | {} |",
            human_floats(row.floats),
            human_bytes(row.bytes),
            auto.strip_prefix("malt_").unwrap_or("–")
        );
        for (key, _) in EXCHANGE_SYSTEMS {
            let (v, c) = cell(row.systems.get(*key));
            let _ = write!(line, " {v} | {c} |");
        }
        for (malt, peer, _) in ratios {
            let _ = write!(line, " {} |", ratio_cell(row, malt, peer, malt == auto));
        }
        let _ = writeln!(m, "{line}");
    }
    m.push('\n');
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let s = &r.summary;
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
    if let Some(total) = s.time.total_secs {
        let _ = write!(m, "The script ran {total:.0} s");
        if let (Some(b), Some(t)) = (s.time.build_secs, s.time.measure_secs) {
            let _ = write!(m, " ({b:.0} s to install and build, {t:.0} s to measure)");
        }
        m.push_str(" before this report.\n");
    }
    m.push('\n');
    let _ = writeln!(
        m,
        "Medians of {} runs (systems interleaved run by run), smallest and largest run in \
         parentheses. Ratios are malt's speed over the peer's, taken run by run from \
         systems measured side by side: above 1, malt is faster; a cell shows the median \
         over runs and the smallest and largest run. malt's exchange ran with the direct \
         and with the allreduce schedule; auto is the one `--schedule auto` picks, the \
         one the targets hold to (in bold). CPU is user + system time of all ranks \
         (getrusage) per write or per round.{}\n",
        s.runs,
        if s.quick {
            " Quick mode: fewer sizes and runs."
        } else {
            ""
        }
    );
    targets_table(&mut m, r);
    per_run_table(&mut m, r);
    if !r.write.is_empty() {
        write_table(&mut m, r);
    }
    for n in rank_counts(&r.exchange) {
        exchange_table(&mut m, r, n);
    }
    m
}
