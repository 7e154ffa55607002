//! The dense data path allocates nothing after warm-up: ranks run as
//! threads of this process (each joins the job over loopback and the shm
//! transport) and count their own allocations during scatter + gather.

use std::time::Duration;

use dstorm::{Config, Group};
use vol::{Consistency, DenseVector, Graph, Schedule, Udf, VectorOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `world` ranks as threads; each returns the allocations counted
/// during its measured rounds.
fn allocations(world: usize, opts: VectorOptions, token: &str) -> Vec<u64> {
    let port = free_port();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let opts = opts.clone();
            let token = token.to_owned();
            std::thread::spawn(move || {
                let mut cfg = Config::local(rank, world, port, &token);
                cfg.timeout = Duration::from_secs(20);
                let group = Group::join(cfg).expect("join");
                let init = vec![rank as f32; 4096];
                let mut v =
                    DenseVector::<f32>::from_slice(&group, "w", &init, &opts).expect("create");
                for _ in 0..3 {
                    v.scatter().expect("scatter");
                    v.gather(Udf::Avg).expect("gather");
                }
                let info = allocation_counter::measure(|| {
                    for _ in 0..200 {
                        v.scatter().expect("scatter");
                        v.gather(Udf::Avg).expect("gather");
                    }
                });
                group.barrier().expect("barrier");
                drop(v);
                group.finish().expect("finish");
                info.count_total
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("rank thread"))
        .collect()
}

#[test]
fn scatter_and_gather_do_not_allocate() {
    // BSP over all-to-all, both schedules.
    let direct = VectorOptions::new().schedule(Schedule::Direct);
    let counts = allocations(3, direct, "no-alloc-bsp");
    assert_eq!(counts, vec![0; 3], "BSP, all, direct");
    let allreduce = VectorOptions::new().schedule(Schedule::Allreduce);
    let counts = allocations(3, allreduce, "no-alloc-allreduce");
    assert_eq!(counts, vec![0; 3], "BSP, all, allreduce");
    // SSP over Halton: progress also travels through the clock object.
    let opts = VectorOptions::new()
        .graph(Graph::Halton)
        .consistency(Consistency::Ssp { s: 1 });
    let counts = allocations(4, opts, "no-alloc-ssp");
    assert_eq!(counts, vec![0; 4], "SSP, halton");
    // ASYNC.
    let opts = VectorOptions::new().consistency(Consistency::Async);
    let counts = allocations(2, opts, "no-alloc-async");
    assert_eq!(counts, vec![0; 2], "ASYNC");
}
