//! The allreduce schedule over real processes: the same bits on every rank,
//! equal to the direct schedule's result on the first member, the exact mean
//! within rounding, at most 2(N-1)/N of the vector sent per round, and a
//! typed error for a merge function it cannot run.

mod common;

use common::{initial, launch_self, report, ExactModels, Job};
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
            // Plus the 8-byte tag of each merged share.
            let bound = 2 * (ranks - 1) * len.div_ceil(ranks) * 4 + (ranks - 1) * 8;
            let per_round = v["bytes_per_round"].as_u64().unwrap() as usize;
            assert!(per_round <= bound, "{what}: {per_round} > {bound}: {v}");
            let m = &v["merges"];
            let rank = v["rank"].as_u64().unwrap();
            // Every rank passes a closure: refused on every rank, and for good.
            assert_eq!(
                m["all_refuse"],
                json!(["invalid", "invalid"]),
                "{what}: {v}"
            );
            // Rank 0 sums, the others average: every rank fails, values kept.
            assert_eq!(m["mixed"], "mismatch", "{what}: {v}");
            assert_eq!(m["mixed_kept"], true, "{what}: {v}");
            // Rank 1 alone passes a closure: it is refused, and the others
            // learn it from its tag at once, not after a timeout.
            let want = if rank == 1 { "invalid" } else { "mismatch" };
            assert_eq!(m["one_refuses"], want, "{what}: {v}");
            assert_eq!(m["one_refuses_kept"], true, "{what}: {v}");
            assert_eq!(m["schedules_differ"], "schedule", "{what}: {v}");
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
    let mut exact = ExactModels::new(n, len);
    let (mut digests, mut schedules) = (Vec::new(), Vec::new());
    let (mut max_err, mut merged) = (0.0f64, 0);
    for round in 0..ROUNDS {
        for v in [&mut ar, &mut dv] {
            for (i, x) in v.iter_mut().enumerate() {
                *x += delta(rank, round, i) as f32;
            }
        }
        let expect = exact.exchange(|r, i| delta(r, round, i));
        ar.scatter().expect("scatter ar");
        dv.scatter().expect("scatter direct");
        if round == 1 {
            // Changes between scatter and gather are overwritten by the
            // reduction of what every rank scattered.
            for x in ar.iter_mut() {
                *x += 1000.0 + rank as f32;
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
        "merges": merge_disagreements(&group, len),
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

/// The merge disagreements of the allreduce schedule, each on a vector of
/// its own: what every rank's gathers returned, and whether its values were
/// kept.
fn merge_disagreements(group: &Group, len: usize) -> Value {
    let rank = group.rank();
    let forced = VectorOptions::new().schedule(Schedule::Allreduce);
    let kind = |r: Result<vol::GatherInfo, VolError>| match r {
        Ok(_) => "ok".to_string(),
        Err(VolError::InvalidVector { .. }) => "invalid".into(),
        Err(VolError::Mismatch { .. }) => "mismatch".into(),
        Err(e) => format!("unexpected: {e}"),
    };
    let closure = |l: &mut [f32], inc: &[&[f32]]| {
        for x in inc {
            for (a, b) in l.iter_mut().zip(*x) {
                *a += b;
            }
        }
    };
    let values: Vec<f32> = (0..len).map(|i| initial(rank, i) as f32).collect();
    let mut v = DenseVector::<f32>::from_slice(group, "refuse", &values, &forced).expect("v");
    v.scatter().expect("scatter");
    let first = kind(v.gather(closure));
    let again = kind(v.gather(Udf::Avg));
    let mut mixed = DenseVector::<f32>::from_slice(group, "mixed", &values, &forced).expect("v");
    mixed.scatter().expect("scatter");
    let mixed_kind = kind(mixed.gather(if rank == 0 { Udf::Sum } else { Udf::Avg }));
    let mixed_kept = mixed[..] == values[..];
    let mut one = DenseVector::<f32>::from_slice(group, "one", &values, &forced).expect("v");
    one.scatter().expect("scatter");
    let one_kind = if rank == 1 {
        kind(one.gather(closure))
    } else {
        kind(one.gather(Udf::Avg))
    };
    let one_kept = one[..] == values[..];
    // Ranks that would run different schedules are told at creation.
    let schedule = if rank == 0 {
        Schedule::Direct
    } else {
        Schedule::Allreduce
    };
    let differ =
        match DenseVector::<f32>::new(group, "differ", len, &forced.clone().schedule(schedule)) {
            Err(VolError::Mismatch { what, .. }) => what.to_string(),
            Err(e) => format!("unexpected: {e}"),
            Ok(_) => "no error".into(),
        };
    json!({
        "schedules_differ": differ,
        "all_refuse": [first, again],
        "mixed": mixed_kind,
        "mixed_kept": mixed_kept,
        "one_refuses": one_kind,
        "one_refuses_kept": one_kept,
    })
}

/// A gather that timed out waiting for a merged share is made again and
/// completes with the right values: rank 0 waits at most 200 ms, rank 1
/// gathers only once rank 0 has told it (one-sided) that its first try
/// timed out.
#[test]
fn an_allreduce_gather_that_timed_out_can_be_made_again() {
    retried_gathers_end_right("allreduce");
}

/// The same on the direct schedule, where rank 1 scatters only once told,
/// and rank 0 bounds its waits with `set_wait_timeout` after creation (as a
/// binding that waits in slices does).
#[test]
fn a_direct_gather_that_timed_out_can_be_made_again() {
    retried_gathers_end_right("direct");
}

fn retried_gathers_end_right(schedule: &str) {
    let env = [("RETRY_SCHEDULE", schedule)];
    let job = launch_self(3, "shm", "rank_retry", &env, DEADLINE);
    let r = results(&job, 3, "retry");
    for v in &r {
        // The direct schedule sums in each rank's own order.
        if schedule == "allreduce" {
            assert_eq!(v["digest"], r[0]["digest"], "{v}");
        }
        assert!(v["max_err"].as_f64().unwrap() < 1e-5, "{v}");
    }
    let timeouts = r[0]["timeouts"].as_u64().unwrap();
    assert!(timeouts >= 1, "{}", r[0]);
    // The waits that timed out count in the time spent waiting.
    let waited = r[0]["wait_s"].as_f64().unwrap();
    assert!(waited >= 0.19 * timeouts as f64, "{}", r[0]);
    assert_eq!(r[0]["first"], "timeout", "{}", r[0]);
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_retry() {
    let group = Group::from_env().expect("join");
    let (rank, n) = (group.rank(), group.world());
    let len = 30_001;
    let direct = std::env::var("RETRY_SCHEDULE").expect("RETRY_SCHEDULE") == "direct";
    let slice = Duration::from_millis(200);
    let mut opts = VectorOptions::new();
    if direct {
        opts = opts.schedule(Schedule::Direct);
    } else {
        opts = opts.schedule(Schedule::Allreduce);
        if rank == 0 {
            opts = opts.wait_timeout(slice);
        }
    }
    let values: Vec<f32> = (0..len).map(|i| initial(rank, i) as f32).collect();
    let mut v = DenseVector::<f32>::from_slice(&group, "retry", &values, &opts).expect("v");
    if direct && rank == 0 {
        v.set_wait_timeout(slice);
        assert_eq!(v.wait_timeout(), slice);
    }
    let told: Vec<Vec<usize>> = (0..n)
        .map(|r| if r == 0 { vec![1] } else { vec![] })
        .collect();
    let mut tell = group
        .create_object(&dstorm::ObjectSpec::new("retry-told", 8).graph(told))
        .expect("told");
    if !(direct && rank == 1) {
        v.scatter().expect("scatter");
    }
    let (mut timeouts, mut first) = (0u64, String::new());
    match rank {
        0 => loop {
            match v.gather(Udf::Avg) {
                Ok(_) => break,
                Err(VolError::Timeout { .. }) if timeouts < 600 => {
                    if timeouts == 0 {
                        first = "timeout".into();
                        tell.write(1, &[1u8; 8], 0).expect("tell");
                    }
                    timeouts += 1;
                }
                Err(e) => panic!("retry: {e}"),
            }
        },
        1 => {
            let mut buf = [0u8; 8];
            let got = tell
                .poll_timeout(&mut buf, Duration::from_secs(60))
                .expect("told");
            assert!(got.is_some(), "rank 0 never timed out");
            if direct {
                v.scatter().expect("scatter");
            }
            v.gather(Udf::Avg).expect("gather");
        }
        _ => {
            v.gather(Udf::Avg).expect("gather");
        }
    }
    let mut max_err = 0.0f64;
    for (i, x) in v.iter().enumerate() {
        let e: f64 = (0..n).map(|r| f64::from(initial(r, i) as f32)).sum::<f64>() / n as f64;
        max_err = max_err.max((f64::from(*x) - e).abs() / (1.0 + e.abs()));
    }
    report(json!({
        "rank": rank,
        "digest": digest(&v),
        "max_err": max_err,
        "timeouts": timeouts,
        "wait_s": v.stats().wait_time().as_secs_f64(),
        "first": first,
    }));
    group.finish().expect("finish");
    drop((v, tell));
}
