//! `malt bench traffic`: what one exchange round costs each rank, by
//! schedule, without running one: the bytes each rank sends per round and
//! the rounds until every rank holds information from every rank.
//!
//! It asks the runtime's own code: the graph's adjacency
//! ([`vol::Graph::adjacency_among`]), the clock words a staleness-bounded
//! mode adds between ranks the graph does not connect (as vol creates them),
//! vol's update header ([`vol::wire::HEADER_LEN`]), the shares of the
//! allreduce schedule ([`vol::allreduce::share`], [`vol::allreduce::TAG`])
//! and dstorm's slot framing
//! ([`dstorm::wire::HEADER_BYTES`], [`dstorm::wire::TRAILER_BYTES`]).

use serde::Serialize;
use vol::allreduce::{choose, share, Schedule};
use vol::graph::propagation_rounds;
use vol::{Consistency, Graph, VectorOptions};

/// Most ranks `--ranks` takes.
pub const MAX_RANKS: usize = 4096;

/// Most elements `--len` takes: 2^34.
pub const MAX_LEN: usize = 1 << 34;

/// Options of `malt bench traffic`.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// Ranks in the job.
    pub ranks: usize,
    /// Elements (f32) of the vector.
    pub len: usize,
    /// The direct schedule's graph.
    pub graph: Graph,
    /// Consistency mode.
    pub sync: Consistency,
}

/// One schedule's cost.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Traffic {
    /// Ranks.
    pub ranks: usize,
    /// Elements of the vector.
    pub len: usize,
    /// `direct` or `allreduce`.
    pub schedule: &'static str,
    /// The graph (`all` for the allreduce schedule).
    pub graph: String,
    /// Consistency mode.
    pub sync: String,
    /// Payload bytes (what `Stats::bytes_sent` counts) the busiest rank
    /// sends per round.
    pub bytes_per_rank: u64,
    /// The same, as a multiple of the vector's bytes.
    pub vectors_per_rank: f64,
    /// Writes (updates, and clock words) the busiest rank makes per round.
    pub writes_per_rank: u64,
    /// Bytes on the wire: payload plus each write's slot header and trailer.
    pub wire_bytes_per_rank: u64,
    /// Rounds until every rank holds information from every rank.
    pub rounds_to_everyone: usize,
}

/// Why the traffic cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// Bad options.
    #[error("{0}")]
    Invalid(String),
    /// The graph cannot be laid out on this many ranks.
    #[error(transparent)]
    Graph(#[from] vol::GraphError),
}

/// The cost of each schedule that can run with `opts`: the direct one over
/// the graph, and the allreduce one where it applies (graph `all`, `bsp`).
pub fn traffic(opts: &TrafficOptions) -> Result<Vec<Traffic>, TrafficError> {
    let n = opts.ranks;
    if !(1..=MAX_RANKS).contains(&n) {
        return Err(TrafficError::Invalid(format!(
            "--ranks {n} is not in 1..={MAX_RANKS}"
        )));
    }
    if !(1..=MAX_LEN).contains(&opts.len) {
        return Err(TrafficError::Invalid(format!(
            "--len {} is not in 1..={MAX_LEN}",
            opts.len
        )));
    }
    let width = 4u64;
    let adj = opts.graph.adjacency(n)?;
    let update = (vol::wire::HEADER_LEN as u64) + opts.len as u64 * width;
    let clock = opts.sync.staleness_bound().is_some();
    let framing = (dstorm::wire::HEADER_BYTES + dstorm::wire::TRAILER_BYTES) as u64;
    let vector = opts.len as f64 * width as f64;
    let row = |schedule, graph: String, bytes: u64, writes: u64, rounds| Traffic {
        ranks: n,
        len: opts.len,
        schedule,
        graph,
        sync: opts.sync.to_string(),
        bytes_per_rank: bytes,
        vectors_per_rank: bytes as f64 / vector,
        writes_per_rank: writes,
        wire_bytes_per_rank: bytes + writes * framing,
        rounds_to_everyone: rounds,
    };
    // Direct: an update to each out-neighbour, and under bsp/ssp a clock
    // word to every other rank that gets no data.
    let (mut bytes, mut writes) = (0u64, 0u64);
    for out in &adj {
        let d = out.len() as u64;
        let clocks = if clock { (n as u64 - 1) - d } else { 0 };
        let b = d * update + clocks * 8;
        if b > bytes {
            bytes = b;
            writes = d + clocks;
        }
    }
    let mut rows = vec![row(
        "direct",
        opts.graph.to_string(),
        bytes,
        writes,
        rounds_to_everyone(&adj),
    )];
    // Allreduce: share m of the vector to its owner, then the owner's
    // merged share to everybody else; one round reaches everyone.
    // Where vol's own rule lets the allreduce schedule run.
    let forced = VectorOptions::new()
        .graph(opts.graph.clone())
        .consistency(opts.sync)
        .schedule(Schedule::Allreduce);
    if n >= 2 && choose(&forced, n, opts.len, width as usize).is_ok() {
        let writes = 2 * (n as u64 - 1);
        let mut bytes = 0u64;
        for m in 0..n {
            let own = share(opts.len, n, m).len() as u64;
            let scatter = (opts.len as u64 - own) * width;
            let gather = (n as u64 - 1) * (vol::allreduce::TAG as u64 + own * width);
            bytes = bytes.max(scatter + gather);
        }
        rows.push(row(
            Schedule::Allreduce.as_str(),
            "all".into(),
            bytes,
            writes,
            1,
        ));
    }
    Ok(rows)
}

