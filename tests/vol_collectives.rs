//! vol over real processes: exact BSP averages, Halton propagation, SSP
//! staleness bounds and waits, ASYNC without waits, sparse and auto
//! representations, flow control, and typed errors on every rank for bad
//! collective calls. Each test launches this binary as the rank program.

mod common;

use common::{initial, launch_self, report, ExactModels, Job};
use dstorm::{Group, Object, ObjectSpec};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vol::{
    graph::{ceil_log2, propagation_rounds},
    Consistency, DenseVector, FlowControl, Graph, Registry, Representation, SparseVec, Udf,
    VectorOptions, VolError,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn run(ranks: usize, transport: &str, entry: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let job = launch_self(ranks, transport, entry, env, DEADLINE);
    ok_results(&job, ranks, entry)
}

fn ok_results(job: &Job, ranks: usize, what: &str) -> Vec<Value> {
    assert_eq!(
        job.code,
        Some(0),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        job.code,
        job.stdout,
        job.stderr
    );
    let r = job.results();
    assert_eq!(r.len(), ranks, "{what}: {}", job.stdout);
    for (i, v) in r.iter().enumerate() {
        assert_eq!(v["rank"], i as u64, "{what}: {v}");
    }
    r
}

fn env_var(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

/// This rank's membership, with a way to leave that does not race the
/// coordinator: rank 0 runs the control channel's coordinator in its own
/// process, so it must not exit before every other rank has received the
/// reply to the final barrier. Each other rank confirms with a one-sided
/// write to rank 0 after the barrier, and rank 0 waits for all of them
/// (bounded) before leaving.
struct Member {
    group: Group,
    left: Object,
}

impl std::ops::Deref for Member {
    type Target = Group;
    fn deref(&self) -> &Group {
        &self.group
    }
}

impl Member {
    fn finish(self) -> Result<(), dstorm::Error> {
        let Member { group, mut left } = self;
        group.barrier()?;
        if group.rank() != 0 {
            left.write(0, &[1u8; 8], 0)?;
        } else {
            let mut buf = [0u8; 8];
            let deadline = Instant::now() + group.config().timeout;
            for _ in 1..group.world() {
                let wait = deadline.saturating_duration_since(Instant::now());
                if left.poll_timeout(&mut buf, wait)?.is_none() {
                    break;
                }
            }
        }
        drop(left);
        // Leaving without `finish` would abort the job for the others.
        group.finish()
    }
}

fn join() -> Member {
    let group = Group::from_env().expect("join the job");
    let rows: Vec<Vec<usize>> = (0..group.world())
        .map(|r| if r == 0 { vec![] } else { vec![0] })
        .collect();
    let left = group
        .create_object(&ObjectSpec::new("test-leave", 8).graph(rows))
        .expect("leave object");
    Member { group, left }
}

// ---------------------------------------------------------------------------
// Avg under BSP with All: the exact mean on every rank.

#[test]
fn bsp_avg_all_gives_the_exact_mean_for_2_to_8_ranks() {
    for n in 2..=8 {
        let results = run(n, "shm", "rank_bsp_avg", &[("VOLTEST_GRAPH", "all")]);
        for r in &results {
            assert_eq!(r["ok"], true, "N = {n}: {r}");
            assert_eq!(r["merged"], (n - 1) as u64, "N = {n}: {r}");
            assert_eq!(r["max_staleness"], 0, "N = {n}: {r}");
            assert!(r["max_err"].as_f64().unwrap() < 1e-9, "N = {n}: {r}");
        }
    }
}

#[test]
fn bsp_avg_over_tcp() {
    let results = run(3, "tcp", "rank_bsp_avg", &[("VOLTEST_GRAPH", "all")]);
    for r in &results {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["merged"], 2, "{r}");
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_bsp_avg() {
    let group = join();
    let (rank, n) = (group.rank(), group.world());
    let graph: Graph = env_var("VOLTEST_GRAPH").parse().expect("graph");
    let len = 1000;
    let values: Vec<f64> = (0..len).map(|i| initial(rank, i)).collect();
    let mean: Vec<f64> = (0..len)
        .map(|i| (0..n).map(|r| initial(r, i)).sum::<f64>() / n as f64)
        .collect();
    let opts = VectorOptions::new().graph(graph);
    let mut v = DenseVector::<f64>::from_slice(&group, "model", &values, &opts).expect("create");
    let mut merged = Vec::new();
    let mut max_staleness = 0;
    let mut max_err = 0.0f64;
    for _ in 0..3 {
        v.scatter().expect("scatter");
        let info = v.gather(Udf::Avg).expect("gather");
        merged.push(info.merged);
        max_staleness = max_staleness.max(info.max_staleness);
        // After every exchange (the first included) every rank holds the mean.
        for (a, b) in v.iter().zip(&mean) {
            max_err = max_err.max((a - b).abs() / (1.0 + b.abs()));
        }
    }
    let stats = v.stats().clone();
    report(json!({
        "rank": rank,
        "ok": merged.iter().all(|&m| m == merged[0]),
        "merged": merged[0],
        "max_staleness": max_staleness,
        "max_err": max_err,
        "updates_sent": stats.updates_sent,
        "lapped": stats.lapped,
    }));
    group.finish().expect("finish");
    drop(v);
}

// ---------------------------------------------------------------------------
// Halton: out-degree ceil(log2 N); a value reaches everyone within
// ceil(log2 N) rounds (exactly at its graph distance).

#[test]
fn halton_spreads_a_value_within_ceil_log2_rounds() {
    for n in [2usize, 3, 5, 8, 12] {
        let results = run(n, "shm", "rank_halton", &[]);
        let adj = Graph::Halton.adjacency(n).unwrap();
        for r in &results {
            let rank = r["rank"].as_u64().unwrap() as usize;
            assert_eq!(r["out_degree"], ceil_log2(n) as u64, "N = {n}: {r}");
            let first = r["first_round"].as_array().unwrap();
            for (src, f) in first.iter().enumerate() {
                // The round after which `src`'s value is on `rank`: its
                // distance in the graph, never more than ceil(log2 N).
                let expect = if src == rank {
                    0
                } else {
                    distance(&adj, src, rank)
                };
                assert_eq!(
                    f.as_u64().unwrap() as usize,
                    expect,
                    "N = {n}, {src} -> {rank}: {r}"
                );
                assert!(expect <= ceil_log2(n));
            }
        }
        for src in 0..n {
            assert!(propagation_rounds(&adj, src).unwrap() <= ceil_log2(n));
        }
    }
}

#[test]
fn halton_spreads_a_value_within_ceil_log2_rounds_16_ranks() {
    let n = 16;
    let results = run(n, "shm", "rank_halton", &[]);
    for r in &results {
        assert_eq!(r["out_degree"], 4, "{r}");
        let worst = r["first_round"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_u64().unwrap())
            .max()
            .unwrap();
        assert!(worst <= 4, "{r}");
    }
}

fn distance(adj: &[Vec<usize>], from: usize, to: usize) -> usize {
    let mut dist = vec![usize::MAX; adj.len()];
    dist[from] = 0;
    let mut frontier = vec![from];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for u in frontier {
            for &v in &adj[u] {
                if dist[v] == usize::MAX {
                    dist[v] = dist[u] + 1;
                    next.push(v);
                }
            }
        }
        frontier = next;
    }
    dist[to]
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_halton() {
    let group = join();
    let (rank, n) = (group.rank(), group.world());
    // Entry s is 1 once rank s's value has arrived.
    let mut values = vec![0.0f32; n];
    values[rank] = 1.0;
    let opts = VectorOptions::new().graph(Graph::Halton);
    let mut v = DenseVector::<f32>::from_slice(&group, "spread", &values, &opts).expect("create");
    let mut first_round = vec![u64::MAX; n];
    first_round[rank] = 0;
    for round in 1..=ceil_log2(n) as u64 + 1 {
        v.scatter().expect("scatter");
        v.gather(Udf::Max).expect("gather");
        for (s, f) in first_round.iter_mut().enumerate() {
            if *f == u64::MAX && v[s] == 1.0 {
                *f = round;
            }
        }
    }
    report(json!({
        "rank": rank,
        "out_degree": v.out_neighbors().len(),
        "in_degree": v.in_neighbors().len(),
        "first_round": first_round,
    }));
    group.finish().expect("finish");
    drop(v);
}

// ---------------------------------------------------------------------------
// SSP: staleness never exceeds s; fast ranks wait for the slow one.

#[test]
fn ssp_bounds_staleness_and_fast_ranks_wait() {
    for (n, graph) in [(3usize, "all"), (4, "halton")] {
        let s = 2u64;
        let results = run(
            n,
            "shm",
            "rank_ssp",
            &[("VOLTEST_GRAPH", graph), ("VOLTEST_S", "2")],
        );
        let slow = n - 1;
        for r in &results {
            let rank = r["rank"].as_u64().unwrap() as usize;
            assert!(
                r["max_staleness"].as_u64().unwrap() <= s,
                "{graph}: staleness above {s}: {r}"
            );
            assert!(r["gathers"].as_u64().unwrap() == 30, "{r}");
            if rank != slow {
                assert!(
                    r["waits"].as_u64().unwrap() > 0,
                    "{graph}: fast rank never waited: {r}"
                );
                assert!(r["wait_ns"].as_u64().unwrap() > 0, "{r}");
                let hears_slow = r["in_neighbors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p.as_u64() == Some(slow as u64));
                if hears_slow {
                    // Running ahead of the slow rank shows up as staleness
                    // of its updates.
                    assert!(r["max_staleness"].as_u64().unwrap() >= 1, "{graph}: {r}");
                }
            }
            if graph == "halton" {
                // Ranks that get no data from a peer learn its progress
                // from the clock.
                assert!(r["clock_bytes_sent"].as_u64().unwrap() > 0, "{r}");
            } else {
                assert_eq!(r["clock_bytes_sent"], 0, "{r}");
            }
        }
    }
}

/// Work that takes a while: the slow rank's extra compute per iteration.
fn busy_work(rounds: u32) -> f64 {
    let mut acc = 0.0f64;
    for k in 0..rounds {
        acc = (acc + f64::from(k)).sqrt() + 1.0;
    }
    acc
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_ssp() {
    let group = join();
    let (rank, n) = (group.rank(), group.world());
    let graph: Graph = env_var("VOLTEST_GRAPH").parse().expect("graph");
    let s: u64 = env_var("VOLTEST_S").parse().expect("s");
    let opts = VectorOptions::new()
        .graph(graph)
        .consistency(Consistency::Ssp { s });
    let mut v = DenseVector::<f32>::new(&group, "ssp", 256, &opts).expect("create");
    let slow = rank == n - 1;
    let mut max_staleness = 0;
    let mut sink = 0.0;
    for t in 0..30u64 {
        // The compute step: the slow rank has much more to do.
        sink += busy_work(if slow { 400_000 } else { 2_000 });
        for x in v.iter_mut() {
            *x = t as f32;
        }
        v.scatter().expect("scatter");
        let info = v.gather(Udf::Avg).expect("gather");
        max_staleness = max_staleness.max(info.max_staleness);
    }
    let st = v.stats().clone();
    assert_eq!(st.max_staleness, max_staleness);
    report(json!({
        "rank": rank,
        "max_staleness": max_staleness,
        "hist_max": st.staleness.max(),
        "waits": st.waits,
        "wait_ns": st.wait_ns,
        "gathers": st.gathers,
        "clock_bytes_sent": st.clock_bytes_sent,
        "in_neighbors": v.in_neighbors(),
        "sink": sink > 0.0,
    }));
    group.finish().expect("finish");
    drop(v);
}

// ---------------------------------------------------------------------------
// ASYNC: never waits; lapped updates are counted; merges stay convex.

#[test]
fn async_never_waits_and_counts_lapped_updates() {
    let results = run(3, "shm", "rank_async", &[]);
    for r in &results {
        assert_eq!(r["waits"], 0, "{r}");
        assert_eq!(r["wait_ns"], 0, "{r}");
        assert_eq!(r["in_range"], true, "{r}");
    }
    // Rank 1 read only the newest 2 of rank 0's 5 back-to-back updates.
    assert_eq!(results[1]["first_merged"], 1, "{}", results[1]);
    assert_eq!(results[1]["first_lapped"], 3, "{}", results[1]);
    assert_eq!(results[1]["first_value"], 5.0, "{}", results[1]);
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_async() {
    let group = join();
    let rank = group.rank();
    let opts = VectorOptions::new().consistency(Consistency::Async);
    let mut v = DenseVector::<f32>::new(&group, "async", 64, &opts).expect("create");
    // Lapping, deterministically: rank 0 writes 5 updates before rank 1
    // reads any; a queue of depth 2 keeps the newest two.
    let mut first = json!({});
    if rank == 0 {
        for k in 1..=5 {
            v.as_mut_slice().fill(k as f32);
            v.scatter().expect("scatter");
        }
    }
    group.barrier().expect("barrier");
    if rank == 1 {
        let info = v.gather(Udf::Max).expect("gather");
        first = json!({
            "merged": info.merged,
            "lapped": v.stats().lapped,
            "value": v[0],
        });
    }
    group.barrier().expect("barrier");
    // Free running: values stay within the initial range under Avg.
    v.as_mut_slice().fill(rank as f32);
    let mut in_range = true;
    for _ in 0..40 {
        v.scatter().expect("scatter");
        v.gather(Udf::Avg).expect("gather");
        in_range &= v.iter().all(|&x| (0.0..=5.0).contains(&x));
    }
    let st = v.stats().clone();
    report(json!({
        "rank": rank,
        "waits": st.waits,
        "wait_ns": st.wait_ns,
        "in_range": in_range,
        "first_merged": first["merged"],
        "first_lapped": first["lapped"],
        "first_value": first["value"],
    }));
    group.finish().expect("finish");
    drop(v);
}

// ---------------------------------------------------------------------------
// Backpressure: nothing is lapped, the sender waits for the reader.

#[test]
fn backpressure_loses_nothing_and_the_sender_waits() {
    let results = run(2, "shm", "rank_backpressure", &[]);
    assert_eq!(results[1]["lapped"], 0, "{}", results[1]);
    assert_eq!(results[1]["last"], 20.0, "{}", results[1]);
    assert_eq!(results[1]["in_order"], true, "{}", results[1]);
    assert!(results[0]["waits"].as_u64().unwrap() > 0, "{}", results[0]);
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_backpressure() {
    let group = join();
    let rank = group.rank();
    let opts = VectorOptions::new()
        .consistency(Consistency::Async)
        .flow(FlowControl::Backpressure)
        .graph(Graph::Custom(vec![vec![1], vec![0]]));
    let mut v = DenseVector::<f32>::new(&group, "bp", 1024, &opts).expect("create");
    let mut out = json!({"rank": rank});
    if rank == 0 {
        for k in 1..=20 {
            v.as_mut_slice().fill(k as f32);
            v.scatter().expect("scatter");
        }
        out["waits"] = json!(v.stats().waits);
    } else {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen: Vec<f32> = Vec::new();
        while v[0] < 20.0 && Instant::now() < deadline {
            busy_work(50_000);
            // Replace the local copy with the newest update.
            v.gather(|local: &mut [f32], inc: &[&[f32]]| {
                if let Some(last) = inc.last() {
                    local.copy_from_slice(last);
                }
            })
            .expect("gather");
            if seen.last() != Some(&v[0]) {
                seen.push(v[0]);
            }
            std::thread::yield_now();
        }
        out["last"] = json!(v[0]);
        out["lapped"] = json!(v.stats().lapped);
        out["in_order"] = json!(seen.windows(2).all(|w| w[0] < w[1]));
    }
    report(out);
    group.finish().expect("finish");
    drop(v);
}

// ---------------------------------------------------------------------------
// Sparse representations give the dense result; auto switches as documented.

#[test]
fn sparse_avg_equals_dense_avg() {
    let results = run(3, "shm", "rank_sparse_equals_dense", &[]);
    for r in &results {
        assert_eq!(r["dense_repr_equal"], true, "{r}");
        assert_eq!(r["sparse_vec_equal"], true, "{r}");
        assert!(r["sparse_sent"].as_u64().unwrap() > 0, "{r}");
        assert!(
            r["sparse_bytes"].as_u64().unwrap() < r["dense_bytes"].as_u64().unwrap() / 2,
            "{r}"
        );
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_sparse_equals_dense() {
    let group = join();
    let rank = group.rank();
    let len = 500usize;
    let init: Vec<f32> = (0..len).map(|i| initial(rank, i) as f32).collect();
    let dense_opts = VectorOptions::new();
    let sparse_opts = VectorOptions::new().representation(Representation::Sparse);
    let mut d = DenseVector::<f32>::from_slice(&group, "d", &init, &dense_opts).expect("d");
    let mut s = DenseVector::<f32>::from_slice(&group, "s", &init, &sparse_opts).expect("s");
    // A sparse vector storing every 10th index on every rank, next to a
    // dense vector with zeros elsewhere.
    let mut sv =
        SparseVec::<u32, f32>::new(&group, "sv", len as u64, len, &dense_opts).expect("sv");
    let mut dz = DenseVector::<f32>::new(&group, "dz", len, &dense_opts).expect("dz");
    for i in (0..len).step_by(10) {
        sv.insert(i as u32, init[i]).expect("insert");
        dz[i] = init[i];
    }
    let mut dense_repr_equal = true;
    let mut sparse_vec_equal = true;
    for round in 0..10usize {
        if round > 0 {
            // Every rank changes a few entries, the same way in both vectors.
            for k in 0..5 {
                let i = (round * 37 + k * 101 + rank * 13) % len;
                let x = (round * 10 + k + rank) as f32 * 0.5;
                d[i] = x;
                s[i] = x;
            }
        }
        d.scatter().expect("scatter");
        s.scatter().expect("scatter");
        sv.scatter().expect("scatter");
        dz.scatter().expect("scatter");
        d.gather(Udf::Avg).expect("gather");
        s.gather(Udf::Avg).expect("gather");
        sv.gather(Udf::Avg).expect("gather");
        dz.gather(Udf::Avg).expect("gather");
        dense_repr_equal &= d
            .iter()
            .zip(s.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits());
        let mut expanded = vec![0.0f32; len];
        sv.write_into_dense(&mut expanded).expect("expand");
        sparse_vec_equal &= sv.nnz() == len / 10
            && expanded
                .iter()
                .zip(dz.iter())
                .all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs()));
    }
    report(json!({
        "rank": rank,
        "dense_repr_equal": dense_repr_equal,
        "sparse_vec_equal": sparse_vec_equal,
        "sparse_sent": s.stats().sparse_updates_sent,
        "sparse_bytes": s.stats().bytes_sent,
        "dense_bytes": d.stats().bytes_sent,
    }));
    group.finish().expect("finish");
    drop((d, s, sv, dz));
}

#[test]
fn auto_representation_switches_at_the_threshold() {
    let results = run(2, "shm", "rank_auto", &[]);
    for r in &results {
        // Round 0 is dense (first scatter), round 1 sparse (5 of 100
        // changed < 0.1), round 2 dense (10 of 100 is not below 0.1),
        // round 3 sparse (nothing changed), round 4 dense (30 changed).
        assert_eq!(r["sparse_after"], json!([0, 1, 1, 2, 2]), "{r}");
        assert_eq!(
            r["bytes_after"],
            json!([
                432,
                432 + 88,
                432 + 88 + 432,
                432 + 88 + 432 + 48,
                432 + 88 + 432 + 48 + 432
            ]),
            "{r}"
        );
        assert_eq!(r["mirror_exact"], true, "{r}");
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_auto() {
    let group = join();
    let rank = group.rank();
    let peer = 1 - rank;
    // Round k changes the entries in WINDOWS[k]: 5, 10, 0 and 30 of 100.
    const WINDOWS: [(usize, usize); 5] = [(0, 0), (0, 5), (10, 20), (0, 0), (30, 60)];
    let value = |r: usize, round: usize, i: usize| -> f32 {
        let last = (1..=round)
            .filter(|&k| (WINDOWS[k].0..WINDOWS[k].1).contains(&i))
            .max()
            .unwrap_or(0);
        (r * 1000 + i + last * 100_000) as f32
    };
    let opts = VectorOptions::new().representation(Representation::auto());
    let init: Vec<f32> = (0..100).map(|i| value(rank, 0, i)).collect();
    let mut v = DenseVector::<f32>::from_slice(&group, "auto", &init, &opts).expect("create");
    let mut sparse_after = Vec::new();
    let mut bytes_after = Vec::new();
    let mut mirror_exact = true;
    for round in 0..5 {
        for i in 0..100 {
            v[i] = value(rank, round, i);
        }
        v.scatter().expect("scatter");
        sparse_after.push(v.stats().sparse_updates_sent);
        bytes_after.push(v.stats().bytes_sent);
        let mut got = Vec::new();
        // Keep the local vector; look at what the peer's update rebuilt.
        v.gather(|_: &mut [f32], inc: &[&[f32]]| got = inc[0].to_vec())
            .expect("gather");
        mirror_exact &= got.len() == 100 && (0..100).all(|i| got[i] == value(peer, round, i));
    }
    report(json!({
        "rank": rank,
        "sparse_after": sparse_after,
        "bytes_after": bytes_after,
        "mirror_exact": mirror_exact,
    }));
    group.finish().expect("finish");
    drop(v);
}

// ---------------------------------------------------------------------------
// Bad collective calls: typed errors on every rank, and no hang.

#[test]
fn a_failing_merge_function_reports_its_reason_and_loses_no_update() {
    for r in run(2, "shm", "rank_failing_merge", &[]) {
        assert_eq!(
            r["error"], "the merge function failed: refused on purpose",
            "{r}"
        );
        assert_eq!(r["iteration_after_failure"], 0, "{r}");
        assert_eq!(r["untouched"], true, "{r}");
        // The retried gather merges the update the failed one had read.
        assert_eq!(r["merged"], 1, "{r}");
        assert_eq!(r["values"], json!([1.5, 1.5, 1.5, 1.5]), "{r}");
        assert_eq!(r["iteration"], 1, "{r}");
    }
}

/// A merge function of the application's own that refuses its input.
struct Refuse;

impl vol::Merge<f64> for Refuse {
    fn merge_dense(&mut self, _: &mut [f64], _: &[&[f64]]) -> Result<(), vol::MergeError> {
        Err(vol::MergeError::Failed("refused on purpose".into()))
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_failing_merge() {
    let group = join();
    let rank = group.rank();
    let init = vec![(rank + 1) as f64; 4];
    let opts = VectorOptions::new().graph(Graph::All);
    let mut v = DenseVector::<f64>::from_slice(&group, "model", &init, &opts).expect("create");
    v.scatter().expect("scatter");
    let error = match v.gather(Refuse) {
        Err(VolError::Merge(e @ vol::MergeError::Failed(_))) => e.to_string(),
        other => format!("unexpected: {other:?}"),
    };
    let iteration_after_failure = v.iteration();
    let untouched = v.iter().eq(init.iter());
    let info = v.gather(Udf::Avg).expect("gather after the failure");
    report(json!({
        "rank": rank,
        "error": error,
        "iteration_after_failure": iteration_after_failure,
        "untouched": untouched,
        "merged": info.merged,
        "values": v.iter().copied().collect::<Vec<f64>>(),
        "iteration": v.iteration(),
    }));
    group.finish().expect("finish");
    drop(v);
}

#[test]
fn bad_collective_calls_give_typed_errors_on_every_rank() {
    let results = run(3, "shm", "rank_errors", &[]);
    for r in &results {
        assert_eq!(r["element"], "element type", "{r}");
        assert_eq!(r["length"], "length", "{r}");
        assert_eq!(r["name"], "name", "{r}");
        assert_eq!(r["graph"], "graph", "{r}");
        assert_eq!(r["disconnected"], "not strongly connected", "{r}");
        assert_eq!(r["unknown"], "unknown vector", "{r}");
        assert_eq!(r["wrong_type"], "wrong type", "{r}");
        assert_eq!(r["after"], "ok", "{r}");
    }
    // A rank that never scatters: its peers time out naming it.
    for r in &results[..2] {
        assert_eq!(r["missing"], json!([2]), "{r}");
    }
    assert_eq!(results[2]["missing"], "did not gather");
}

fn mismatch_what(r: Result<impl Sized, VolError>) -> String {
    match r {
        Err(VolError::Mismatch { what, .. }) => what.to_string(),
        Err(e) => format!("unexpected error: {e}"),
        Ok(_) => "no error".into(),
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_errors() {
    let group = join();
    let rank = group.rank();
    let o = VectorOptions::new();
    // Element type differs on the last rank.
    let element = if rank == 2 {
        mismatch_what(DenseVector::<f64>::new(&group, "m1", 10, &o))
    } else {
        mismatch_what(DenseVector::<f32>::new(&group, "m1", 10, &o))
    };
    let length = mismatch_what(DenseVector::<f32>::new(&group, "m2", 10 + rank / 2, &o));
    let name = mismatch_what(DenseVector::<f32>::new(
        &group,
        &format!("m3-{}", rank % 2),
        10,
        &o,
    ));
    let graph_opts = if rank == 1 {
        o.clone().graph(Graph::Ring)
    } else {
        o.clone()
    };
    let graph = mismatch_what(DenseVector::<f32>::new(&group, "m4", 10, &graph_opts));
    // Two ranks talk to each other, the third only listens.
    let islands = o
        .clone()
        .graph(Graph::Custom(vec![vec![1, 2], vec![0], vec![]]));
    let disconnected = match DenseVector::<f32>::new(&group, "m5", 10, &islands) {
        Err(VolError::Graph(vol::GraphError::NotStronglyConnected { .. })) => {
            "not strongly connected".to_string()
        }
        Err(e) => format!("unexpected error: {e}"),
        Ok(_) => "no error".into(),
    };
    let mut reg = Registry::new();
    reg.insert(DenseVector::<f32>::new(&group, "known", 10, &o).expect("create"))
        .expect("insert");
    let unknown = match reg.get_mut::<DenseVector<f32>>("never-created") {
        Err(VolError::UnknownVector { known, .. }) if known == ["known"] => "unknown vector",
        _ => "wrong",
    };
    let wrong_type = match reg.get::<DenseVector<f64>>("known") {
        Err(VolError::WrongType { .. }) => "wrong type",
        _ => "wrong",
    };
    // Everyone is still in step: a vector created after all that works.
    let mut after = DenseVector::<f32>::new(&group, "after", 4, &o).expect("after");
    after.fill(rank as f32);
    after.scatter().expect("scatter");
    after.gather(Udf::Sum).expect("gather");
    let after_ok = after.iter().all(|&x| x == 3.0);
    // The last rank is busy elsewhere (outside malt) for longer than the
    // others' bounded wait for its update of "late": that wait ends with an
    // error naming it. (Had it entered a collective instead, the others
    // would get a call mismatch: see the C API's mismatch tests.)
    let late_opts = o.clone().wait_timeout(Duration::from_millis(1500));
    let mut late = DenseVector::<f32>::new(&group, "late", 4, &late_opts).expect("late");
    // Ranks 0 and 1 tell rank 2 (one-sided) when their wait has ended; rank
    // 2 stays out of every collective until then.
    let acks: Vec<Vec<usize>> = vec![vec![2], vec![2], vec![]];
    let mut ack = group
        .create_object(&ObjectSpec::new("late-ack", 8).graph(acks))
        .expect("ack object");
    let missing = if rank == 2 {
        let mut buf = [0u8; 8];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = 0;
        while got < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match ack.poll_timeout(&mut buf, left).expect("ack") {
                Some(_) => got += 1,
                None => panic!("the others' waits did not end within 30 s"),
            }
        }
        json!("did not gather")
    } else {
        late.scatter().expect("scatter");
        let r = match late.gather(Udf::Avg) {
            Err(VolError::Timeout { missing, .. }) => json!(missing),
            Err(e) => json!(format!("unexpected error: {e}")),
            Ok(_) => json!("no error"),
        };
        ack.write(2, &[1u8; 8], 0).expect("ack");
        r
    };
    // Vectors are dropped after the final barrier, so that no segment goes
    // away while a slower peer may still be opening it.
    group.finish().expect("finish");
    drop((after, reg, late, ack));
    report(json!({
        "rank": rank,
        "element": element,
        "length": length,
        "name": name,
        "graph": graph,
        "disconnected": disconnected,
        "unknown": unknown,
        "wrong_type": wrong_type,
        "after": if after_ok { "ok" } else { "wrong sum" },
        "missing": missing,
    }));
}

// ---------------------------------------------------------------------------
// `malt bench gather`'s measurement: fields, Halton's share of the bytes,
// and the allreduce schedule's.

#[test]
fn bench_gather_halton_sends_at_most_045_of_all() {
    let results = run(8, "shm", "rank_bench_gather", &[]);
    let r0 = &results[0];
    let all = &r0["all"];
    let halton = &r0["halton"];
    let allreduce = &r0["allreduce"];
    for r in [all, halton, allreduce] {
        for key in [
            "ranks",
            "len",
            "graph",
            "sync",
            "round_us_p50",
            "round_us_p99",
            "bytes_sent",
            "updates_merged",
            "max_staleness",
        ] {
            assert!(!r[key].is_null(), "{key} missing: {r}");
        }
        assert_eq!(r["ranks"], 8, "{r}");
        assert_eq!(r["sync"], "bsp", "{r}");
        assert_eq!(r["max_staleness"], 0, "{r}");
    }
    // 7 peers per rank for all, 3 for halton: every rank merges them all.
    assert_eq!(all["updates_merged"], 8 * 7 * 4, "{all}");
    assert_eq!(halton["updates_merged"], 8 * 3 * 4, "{halton}");
    // Bsp with Avg: every gather of every rank merged in place.
    assert_eq!(all["gathers_in_place"], 8 * 4, "{all}");
    assert_eq!(halton["gathers_in_place"], 8 * 4, "{halton}");
    let ratio = halton["bytes_sent"].as_f64().unwrap() / all["bytes_sent"].as_f64().unwrap();
    assert!(ratio <= 0.45, "halton / all bytes = {ratio}");
    assert!(
        (ratio - 3.0 / 7.0).abs() < 1e-9,
        "halton / all bytes = {ratio}"
    );
    // The allreduce schedule (auto at 8 ranks and 16 KiB): per rank and
    // round, 7 shares of 512 floats out and 7 merged shares behind their
    // 8-byte tags back.
    assert_eq!(all["schedule"], "direct", "{all}");
    assert_eq!(allreduce["schedule"], "allreduce", "{allreduce}");
    assert_eq!(allreduce["gathers_allreduce"], 8 * 4, "{allreduce}");
    assert_eq!(allreduce["gathers_in_place"], 0, "{allreduce}");
    assert_eq!(
        allreduce["bytes_sent"],
        8 * 4 * 7 * (512 * 4 + 8 + 512 * 4),
        "{allreduce}"
    );
    assert_eq!(allreduce["updates_merged"], 8 * 7 * 4, "{allreduce}");
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_bench_gather() {
    use malt::bench::gather::{bench, GatherOptions};
    let group = join();
    let mut out = json!({ "rank": group.rank() });
    for (key, graph, schedule) in [
        ("all", Graph::All, vol::Schedule::Direct),
        ("halton", Graph::Halton, vol::Schedule::Auto),
        ("allreduce", Graph::All, vol::Schedule::Auto),
    ] {
        let opts = GatherOptions {
            len: 4096,
            graph,
            rounds: 4,
            schedule,
            ..GatherOptions::default()
        };
        let r = bench(&group, &opts).expect("bench");
        if let Some(r) = r {
            out[key] = serde_json::to_value(&r).expect("json");
        }
    }
    report(out);
    group.finish().expect("finish");
}

// ---------------------------------------------------------------------------
// Under Bsp, built-in merges read the updates in place; the result is the
// mirrors' result, bit for bit.

#[test]
fn bsp_merges_in_place_give_the_copied_result_bit_for_bit() {
    for (ranks, transport) in [(2, "shm"), (4, "shm"), (3, "tcp")] {
        let results = run(ranks, transport, "rank_in_place", &[]);
        for r in &results {
            let what = format!("{ranks} ranks over {transport}: {r}");
            assert_eq!(r["in_place"], json!([true, true, true, true]), "{what}");
            assert_eq!(r["copied"], json!([false, false, false, false]), "{what}");
            assert_eq!(r["identical"], true, "{what}");
            assert_eq!(r["stats_in_place"], json!([4, 0]), "{what}");
            assert!(r["max_err"].as_f64().unwrap() < 1e-4, "{what}");
            assert_eq!(r["merged"], (ranks - 1) as u64, "{what}");
        }
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_in_place() {
    let group = join();
    let (rank, n) = (group.rank(), group.world());
    // Several 64 KiB ranges and a short last one.
    let len = 100_003;
    let values: Vec<f32> = (0..len).map(|i| initial(rank, i) as f32).collect();
    // The direct schedule's in-place merge (4 ranks would take the
    // allreduce schedule by default).
    let opts = VectorOptions::new().schedule(vol::Schedule::Direct);
    let mut fast = DenseVector::<f32>::from_slice(&group, "fast", &values, &opts).expect("fast");
    let mut slow = DenseVector::<f32>::from_slice(&group, "slow", &values, &opts).expect("slow");
    // The same kernel behind a closure, which is not elementwise: the
    // updates go through the mirrors.
    let avg = |local: &mut [f32], incoming: &[&[f32]]| {
        vol::udf::Merge::merge_dense(&mut Udf::Avg, local, incoming).expect("avg");
    };
    // Every rank's model as the exact mean says it should be.
    let delta = |r: usize, round: usize, i: usize| ((r * 31 + round * 7 + i) % 13) as f64 * 0.25;
    let mut exact = ExactModels::new(n, len);
    let (mut in_place, mut copied) = (Vec::new(), Vec::new());
    let (mut identical, mut max_err, mut merged) = (true, 0.0f64, 0);
    for round in 0..4 {
        // Every rank changes its copy differently before each exchange.
        for v in [&mut fast, &mut slow] {
            for (i, x) in v.iter_mut().enumerate() {
                *x += delta(rank, round, i) as f32;
            }
        }
        let expect = exact.exchange(|r, i| delta(r, round, i));
        fast.scatter().expect("scatter fast");
        slow.scatter().expect("scatter slow");
        let a = fast.gather(Udf::Avg).expect("gather fast");
        let b = slow.gather(avg).expect("gather slow");
        in_place.push(a.in_place);
        copied.push(b.in_place);
        merged = a.merged;
        identical &= a.merged == b.merged
            && fast
                .iter()
                .zip(slow.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits());
        for (x, e) in fast.iter().zip(&expect) {
            max_err = max_err.max((f64::from(*x) - e).abs() / (1.0 + e.abs()));
        }
    }
    report(json!({
        "rank": rank,
        "stats_in_place": [fast.stats().gathers_in_place, slow.stats().gathers_in_place],
        "in_place": in_place,
        "copied": copied,
        "identical": identical,
        "max_err": max_err,
        "merged": merged,
    }));
    group.finish().expect("finish");
    drop((fast, slow));
}

/// Rank 0 makes one round more than rank 1 and waits for rank 1's update
/// in 100 ms slices (as the Python binding does, to stay responsive to
/// Ctrl-C) while rank 1 waits in the final barrier: both still get the call
/// mismatch, within about a second, though no single slice lasts as long
/// as the quiet time.
#[test]
fn a_mismatch_is_found_when_the_waiting_rank_waits_in_slices() {
    let job = launch_self(2, "shm", "rank_sliced_mismatch", &[], DEADLINE);
    let r = job.results();
    assert_eq!(r.len(), 2, "{}\n{}", job.stdout, job.stderr);
    for v in &r {
        let err = v["err"].as_str().unwrap();
        assert!(
            err.contains("rank 0 waits for an update from rank 1"),
            "{v}"
        );
        assert!(v["after_s"].as_f64().unwrap() < 4.0, "{v}");
    }
    assert!(r[0]["slices"].as_u64().unwrap() >= 2, "{}", r[0]);
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_sliced_mismatch() {
    let group = Group::from_env().expect("join");
    let rank = group.rank();
    let mut v = DenseVector::<f32>::new(&group, "sliced", 64, &VectorOptions::new()).expect("v");
    let rounds = if rank == 0 { 2 } else { 1 };
    let (mut err, mut slices) = (String::new(), 0u64);
    let mut start = Instant::now();
    for _ in 0..rounds {
        v.scatter().expect("scatter");
        v.set_wait_timeout(Duration::from_millis(100));
        start = Instant::now();
        loop {
            match v.gather(Udf::Avg) {
                Ok(_) => break,
                Err(VolError::Timeout { .. }) if start.elapsed() < Duration::from_secs(30) => {
                    slices += 1;
                }
                Err(e) => {
                    err = e.to_string();
                    break;
                }
            }
        }
    }
    if rank == 1 {
        start = Instant::now();
        if let Err(e) = group.finish() {
            err = e.to_string();
        }
    }
    report(json!({
        "rank": rank,
        "err": err,
        "slices": slices,
        "after_s": start.elapsed().as_secs_f64(),
    }));
}
