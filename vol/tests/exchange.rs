//! Exchanges between ranks running as threads of this process (each joins
//! the job over loopback, shm transport): sparse diffs and their recovery
//! after a loss, sparse vectors merged by index, and option errors.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use dstorm::{Config, Group};
use vol::{Consistency, DenseVector, Representation, SparseVec, Udf, VectorOptions, VolError};

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `f(rank, group, sync)` on `world` threads joined as one job; `sync`
/// is a thread barrier for sequencing test steps.
fn ranks<R: Send + 'static>(
    world: usize,
    token: &str,
    f: impl Fn(usize, &Group, &Barrier) -> R + Send + Sync + 'static,
) -> Vec<R> {
    let port = free_port();
    let f = Arc::new(f);
    let sync = Arc::new(Barrier::new(world));
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let (f, sync, token) = (f.clone(), sync.clone(), token.to_owned());
            std::thread::spawn(move || {
                let mut cfg = Config::local(rank, world, port, &token);
                cfg.timeout = Duration::from_secs(20);
                let group = Group::join(cfg).expect("join");
                let r = f(rank, &group, &sync);
                group.finish().expect("finish");
                r
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("rank thread"))
        .collect()
}

/// Rank 0's vector after `k` scatters: entry `i` is `i`, plus `k` on the
/// first `k` entries.
fn sender_value(k: usize, i: usize) -> f32 {
    if i < k {
        (i + 100 * k) as f32
    } else {
        i as f32
    }
}

#[test]
fn a_lost_diff_is_ignored_until_the_next_dense_update() {
    let out = ranks(2, "vol-diffs", |rank, group, sync| {
        let opts = VectorOptions::new()
            .consistency(Consistency::Async)
            .representation(Representation::Sparse)
            .refresh(4);
        let init: Vec<f32> = (0..1000).map(|i| sender_value(0, i)).collect();
        let mut v = DenseVector::<f32>::from_slice(group, "diffs", &init, &opts).expect("create");
        let mut seen: Vec<f32> = Vec::new();
        let mut result = (0u64, 0u64, 0u64, true);
        if rank == 0 {
            // Versions 1 (dense: first), 2-4 (diffs), 5 (dense: refresh).
            for k in 1..=5 {
                for i in 0..1000 {
                    v[i] = sender_value(k, i);
                }
                v.scatter().expect("scatter");
            }
            let s = v.stats();
            result.0 = s.sparse_updates_sent;
        }
        sync.wait();
        if rank == 1 {
            // Only versions 4 (a diff on top of 3, never received) and 5
            // (dense) are still queued.
            let info = v
                .gather(|_: &mut [f32], inc: &[&[f32]]| seen = inc[0].to_vec())
                .expect("gather");
            result.1 = v.stats().diffs_dropped;
            result.2 = v.stats().lapped;
            result.3 &= info.merged == 1 && (0..1000).all(|i| seen[i] == sender_value(5, i));
        }
        sync.wait();
        if rank == 0 {
            // Version 6 is a diff on top of 5.
            for i in 0..1000 {
                v[i] = sender_value(6, i);
            }
            v.scatter().expect("scatter");
            result.0 = v.stats().sparse_updates_sent;
        }
        sync.wait();
        if rank == 1 {
            let info = v
                .gather(|_: &mut [f32], inc: &[&[f32]]| seen = inc[0].to_vec())
                .expect("gather");
            result.3 &= info.merged == 1 && (0..1000).all(|i| seen[i] == sender_value(6, i));
        }
        group.barrier().expect("barrier");
        result
    });
    assert_eq!(out[0].0, 4, "versions 2, 3, 4 and 6 go out as diffs");
    assert_eq!(out[1].1, 1, "the diff on top of a lost update is dropped");
    assert_eq!(out[1].2, 3, "versions 1-3 were overwritten unread");
    assert!(out[1].3, "the mirror matches the sender after the refresh");
}

#[test]
fn sparse_vectors_merge_by_index() {
    let out = ranks(2, "vol-sparse", |rank, group, _| {
        let o = VectorOptions::new();
        let mut sum = SparseVec::<u32, f64>::new(group, "sum", 10, 4, &o).expect("sum");
        let mut avg = SparseVec::<u64, f32>::new(group, "avg", 10, 4, &o).expect("avg");
        let entries: &[(u32, f64)] = if rank == 0 {
            &[(0, 1.0), (2, 2.0)]
        } else {
            &[(2, 3.0), (5, 4.0)]
        };
        for &(i, x) in entries {
            sum.insert(i, x).expect("insert");
            avg.insert(u64::from(i), x as f32).expect("insert");
        }
        sum.scatter().expect("scatter");
        avg.scatter().expect("scatter");
        let info = sum.gather(Udf::Sum).expect("gather");
        assert_eq!(info.merged, 1);
        avg.gather(Udf::Avg).expect("gather");
        let s: Vec<(u32, f64)> = sum.iter().collect();
        let a: Vec<(u64, f32)> = avg.iter().collect();
        // Too many entries for the limit given at creation.
        for i in 0..5 {
            sum.insert(i, 1.0).expect("insert");
        }
        let too_many = matches!(
            sum.scatter(),
            Err(VolError::TooManyEntries { nnz: 6, max: 4, .. })
        );
        (s, a, too_many)
    });
    for (s, _, too_many) in &out {
        assert_eq!(s, &[(0, 1.0), (2, 5.0), (5, 4.0)]);
        assert!(*too_many);
    }
    // Avg: local value (zero when absent) with the values carried.
    assert_eq!(out[0].1, vec![(0, 1.0), (2, 2.5), (5, 2.0)]);
    assert_eq!(out[1].1, vec![(0, 0.5), (2, 2.5), (5, 4.0)]);
}

#[test]
fn invalid_options_fail_on_every_rank() {
    let out = ranks(2, "vol-options", |_, group, _| {
        let sparse_repr = VectorOptions::new().representation(Representation::auto());
        let a = matches!(
            SparseVec::<u32, f32>::new(group, "s", 10, 4, &sparse_repr),
            Err(VolError::InvalidVector { .. })
        );
        let shallow = VectorOptions::new().depth(1);
        let b = matches!(
            DenseVector::<f32>::new(group, "d", 10, &shallow),
            Err(VolError::InvalidVector { .. })
        );
        let too_wide = matches!(
            SparseVec::<u32, f32>::new(group, "w", 1 << 33, 4, &VectorOptions::new()),
            Err(VolError::InvalidVector { .. })
        );
        let empty = matches!(
            DenseVector::<f32>::new(group, "e", 0, &VectorOptions::new()),
            Err(VolError::InvalidVector { .. })
        );
        // Still in step afterwards.
        let mut v = DenseVector::<f32>::new(group, "ok", 3, &VectorOptions::new()).expect("ok");
        v.fill(1.0);
        v.scatter().expect("scatter");
        v.gather(Udf::Sum).expect("gather");
        (a, b, too_wide && empty, v.to_vec())
    });
    for (a, b, c, v) in out {
        assert_eq!((a, b, c), (true, true, true));
        assert_eq!(v, vec![2.0; 3]);
    }
}

#[test]
fn a_vector_over_the_callers_memory_averages_in_place() {
    // Rank r holds r + i / 8 at index i (f64) and r * 10 + i (f32); under
    // BSP with `all`, one exchange leaves every rank with the mean, written
    // into the caller's own arrays: through the in-place merge (Avg) and
    // through the mirrors (the sparse representation keeps a vector off the
    // in-place merge).
    let out = ranks(3, "vol-wrap", |rank, group, _| {
        let r = rank as f64;
        let mut wide: Vec<f64> = (0..1001).map(|i| r + i as f64 / 8.0).collect();
        let mut narrow: Vec<f32> = (0..7).map(|i| (rank * 10 + i) as f32).collect();
        let (wide_at, narrow_at) = (wide.as_ptr(), narrow.as_ptr());
        let opts = VectorOptions::new();
        let mut w = DenseVector::wrap(group, "wide", &mut wide[..], &opts).expect("wrap f64");
        assert_eq!(
            w.as_slice().as_ptr(),
            wide_at,
            "the vector is the caller's memory"
        );
        w.scatter().expect("scatter");
        let info = w.gather(Udf::Avg).expect("gather");
        assert!(info.in_place);
        drop(w);
        let sparse = VectorOptions::new().representation(Representation::Sparse);
        let mut n = DenseVector::wrap(group, "narrow", &mut narrow[..], &sparse).expect("wrap");
        for _ in 0..2 {
            n.scatter().expect("scatter");
            n.gather(Udf::Sum).expect("gather");
        }
        assert_eq!(n.into_values().as_ptr(), narrow_at);
        (wide, narrow)
    });
    for (wide, narrow) in out {
        for (i, x) in wide.iter().enumerate() {
            assert_eq!(*x, 1.0 + i as f64 / 8.0, "f64 index {i}");
        }
        // Sum twice: 3 * (0 + 10 + 20 + 3i).
        for (i, x) in narrow.iter().enumerate() {
            assert_eq!(*x, (3 * (30 + 3 * i)) as f32, "f32 index {i}");
        }
    }
}