/// Rounds until a value from every rank has reached every rank, pushing
/// along the adjacency once per round. A circulant graph (rank r's
/// neighbours are rank 0's shifted by r, as `all`, `halton` and `ring` are)
/// looks the same from every rank, so one search suffices; others search
/// from every rank.
fn rounds_to_everyone(adj: &[Vec<usize>]) -> usize {
    let n = adj.len();
    let circulant = adj.iter().enumerate().all(|(r, out)| {
        let mut shifted: Vec<usize> = adj[0].iter().map(|p| (p + r) % n).collect();
        shifted.sort_unstable();
        let mut mine = out.clone();
        mine.sort_unstable();
        shifted == mine
    });
    let sources = if circulant { 1 } else { n };
    (0..sources)
        .filter_map(|s| propagation_rounds(adj, s))
        .max()
        .unwrap_or(0)
}

/// Runs `malt bench traffic`: prints the rows, or says why not. Returns
/// the process exit code (2 for options it cannot compute with).
pub fn run(opts: &TrafficOptions, json: bool) -> u8 {
    match traffic(opts) {
        Ok(rows) => {
            print(&rows, json);
            0
        }
        Err(e) => {
            eprintln!("malt bench traffic: {e}");
            2
        }
    }
}

/// Prints the rows: JSON lines, or a table.
pub fn print(rows: &[Traffic], json: bool) {
    if json {
        for r in rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return;
    }
    println!(
        "{:>6} {:>11} {:>10} {:>8} {:>6} {:>15} {:>9} {:>8} {:>15} {:>7}",
        "ranks",
        "len",
        "schedule",
        "graph",
        "sync",
        "bytes/rank",
        "vectors",
        "writes",
        "wire bytes",
        "rounds"
    );
    for r in rows {
        println!(
            "{:>6} {:>11} {:>10} {:>8} {:>6} {:>15} {:>9.3} {:>8} {:>15} {:>7}",
            r.ranks,
            r.len,
            r.schedule,
            r.graph,
            r.sync,
            r.bytes_per_rank,
            r.vectors_per_rank,
            r.writes_per_rank,
            r.wire_bytes_per_rank,
            r.rounds_to_everyone
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ranks: usize, len: usize, graph: Graph, sync: Consistency) -> TrafficOptions {
        TrafficOptions {
            ranks,
            len,
            graph,
            sync,
        }
    }

    #[test]
    fn all_sends_n_minus_1_vectors_and_allreduce_2_n_minus_1_over_n() {
        let rows = traffic(&opts(8, 1 << 20, Graph::All, Consistency::Bsp)).unwrap();
        assert_eq!(rows.len(), 2);
        let v = (1u64 << 20) * 4;
        assert_eq!(rows[0].bytes_per_rank, 7 * (v + 32));
        assert_eq!(rows[0].rounds_to_everyone, 1);
        assert_eq!(rows[1].bytes_per_rank, 2 * 7 * v / 8 + 7 * 8);
        assert_eq!(rows[1].writes_per_rank, 14);
        assert_eq!(rows[1].rounds_to_everyone, 1);
    }

    #[test]
    fn halton_sends_log2_n_updates_and_clock_words_to_the_rest() {
        let rows = traffic(&opts(64, 1000, Graph::Halton, Consistency::Bsp)).unwrap();
        assert_eq!(rows.len(), 1, "no allreduce off graph all");
        let deg = 6u64;
        assert_eq!(rows[0].bytes_per_rank, deg * (4000 + 32) + (63 - deg) * 8);
        assert_eq!(rows[0].rounds_to_everyone, 6);
        let free = traffic(&opts(64, 1000, Graph::Halton, Consistency::Async)).unwrap();
        assert_eq!(free[0].bytes_per_rank, deg * (4000 + 32));
    }

    #[test]
    fn uneven_shares_count_the_busiest_rank_and_4096_ranks_work() {
        let rows = traffic(&opts(3, 10, Graph::All, Consistency::Bsp)).unwrap();
        // Shares of 3, 3 and 4 elements: the owner of 4 sends 6 elements,
        // then 2 merged shares of 4 behind their 8-byte tags.
        assert_eq!(rows[1].bytes_per_rank, 6 * 4 + 2 * (8 + 4 * 4));
        let big = traffic(&opts(4096, 1 << 20, Graph::Halton, Consistency::Bsp)).unwrap();
        assert_eq!(big[0].rounds_to_everyone, 12);
        let random = traffic(&opts(
            1024,
            1 << 20,
            Graph::Random { k: 8, seed: 7 },
            Consistency::Bsp,
        ))
        .unwrap();
        assert!(random[0].rounds_to_everyone >= 4, "{random:?}");
        // The one-search shortcut for circulant graphs gives what a search
        // from every rank gives.
        for graph in [Graph::Halton, Graph::Ring, Graph::All] {
            for n in [5usize, 16, 37] {
                let adj = graph.adjacency(n).unwrap();
                let every = (0..n).filter_map(|s| propagation_rounds(&adj, s)).max();
                assert_eq!(Some(rounds_to_everyone(&adj)), every, "{graph} at {n}");
            }
        }
        // Not circulant: from rank 0 every rank is 2 rounds away, from rank 3
        // rank 2 is 3 rounds away.
        let skew = vec![vec![1], vec![2, 3], vec![0], vec![0]];
        assert_eq!(rounds_to_everyone(&skew), 3);
        assert!(traffic(&opts(4097, 1, Graph::All, Consistency::Bsp)).is_err());
    }
}
