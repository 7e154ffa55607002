//! The allreduce schedule over real processes: the same bits on every rank,
//! equal to the direct schedule's result on the first member, the exact mean
//! within rounding, at most 2(N-1)/N of the vector sent per round, and a
//! typed error for a merge function it cannot run.

mod common;

use common::{launch_self, report, Job};
use serde_json::{json, Value};
use std::hash::{Hash, Hasher};
use std::time::Duration;
use vol::{DenseVector, Group, Schedule, Udf, VectorOptions, VolError};

const DEADLINE: Duration = Duration::from_secs(120);

fn results(job: &Job, ranks: usize, what: &str) -> Vec<Value> {
    assert_eq!(job.code, Some(0), "{what}: {job:?}");
    let r = job.results();
    assert_eq!(r.len(), ranks, "{what}: {}", job.stdout);
    r
}

fn env_usize(key: &str) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not set"))
}

fn initial(r: usize, i: usize) -> f64 {
    let x = (r as f64 + 1.0) * 0.37 + (i as f64) * 0.011;
    (x * 7.3).sin() * 10.0
}

fn delta(r: usize, round: usize, i: usize) -> f64 {
    ((r * 31 + round * 7 + i) % 13) as f64 * 0.25 - 1.5
}

fn digest(xs: &[f32]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for x in xs {
        x.to_bits().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

const ROUNDS: usize = 4;

#[test]
fn allreduce_gives_the_same_bits_on_every_rank_and_the_exact_mean() {
    for (ranks, len) in [
        (2usize, 1001usize),
        (3, 100_003),
        (4, 7),
        (4, 100_003),
        (7, 70_001),
    ] {
        let what = format!("{ranks} ranks, {len} elements");
        let job = launch_self(
            ranks,
            "shm",
            "rank_allreduce",
            &[("ARTEST_LEN", &len.to_string())],
            DEADLINE,
        );
        let r = results(&job, ranks, &what);
        let first_direct = r[0]["direct_digest"].clone();
        for v in &r {
            assert_eq!(
                v["schedules"],
                json!(["allreduce", "direct"]),
                "{what}: {v}"
            );
            // Every rank holds the bits the first member's direct merge gave.
            assert_eq!(v["digests"], r[0]["digests"], "{what}: {v}");
            assert_eq!(v["final_digest"], first_direct, "{what}: {v}");
            assert!(v["max_err"].as_f64().unwrap() < 1e-5, "{what}: {v}");
            assert!(v["max_err_sum"].as_f64().unwrap() < 1e-5, "{what}: {v}");
            assert_eq!(v["gathers_allreduce"], 2 * ROUNDS as u64, "{what}: {v}");
            assert_eq!(v["merged"], (ranks - 1) as u64, "{what}: {v}");
            let bound = 2 * (ranks - 1) * len.div_ceil(ranks) * 4;
            let per_round = v["bytes_per_round"].as_u64().unwrap() as usize;
            assert!(per_round <= bound, "{what}: {per_round} > {bound}: {v}");
            assert!(
                v["custom_merge"]
                    .as_str()
                    .unwrap()
                    .contains("merges with avg, sum, max or min"),
                "{what}: {v}"
            );
        }
    }
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_allreduce() {
    let group = Group::from_env().expect("join");
    let (rank, n) = (group.rank(), group.world());
    let len = env_usize("ARTEST_LEN");
    let values: Vec<f32> = (0..len).map(|i| initial(rank, i) as f32).collect();
    let forced = VectorOptions::new().schedule(Schedule::Allreduce);
    let direct = VectorOptions::new().schedule(Schedule::Direct);
    let mut ar = DenseVector::<f32>::from_slice(&group, "ar", &values, &forced).expect("ar");
    let mut dv = DenseVector::<f32>::from_slice(&group, "direct", &values, &direct).expect("d");
    // The exact mean, in f64, of what every rank holds.
    let mut all: Vec<Vec<f64>> = (0..n)
        .map(|r| (0..len).map(|i| f64::from(initial(r, i) as f32)).collect())
        .collect();
    let (mut digests, mut schedules) = (Vec::new(), Vec::new());
    let mut custom_merge = String::new();
    let (mut max_err, mut merged) = (0.0f64, 0);
    for round in 0..ROUNDS {
        for v in [&mut ar, &mut dv] {
            for (i, x) in v.iter_mut().enumerate() {
                *x += delta(rank, round, i) as f32;
            }
        }
        for (r, model) in all.iter_mut().enumerate() {
            for (i, x) in model.iter_mut().enumerate() {
                *x += f64::from(delta(r, round, i) as f32);
            }
        }
        let expect: Vec<f64> = (0..len)
            .map(|i| all.iter().map(|m| m[i]).sum::<f64>() / n as f64)
            .collect();
        ar.scatter().expect("scatter ar");
        dv.scatter().expect("scatter direct");
        if round == ROUNDS - 1 {
            // A merge the owner cannot run for everybody: refused on every
            // rank, before waiting, and the gather can be made again.
            let custom = |l: &mut [f32], inc: &[&[f32]]| {
                for x in inc {
                    for (a, b) in l.iter_mut().zip(*x) {
                        *a += b;
                    }
                }
            };
            match ar.gather(custom) {
                Err(e @ VolError::InvalidVector { .. }) => custom_merge = e.to_string(),
                other => panic!("a custom merge under allreduce gave {other:?}"),
            }
        }
        let a = ar.gather(Udf::Avg).expect("gather ar");
        let d = dv.gather(Udf::Avg).expect("gather direct");
        if round == 0 {
            schedules.push(a.schedule.to_string());
            schedules.push(d.schedule.to_string());
        }
        merged = a.merged;
        digests.push(digest(&ar));
        for (x, e) in ar.iter().zip(&expect) {
            max_err = max_err.max((f64::from(*x) - e).abs() / (1.0 + e.abs()));
        }
        for model in &mut all {
            model.copy_from_slice(&expect);
        }
        // The direct schedule's ranks differ in their last bits: each starts
        // the next round from the allreduce result, so that the last round
        // compares the two schedules from the same values.
        if round < ROUNDS - 1 {
            let from_ar: Vec<f32> = ar.to_vec();
            dv.copy_from_slice(&from_ar);
        }
    }
    let direct_digest = digest(&dv);
    let final_digest = digest(&ar);
    let sent = ar.stats().bytes_sent;
    // Sums: the same schedule with another reduction.
    let mut max_err_sum = 0.0f64;
    for round in 0..ROUNDS {
        let mine: Vec<f32> = (0..len).map(|i| delta(rank, round, i) as f32).collect();
        ar.copy_from_slice(&mine);
        ar.scatter().expect("scatter sum");
        ar.gather(Udf::Sum).expect("gather sum");
        for (i, x) in ar.iter().enumerate() {
            let e: f64 = (0..n).map(|r| f64::from(delta(r, round, i) as f32)).sum();
            max_err_sum = max_err_sum.max((f64::from(*x) - e).abs() / (1.0 + e.abs()));
        }
    }
    report(json!({
        "rank": rank,
        "schedules": schedules,
        "custom_merge": custom_merge,
        "digests": digests,
        "final_digest": final_digest,
        "direct_digest": if rank == 0 { direct_digest } else { String::new() },
        "max_err": max_err,
        "max_err_sum": max_err_sum,
        "merged": merged,
        "gathers_allreduce": ar.stats().gathers_allreduce,
        "bytes_per_round": sent / ROUNDS as u64,
    }));
    group.finish().expect("finish");
    drop((ar, dv));
}
