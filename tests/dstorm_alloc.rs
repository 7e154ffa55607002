//! No heap allocation per write or per poll on the data path: a counting
//! global allocator watches every thread of this process (two ranks, their
//! receive threads, the coordinator) while the ranks exchange updates.
//! The same holds for vol's dense scatter and gather, in place and through
//! the mirrors. This file holds a single test so that no other test
//! allocates meanwhile.

use dstorm::{Config, FlowControl, Group, ObjectSpec, TransportKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use vol::{DenseVector, Udf, VectorOptions};

struct Counting;

static ENABLED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the
// counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ENABLED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ENABLED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: u64 = 2000;
const SIZE: usize = 64 * 1024;

/// Counts the allocations of every thread of the process while `work` runs
/// on both ranks (the count is read on rank 0; 0 elsewhere).
fn counted(rank: usize, sync: &Barrier, work: impl FnOnce()) -> u64 {
    sync.wait();
    if rank == 0 {
        ALLOCS.store(0, Ordering::SeqCst);
        ENABLED.store(true, Ordering::SeqCst);
    }
    sync.wait();
    work();
    sync.wait();
    let n = if rank == 0 {
        ENABLED.store(false, Ordering::SeqCst);
        ALLOCS.load(Ordering::SeqCst)
    } else {
        0
    };
    sync.wait();
    n
}

/// Ping-pong of 64 KiB updates with backpressure: 100 warm-up round trips,
/// then [`ROUNDS`] counted ones.
fn rank(g: &Group, sync: &Barrier) -> u64 {
    let rank = g.rank();
    let mut o = g
        .create_object(&ObjectSpec::new("ping", SIZE).flow(FlowControl::Backpressure))
        .expect("create");
    let peer = 1 - rank;
    let payload = vec![rank as u8; SIZE];
    let mut buf = vec![0u8; SIZE];
    let mut exchange = |i: u64| {
        if rank == 0 {
            o.write(peer, &payload, i).expect("write");
            let u = o
                .poll_from_timeout(peer, &mut buf, Duration::from_secs(10))
                .expect("poll");
            assert_eq!(u.map(|u| u.iteration), Some(i));
        } else {
            let u = o
                .poll_from_timeout(peer, &mut buf, Duration::from_secs(10))
                .expect("poll");
            assert_eq!(u.map(|u| u.iteration), Some(i));
            o.write(peer, &payload, i).expect("write");
        }
    };
    for i in 1..=100 {
        exchange(i);
    }
    counted(rank, sync, || {
        for i in 101..=100 + ROUNDS {
            exchange(i);
        }
    })
}

/// Scatter + gather rounds of a dense vector several ranges long, with
/// `Udf::Avg` (merged in place) and with a closure (through the mirrors):
/// 20 warm-up rounds, then 200 counted ones.
fn vol_rank(g: &Group, sync: &Barrier) -> u64 {
    let opts = VectorOptions::new();
    let mut fast = DenseVector::<f32>::new(g, "fast", 100_003, &opts).expect("fast");
    let mut slow = DenseVector::<f32>::new(g, "slow", 100_003, &opts).expect("slow");
    let mut exchange = || {
        fast.scatter().expect("scatter");
        let info = fast.gather(Udf::Avg).expect("gather");
        assert!(info.in_place && info.merged == 1, "{info:?}");
        slow.scatter().expect("scatter");
        let info = slow
            .gather(|l: &mut [f32], inc: &[&[f32]]| l[0] += inc[0][1])
            .expect("gather");
        assert!(!info.in_place && info.merged == 1, "{info:?}");
    };
    for _ in 0..20 {
        exchange();
    }
    counted(g.rank(), sync, || {
        for _ in 0..200 {
            exchange();
        }
    })
}

/// [`rank`] or [`vol_rank`].
type RankFn = fn(&Group, &Barrier) -> u64;

/// Runs `f` as two ranks (threads) of a job on `transport`; rank 0's count.
fn count_allocs(f: RankFn, transport: TransportKind, shm_dir: &std::path::Path) -> u64 {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sync = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|r| {
            let sync = sync.clone();
            let mut cfg = Config::local(r, 2, port, "alloc-test");
            cfg.transport = transport;
            cfg.shm_dir = shm_dir.to_path_buf();
            cfg.timeout = Duration::from_secs(20);
            std::thread::spawn(move || {
                let g = Group::join(cfg).expect("join");
                let n = f(&g, &sync);
                g.finish().expect("finish");
                n
            })
        })
        .collect();
    let counts: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    counts[0]
}

#[test]
fn writes_and_polls_do_not_allocate() {
    let dir = std::env::temp_dir().join(format!("malt-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for transport in [TransportKind::Shm, TransportKind::Tcp] {
        let n = count_allocs(rank, transport, &dir);
        assert_eq!(
            n, 0,
            "{transport}: {n} heap allocations during {ROUNDS} round trips"
        );
        let n = count_allocs(vol_rank, transport, &dir);
        assert_eq!(
            n, 0,
            "{transport}: {n} heap allocations during 200 dense scatter + gather rounds"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
