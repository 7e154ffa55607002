//! Where a rank learns who it is: the environment of `malt launch`, an MPI
//! launcher (Open MPI, PMIx, MPICH), torchrun or Slurm, in that order.

pub use crate::env::{Env, ProcessEnv};
use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default port of the master's control listener when none is given.
pub const DEFAULT_MASTER_PORT: u16 = 29517;
/// `master_port` of a job of one rank started without a port: its
/// coordinator listens on a free port the system picks, on loopback.
pub const ANY_PORT: u16 = 0;
/// The most ranks a job may have: the coordinator keeps a connection and a
/// thread per rank, and several tables are sized by the world.
pub const MAX_WORLD: usize = 1 << 16;

/// A world size from outside: between 1 and [`MAX_WORLD`].
pub fn check_world(world: usize, from: &str) -> Result<()> {
    if !(1..=MAX_WORLD).contains(&world) {
        return Err(Error::Config(format!(
            "world size {world} (from {from}) must be between 1 and {MAX_WORLD}"
        )));
    }
    Ok(())
}

/// Directory of the shared-memory segment files unless `MALT_SHM_DIR` says
/// otherwise.
pub const DEFAULT_SHM_DIR: &str = "/dev/shm";
/// What "no bound" means for a wait (a year): the default hard bound
/// (`MALT_TIMEOUT` unset). Collectives wait for live ranks for as long as
/// they live; dead, stopped or hung ones are found by the fault monitors
/// within `2T` instead. (torch.distributed's default collective timeout
/// is 30 minutes.)
pub const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default bound on the rendezvous: how long the ranks that have started
/// wait for the others to connect (`MALT_RENDEZVOUS_TIMEOUT`; torchrun's
/// rendezvous waits 900 s as well).
pub const DEFAULT_RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(900);

/// The largest `MALT_SPIN_US` (one second).
const MAX_SPIN_US: u64 = 1_000_000;
/// Default failure timeout `T`: a peer whose heartbeat has not moved for
/// this long is suspected dead (fault-tolerant jobs only). Long enough that
/// a loaded machine's scheduling hiccups do not evict anyone; a crashed
/// process is detected at once anyway, through its closed connection.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(5);

/// Which transport carries model bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// One host: segments are files in `/dev/shm` mapped by every peer.
    Shm,
    /// Any hosts: write frames applied by a receive thread.
    Tcp,
    /// RDMA one-sided writes (cargo feature `verbs`).
    Verbs,
}

impl TransportKind {
    /// The lower-case name used on the command line and in the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Shm => "shm",
            TransportKind::Tcp => "tcp",
            TransportKind::Verbs => "verbs",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransportKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "shm" => Ok(TransportKind::Shm),
            "tcp" => Ok(TransportKind::Tcp),
            "verbs" | "rdma" => Ok(TransportKind::Verbs),
            other => Err(Error::Config(format!(
                "unknown transport {other:?} (expected shm, tcp or verbs)"
            ))),
        }
    }
}

/// Everything a rank needs to join a group.
///
/// Its fields are public and each is one setting that users set by name
/// (from the environment or in a struct literal with `..Config::local`), so
/// they stay flat rather than grouped.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// Number of ranks in the job.
    pub world: usize,
    /// This process's rank among the ranks on its host, where the launcher
    /// says (`MALT_LOCAL_RANK`, `LOCAL_RANK`, `OMPI_COMM_WORLD_LOCAL_RANK`,
    /// `MPI_LOCALRANKID`, `SLURM_LOCALID`).
    pub local_rank: Option<usize>,
    /// How many ranks run on this host, where the launcher says.
    pub local_world: Option<usize>,
    /// Host or IP address where rank 0 listens for the control channel.
    pub master_addr: String,
    /// Port of the control channel.
    pub master_port: u16,
    /// Secret shared by the ranks of one job; connections without it are refused.
    pub token: String,
    /// The transport for model bytes.
    pub transport: TransportKind,
    /// Bound on every wait.
    pub timeout: Duration,
    /// Bound on the rendezvous (`MALT_RENDEZVOUS_TIMEOUT`, seconds; never
    /// above `timeout`).
    pub rendezvous_timeout: Duration,
    /// Directory of shared-memory segment files.
    pub shm_dir: PathBuf,
    /// Address on which the tcp transport listens for peers' writes
    /// (`MALT_DATA_ADDR`; [`DATA_ADDR_ROUTE`]: the interface that routes to
    /// the master; `0.0.0.0`: every interface, published as the host's
    /// address).
    pub data_addr: String,
    /// Fewest ranks that may go on after failures (`MALT_MIN_RANKS`,
    /// default: the world size, i.e. any failure stops the job).
    pub min_ranks: usize,
    /// Failure timeout `T` (`MALT_FAIL_TIMEOUT`, seconds).
    pub fail_timeout: Duration,
    /// Regroups allowed before the job stops (`MALT_MAX_REGROUPS`, default:
    /// the world size).
    pub max_regroups: u32,
    /// The coordinator runs outside the ranks (`MALT_COORDINATOR=external`,
    /// set by `malt launch`): rank 0 does not start one, so any rank may die.
    pub external_coordinator: bool,
    /// How long a waiting reader polls its segment before it parks, on
    /// shm and tcp (`MALT_SPIN_US`, microseconds; default 30; verbs has
    /// `MALT_RDMA_SPIN_US`). After short waits the spin grows by itself
    /// (up to 500 µs); 0 never spins.
    pub spin: Option<Duration>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("local_rank", &self.local_rank)
            .field("local_world", &self.local_world)
            .field("master_addr", &self.master_addr)
            .field("master_port", &self.master_port)
            .field("token", &"<redacted>")
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .field("rendezvous_timeout", &self.rendezvous_timeout)
            .field("shm_dir", &self.shm_dir)
            .field("data_addr", &self.data_addr)
            .field("min_ranks", &self.min_ranks)
            .field("fail_timeout", &self.fail_timeout)
            .field("max_regroups", &self.max_regroups)
            .field("external_coordinator", &self.external_coordinator)
            .field("spin", &self.spin)
            .finish()
    }
}

/// Fault tolerance settings of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPolicy {
    /// Fewest ranks that may continue. Equal to the world size (the
    /// default), any failure aborts the job.
    pub min_ranks: usize,
    /// `T`: silence after which a peer is suspected.
    pub fail_timeout: Duration,
    /// Regroups allowed before the job is stopped.
    pub max_regroups: u32,
}

impl FaultPolicy {
    /// Whether the job survives failures at all.
    pub fn tolerant(&self, world: usize) -> bool {
        self.min_ranks < world
    }

    /// How long the decider collects reports before acting.
    pub fn window(&self) -> Duration {
        (self.fail_timeout / 10).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }
}

/// How long the coordinator waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The hard bound on a collective round (`MALT_TIMEOUT`; by default a
    /// year, that is none: the fault monitors find dead ranks instead).
    pub timeout: Duration,
    /// How long the ranks may take to connect, from the first one's hello.
    pub rendezvous: Duration,
}

fn parse<T: FromStr>(env: &dyn Env, key: &str) -> Result<Option<T>> {
    match env.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Config(format!("{key}={v:?} is not a valid number"))),
    }
}

/// (rank variable, world variable, launcher) in order of precedence, by
/// specificity: malt's own variables, then an MPI launcher's (Open MPI,
/// PMIx, MPICH's PMI), then torchrun's generic `RANK` and `WORLD_SIZE`, then
/// Slurm's. An MPI launcher run inside a Slurm allocation leaves the batch
/// step's `SLURM_PROCID` (0 in every rank) in the environment, so Slurm
/// comes last. The one exception is torchrun's workers (see
/// [`torchrun_is_innermost`]).
const LAUNCHERS: &[(&str, &str, &str)] = &[
    ("MALT_RANK", "MALT_WORLD_SIZE", "malt"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "open mpi"),
    ("PMIX_RANK", "PMIX_SIZE", "pmix"),
    ("PMI_RANK", "PMI_SIZE", "mpich"),
    ("RANK", "WORLD_SIZE", "torchrun"),
    ("SLURM_PROCID", "SLURM_NTASKS", "slurm"),
];

/// The prefix of the PMIx namespace of an `srun --mpi=pmix` step
/// (`slurm.pmix.<job id>.<step id>`).
const SLURM_PMIX_NAMESPACE: &str = "slurm.pmix.";

/// torchrun's agent gives each worker `TORCHELASTIC_RUN_ID` with `RANK` and
/// `WORLD_SIZE`; a worker that has them was started by torchrun, which then
/// ran inside whatever launcher left its variables around it (`srun
/// torchrun`, or `mpirun torchrun`, one agent per host): the worker's own
/// numbers are torchrun's.
fn torchrun_is_innermost(env: &dyn Env) -> bool {
    env.get("TORCHELASTIC_RUN_ID").is_some() && env.get("RANK").is_some()
}

/// The launcher the environment describes.
struct Found {
    rank: usize,
    world: usize,
    launcher: &'static str,
    /// The variable the world size came from.
    world_var: &'static str,
}

/// Finds the launcher (see [`LAUNCHERS`]); none is a single rank.
fn find_launcher(env: &dyn Env) -> Result<Found> {
    let torchrun_first = torchrun_is_innermost(env);
    let order = LAUNCHERS
        .iter()
        .filter(|l| l.2 == "malt")
        .chain(
            LAUNCHERS
                .iter()
                .filter(|l| torchrun_first && l.2 == "torchrun"),
        )
        .chain(
            LAUNCHERS
                .iter()
                .filter(|l| l.2 != "malt" && !(torchrun_first && l.2 == "torchrun")),
        );
    for &(rk, wk, who) in order {
        let rank: Option<usize> = parse(env, rk)?;
        let world: Option<usize> = parse(env, wk)?;
        match (rank, world) {
            (Some(rank), Some(world)) => {
                return Ok(Found {
                    rank,
                    world,
                    launcher: who,
                    world_var: wk,
                })
            }
            (Some(rank), None) if who == "pmix" => return pmix_without_size(env, rank),
            (Some(_), None) => return Err(Error::Config(format!("{rk} is set but {wk} is not"))),
            (None, Some(_)) => return Err(Error::Config(format!("{wk} is set but {rk} is not"))),
            (None, None) => {}
        }
    }
    Ok(Found {
        rank: 0,
        world: 1,
        launcher: "none",
        world_var: "default",
    })
}

/// PMIx gives every process its rank (`PMIX_RANK`) and namespace
/// (`PMIX_NAMESPACE`) but no variable with the job's size: Open MPI 5's
/// mpirun (prterun) adds `OMPI_COMM_WORLD_*`, read before PMIx, and
/// `srun --mpi=pmix` adds Slurm's own variables for the same step, whose
/// namespace is `slurm.pmix.<job>.<step>`. Anything else needs `PMIX_SIZE`
/// (or `MALT_RANK` and `MALT_WORLD_SIZE`).
fn pmix_without_size(env: &dyn Env, rank: usize) -> Result<Found> {
    let ns = env.get("PMIX_NAMESPACE").unwrap_or_default();
    if ns.starts_with(SLURM_PMIX_NAMESPACE) {
        let world = parse::<usize>(env, "SLURM_NTASKS")?;
        let procid = parse::<usize>(env, "SLURM_PROCID")?;
        if let (Some(world), Some(procid)) = (world, procid) {
            if procid != rank {
                return Err(Error::Config(format!(
                    "PMIX_RANK={rank} and SLURM_PROCID={procid} disagree in an srun \
                     --mpi=pmix step (PMIX_NAMESPACE={ns:?}); set MALT_RANK and \
                     MALT_WORLD_SIZE"
                )));
            }
            return Ok(Found {
                rank,
                world,
                launcher: "slurm",
                world_var: "SLURM_NTASKS",
            });
        }
    }
    Err(Error::Config(format!(
        "PMIX_RANK is set but the job's size is not: neither PMIX_SIZE nor \
         OMPI_COMM_WORLD_SIZE is set, and PMIX_NAMESPACE={ns:?} is not an srun \
         --mpi=pmix step with SLURM_NTASKS; set PMIX_SIZE, or MALT_RANK and \
         MALT_WORLD_SIZE, in every rank"
    )))
}

/// (local rank variable, local world variable) of each launcher.
fn local_vars(launcher: &str) -> Option<(&'static str, &'static str)> {
    Some(match launcher {
        "malt" => ("MALT_LOCAL_RANK", "MALT_LOCAL_WORLD_SIZE"),
        "torchrun" => ("LOCAL_RANK", "LOCAL_WORLD_SIZE"),
        "open mpi" => ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        "mpich" => ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        "slurm" => ("SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
        _ => return None,
    })
}

/// What a job id needs: the variables (as a phrase for errors) and those
/// of them that are not set.
struct NoJobId {
    needs: &'static str,
    unset: Vec<&'static str>,
}

/// The id every rank of a job under `launcher` shares.
fn job_id(env: &dyn Env, launcher: &str) -> std::result::Result<String, NoJobId> {
    let all = |needs: &'static str, keys: &[&'static str]| {
        let vals: Vec<Option<String>> = keys.iter().map(|k| env.get(k)).collect();
        if vals.iter().all(Option::is_some) {
            Ok(vals.into_iter().flatten().collect::<Vec<_>>().join("."))
        } else {
            Err(NoJobId {
                needs,
                unset: keys
                    .iter()
                    .zip(&vals)
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| *k)
                    .collect(),
            })
        }
    };
    match launcher {
        "slurm" => all(
            "SLURM_JOB_ID and SLURM_STEP_ID",
            &["SLURM_JOB_ID", "SLURM_STEP_ID"],
        ),
        // Open MPI 4's mpirun sets the first, Open MPI 5's (prterun) only
        // the PMIx namespace.
        "open mpi" => env
            .get("OMPI_MCA_ess_base_jobid")
            .or_else(|| env.get("PMIX_NAMESPACE"))
            .ok_or(NoJobId {
                needs: "OMPI_MCA_ess_base_jobid (Open MPI 4) or PMIX_NAMESPACE (Open MPI 5)",
                unset: vec!["OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE"],
            }),
        "pmix" => all("PMIX_NAMESPACE", &["PMIX_NAMESPACE"]),
        // torchrun's default run id is the constant "none": the master's
        // port tells apart two jobs of one user.
        "torchrun" => all(
            "TORCHELASTIC_RUN_ID and MASTER_PORT",
            &["TORCHELASTIC_RUN_ID", "MASTER_PORT"],
        ),
        _ => Err(NoJobId {
            needs: "",
            unset: Vec::new(),
        }),
    }
}

/// The port of a job of several ranks' coordinator when none is given:
/// under srun, mpirun and PMIx launchers, one drawn from the job id
/// (20000–29999), so that two jobs started on one host without
/// `malt launch` do not both ask for one port. Ranks started by hand and
/// MPICH's give nothing to draw it from: an error naming `MALT_MASTER_PORT`.
fn default_port(env: &dyn Env, launcher: &str, world: usize) -> Result<u16> {
    if launcher == "malt" || launcher == "mpich" {
        return Err(Error::Config(format!(
            "no port for the coordinator of this job of {world} ranks ({launcher} variables): \
             set MALT_MASTER_PORT to the same free port in every rank (malt launch picks one \
             itself)"
        )));
    }
    let id = match launcher {
        // Without a step id every step of the job shares the port.
        "slurm" => env
            .get("SLURM_JOB_ID")
            .map(|j| format!("{j}.{}", env.get("SLURM_STEP_ID").unwrap_or_default())),
        "open mpi" | "pmix" => job_id(env, launcher).ok(),
        _ => None,
    };
    Ok(match id {
        Some(id) => port_from(&format!("{launcher}:{id}")),
        None => DEFAULT_MASTER_PORT,
    })
}

/// A port in 20000–29999 (below Linux's ephemeral ports) drawn from `key`.
fn port_from(key: &str) -> u16 {
    let h = twox_hash::XxHash3_64::oneshot(key.as_bytes());
    20000 + (h % 10000) as u16
}

/// The coordinator's port when only `MASTER_PORT` is given. That port is
/// torch.distributed's: torchrun's agent binds it for its own store (and a
/// program that calls `init_process_group("env://")` binds it in rank 0), so
/// malt takes another one drawn from it, the same in every rank: a port in
/// 20000–29999, never `MASTER_PORT` itself.
pub fn port_beside(master_port: u16) -> u16 {
    let p = port_from(&format!("beside:{master_port}"));
    if p == master_port {
        20000 + (p - 20000 + 1) % 10000
    } else {
        p
    }
}

/// The master's address under Slurm when no variable gives one: the first
/// host of the step (`SLURM_STEP_NODELIST`, else `SLURM_JOB_NODELIST`),
/// where srun's block and cyclic distributions put task 0; `Ok(None)`
/// without a list, loopback when the list names one host.
/// (`SLURM_LAUNCH_NODE_IPADDR` is where srun ran, not rank 0's host.)
fn slurm_master(env: &dyn Env) -> Result<Option<String>> {
    for var in ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"] {
        if let Some(list) = env.get(var) {
            let first = crate::hostlist::first_host(var, &list)
                .map_err(|e| Error::Config(e.to_string()))?;
            return Ok(Some(if first.more {
                first.host
            } else {
                "127.0.0.1".to_string()
            }));
        }
    }
    Ok(None)
}

/// A port from `key`, if set: a number from 1 to 65535.
fn port(env: &dyn Env, key: &str) -> Result<Option<u16>> {
    match parse::<u16>(env, key)? {
        Some(0) => Err(Error::Config(format!(
            "{key}=0 is not a port a coordinator can be reached on (1 to 65535)"
        ))),
        p => Ok(p),
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_source(&ProcessEnv)
    }

    /// Reads the configuration from `env` (see the README for every variable).
    pub fn from_source(env: &dyn Env) -> Result<Config> {
        let Found {
            rank,
            world,
            launcher,
            world_var,
        } = find_launcher(env)?;
        check_world(world, world_var)?;
        if rank >= world {
            return Err(Error::RankOutOfRange { rank, world });
        }
        let (local_rank, local_world) = match local_vars(launcher) {
            Some((lr, lw)) if world > 1 => (
                parse::<usize>(env, lr)?.filter(|r| *r < world),
                // Slurm writes counts such as "2(x3)" there; only a plain
                // number is a local world size.
                parse::<usize>(env, lw)
                    .ok()
                    .flatten()
                    .filter(|w| (1..=world).contains(w)),
            ),
            _ if world == 1 => (Some(0), Some(1)),
            _ => (None, None),
        };
        let given = env
            .get("MALT_MASTER_ADDR")
            .or_else(|| env.get("MASTER_ADDR"));
        let from_nodes = match (&given, launcher) {
            (None, "slurm") => slurm_master(env)?,
            _ => None,
        };
        let master_addr = match given.or(from_nodes) {
            Some(a) => a,
            None => {
                let nodes = parse::<usize>(env, "SLURM_NNODES").ok().flatten();
                let spread = local_world.is_some_and(|l| l < world)
                    || (launcher == "slurm" && nodes.is_some_and(|n| n > 1));
                if spread {
                    return Err(Error::Config(format!(
                        "the {launcher} job spans several hosts, and neither MALT_MASTER_ADDR \
                         nor MASTER_ADDR says where rank 0's coordinator listens; set one of \
                         them to rank 0's host in every rank"
                    )));
                }
                "127.0.0.1".to_string()
            }
        };
        let given_port = match port(env, "MALT_MASTER_PORT")? {
            Some(p) => Some(p),
            None => port(env, "MASTER_PORT")?.map(port_beside),
        };
        let token = match env.get("MALT_JOB_TOKEN") {
            Some(t) => t,
            None => derived_token(env, launcher, world)?,
        };
        let master_port = match given_port {
            Some(p) => p,
            // A job of one rank: any free loopback port, which no other job
            // can be using.
            None if world == 1 => ANY_PORT,
            None => default_port(env, launcher, world)?,
        };
        let transport = match env.get("MALT_TRANSPORT") {
            Some(t) => t.parse()?,
            None => TransportKind::Shm,
        };
        let timeout = seconds(env, "MALT_TIMEOUT")?.unwrap_or(NO_TIMEOUT);
        let rendezvous_timeout = seconds(env, "MALT_RENDEZVOUS_TIMEOUT")?
            .unwrap_or(DEFAULT_RENDEZVOUS_TIMEOUT)
            .min(timeout);
        let fail_timeout = seconds(env, "MALT_FAIL_TIMEOUT")?.unwrap_or(DEFAULT_FAIL_TIMEOUT);
        let min_ranks = parse::<usize>(env, "MALT_MIN_RANKS")?.unwrap_or(world);
        if !(1..=world).contains(&min_ranks) {
            return Err(Error::Config(format!(
                "MALT_MIN_RANKS={min_ranks} must be between 1 and the world size {world}"
            )));
        }
        let max_regroups = parse::<u32>(env, "MALT_MAX_REGROUPS")?.unwrap_or(world as u32);
        let external_coordinator = match env.get("MALT_COORDINATOR").as_deref() {
            None | Some("rank0") => false,
            Some("external") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "MALT_COORDINATOR={other:?} (expected rank0 or external)"
                )))
            }
        };
        let shm_dir = env
            .get("MALT_SHM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SHM_DIR));
        let data_addr = env
            .get("MALT_DATA_ADDR")
            .unwrap_or_else(|| default_data_addr(&master_addr));
        let spin = match parse::<u64>(env, "MALT_SPIN_US")? {
            Some(us) if us > MAX_SPIN_US => {
                return Err(Error::Config(format!(
                    "MALT_SPIN_US={us} is more than {MAX_SPIN_US} microseconds"
                )))
            }
            us => us.map(Duration::from_micros),
        };
        Ok(Config {
            rank,
            world,
            local_rank,
            local_world,
            master_addr,
            master_port,
            token,
            transport,
            timeout,
            rendezvous_timeout,
            shm_dir,
            data_addr,
            min_ranks,
            fail_timeout,
            max_regroups,
            external_coordinator,
            spin,
        })
    }

    /// The coordinator's and the control channel's bounds.
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            timeout: self.timeout,
            rendezvous: self.rendezvous_timeout,
        }
    }

    /// The fault-tolerance settings.
    pub fn fault_policy(&self) -> FaultPolicy {
        FaultPolicy {
            min_ranks: self.min_ranks,
            fail_timeout: self.fail_timeout,
            max_regroups: self.max_regroups,
        }
    }

    /// A configuration for rank `rank` of `world` with every other field at its default.
    pub fn local(rank: usize, world: usize, port: u16, token: &str) -> Config {
        Config {
            rank,
            world,
            local_rank: Some(rank),
            local_world: Some(world),
            master_addr: "127.0.0.1".into(),
            master_port: port,
            token: token.into(),
            transport: TransportKind::Shm,
            timeout: NO_TIMEOUT,
            rendezvous_timeout: DEFAULT_RENDEZVOUS_TIMEOUT,
            shm_dir: PathBuf::from(DEFAULT_SHM_DIR),
            data_addr: "127.0.0.1".into(),
            min_ranks: world,
            fail_timeout: DEFAULT_FAIL_TIMEOUT,
            max_regroups: world as u32,
            spin: None,
            external_coordinator: false,
        }
    }
}

/// A positive number of seconds from `key`, if set.
fn seconds(env: &dyn Env, key: &str) -> Result<Option<Duration>> {
    let Some(v) = env.get(key) else {
        return Ok(None);
    };
    let secs: f64 = v
        .trim()
        .parse()
        .map_err(|_| Error::Config(format!("{key}={v:?} is not a number of seconds")))?;
    if !(secs > 0.0 && secs.is_finite() && secs < 1e9) {
        return Err(Error::Config(format!(
            "{key}={v:?} must be a positive number of seconds"
        )));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// `MALT_DATA_ADDR` unless set: the address of this host's interface that
/// routes to the master, found when the tcp transport starts.
pub const DATA_ADDR_ROUTE: &str = "route";

/// Loopback masters imply loopback data; otherwise the tcp transport
/// listens on the interface through which this host reaches the master
/// (the one its peers reach it by on a flat cluster network), not on every
/// interface.
fn default_data_addr(master: &str) -> String {
    if master == "localhost" || master.starts_with("127.") || master == "::1" {
        "127.0.0.1".into()
    } else {
        DATA_ADDR_ROUTE.into()
    }
}

/// Under srun, mpirun and torchrun the ranks share a job id, which is
/// public; the token is the HMAC of that id under this user's secret
/// ([`crate::secret`]), which other users cannot read. A single-rank run
/// gets a random token of its own.
fn derived_token(env: &dyn Env, launcher: &str, world: usize) -> Result<String> {
    if world == 1 {
        // Nobody else belongs to the job: a fresh random token, so that no
        // other process can authenticate to its coordinator.
        return Ok(crate::secret::random_token());
    }
    let id = match launcher {
        "mpich" => {
            return Err(Error::Config(
                "no job token: MPICH's mpiexec gives no job id to derive one from; set \
                 MALT_JOB_TOKEN to the same secret in every rank (mpiexec -genv \
                 MALT_JOB_TOKEN ...)"
                    .into(),
            ))
        }
        "slurm" | "open mpi" | "pmix" | "torchrun" => match job_id(env, launcher) {
            Ok(id) => id,
            Err(NoJobId { needs, unset }) => {
                return Err(Error::Config(format!(
                    "no job token: MALT_JOB_TOKEN is not set, and the {launcher} job's token is \
                     derived from {needs}, but {} {} not set; set MALT_JOB_TOKEN to the same \
                     secret in every rank",
                    unset.join(" and "),
                    if unset.len() == 1 { "is" } else { "are" }
                )))
            }
        },
        _ => return Err(Error::MissingToken),
    };
    let Some(path) = crate::secret::path(env) else {
        return Err(Error::Config(format!(
            "no job token: MALT_JOB_TOKEN is not set, and neither MALT_SECRET_FILE nor HOME \
             names a per-user secret to derive one from the {launcher} job id; set either"
        )));
    };
    let secret = crate::secret::load_or_create(&path)?;
    let id = format!("{launcher}:{id}");
    Ok(format!(
        "derived:{}",
        crate::auth::derive(&secret, id.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::env::fake as env;

    #[test]
    fn malt_variables_win_over_torchrun_and_slurm() {
        let e = env(&[
            ("MALT_RANK", "2"),
            ("MALT_WORLD_SIZE", "4"),
            ("RANK", "0"),
            ("WORLD_SIZE", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "6"),
            ("MALT_JOB_TOKEN", "t"),
            ("MALT_MASTER_PORT", "23456"),
        ]);
        let c = Config::from_source(&e).unwrap();
        assert_eq!((c.rank, c.world), (2, 4));
    }

    #[test]
    fn malt_spin_us_is_read_in_microseconds_and_unset_by_default() {
        let base = [
            ("MALT_RANK", "0"),
            ("MALT_WORLD_SIZE", "1"),
            ("MALT_JOB_TOKEN", "t"),
        ];
        assert_eq!(Config::from_source(&env(&base)).unwrap().spin, None);
        let mut with = base.to_vec();
        with.push(("MALT_SPIN_US", "5"));
        let c = Config::from_source(&env(&with)).unwrap();
        assert_eq!(c.spin, Some(Duration::from_micros(5)));
    }

    /// A per-user secret file for the derived-token tests.
    fn secret_file(tag: &str, content: &str) -> String {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let p = std::env::temp_dir().join(format!("malt-cfg-secret-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        f.write_all(content.as_bytes()).unwrap();
        p.display().to_string()
    }

    #[test]
    fn launcher_order_is_malt_mpi_torchrun_slurm() {
        let secret = secret_file("order", "0123456789abcdef0123456789abcdef");
        let slurm = [
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_JOB_ID", "77"),
            ("SLURM_STEP_ID", "0"),
            ("MALT_SECRET_FILE", secret.as_str()),
        ];
        let c = Config::from_source(&env(&slurm)).unwrap();
        assert_eq!((c.rank, c.world), (1, 3));
        // torchrun's generic variables come before Slurm's...
        let mut torch = slurm.to_vec();
        torch.extend([("RANK", "2"), ("WORLD_SIZE", "5"), ("MASTER_PORT", "29500")]);
        torch.push(("TORCHELASTIC_RUN_ID", "r"));
        let c = Config::from_source(&env(&torch)).unwrap();
        assert_eq!((c.rank, c.world), (2, 5));
        // ...and every MPI launcher's before torchrun's.
        for mpi in [
            [("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")],
            [("PMIX_RANK", "0"), ("PMIX_SIZE", "2")],
            [("PMI_RANK", "0"), ("PMI_SIZE", "2")],
        ] {
            let mut e = slurm.to_vec();
            e.extend([("RANK", "4"), ("WORLD_SIZE", "8")]);
            e.extend(mpi);
            e.extend([
                ("OMPI_MCA_ess_base_jobid", "12345"),
                ("PMIX_NAMESPACE", "prterun-h-1@1"),
                ("MALT_JOB_TOKEN", "t"),
                ("MALT_MASTER_PORT", "23456"),
            ]);
            let c = Config::from_source(&env(&e)).unwrap();
            assert_eq!((c.rank, c.world), (0, 2), "{mpi:?}");
            // Open MPI before PMIx before MPICH's PMI.
            e.extend([("PMI_RANK", "1"), ("PMI_SIZE", "3")]);
            e.extend([("PMIX_RANK", "1"), ("PMIX_SIZE", "3")]);
            let c = Config::from_source(&env(&e)).unwrap();
            let want = if mpi[0].0 == "OMPI_COMM_WORLD_RANK" {
                (0, 2)
            } else {
                (1, 3)
            };
            assert_eq!((c.rank, c.world), want, "{mpi:?}");
        }
        // MALT_* before everything.
        let mut e = torch.clone();
        e.extend([("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")]);
        e.extend([
            ("MALT_RANK", "3"),
            ("MALT_WORLD_SIZE", "4"),
            ("MALT_JOB_TOKEN", "t"),
        ]);
        let c = Config::from_source(&env(&e)).unwrap();
        assert_eq!((c.rank, c.world), (3, 4));
        let _ = std::fs::remove_file(&secret);
        let c = Config::from_source(&env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MALT_MASTER_PORT", "1234"),
            ("MALT_JOB_TOKEN", "x"),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.world, c.master_port), (1, 2, 1234));
        assert_eq!(c.master_addr, "10.0.0.1");
        assert_eq!(c.data_addr, DATA_ADDR_ROUTE);
    }

    #[test]
    fn torchrun_inside_srun_or_mpirun_reads_torchruns_numbers() {
        // `srun --mpi=pmix torchrun ...` and `mpirun torchrun ...`: one
        // agent per host, whose launcher's variables its workers inherit.
        for outer in [
            [("PMIX_RANK", "1"), ("PMIX_NAMESPACE", "slurm.pmix.7.0")],
            [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")],
            [("PMI_RANK", "1"), ("PMI_SIZE", "2")],
        ] {
            let mut e = vec![
                ("SLURM_PROCID", "1"),
                ("SLURM_NTASKS", "2"),
                ("RANK", "5"),
                ("WORLD_SIZE", "8"),
                ("LOCAL_RANK", "1"),
                ("LOCAL_WORLD_SIZE", "4"),
                ("MASTER_ADDR", "node1"),
                ("MASTER_PORT", "29500"),
                ("TORCHELASTIC_RUN_ID", "job9"),
                ("MALT_JOB_TOKEN", "t"),
            ];
            e.extend(outer);
            let c = Config::from_source(&env(&e)).unwrap();
            assert_eq!(
                (c.rank, c.world, c.local_rank, c.local_world),
                (5, 8, Some(1), Some(4)),
                "{outer:?}"
            );
        }
    }

    #[test]
    fn pmix_ranks_their_size_and_their_job_id() {
        let secret = secret_file("pmix", "0123456789abcdef0123456789abcdef");
        let base = [
            ("PMIX_RANK", "1"),
            ("PMIX_SIZE", "2"),
            ("MALT_SECRET_FILE", secret.as_str()),
        ];
        // The token is derived from the namespace; without it the error
        // names it.
        let e = Config::from_source(&env(&base));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("PMIX_NAMESPACE") && m.contains("MALT_JOB_TOKEN")),
            "{e:?}"
        );
        let token = |ns: &str| {
            let mut e = base.to_vec();
            e.push(("PMIX_NAMESPACE", ns));
            Config::from_source(&env(&e)).unwrap()
        };
        let c = token("prterun-h-123@1");
        assert_eq!((c.rank, c.world), (1, 2));
        assert_eq!(c.token, token("prterun-h-123@1").token);
        assert_ne!(c.token, token("prterun-h-124@1").token);
        assert_ne!(c.master_port, DEFAULT_MASTER_PORT);
        // Without a size and outside srun: refused, naming what to set.
        let e = Config::from_source(&env(&[
            ("PMIX_RANK", "1"),
            ("PMIX_NAMESPACE", "prterun-h-123@1"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("PMIX_SIZE") && m.contains("MALT_WORLD_SIZE")),
            "{e:?}"
        );
        let _ = std::fs::remove_file(&secret);
    }

    #[test]
    fn srun_with_pmix_is_read_as_the_slurm_step_it_is() {
        let secret = secret_file("srun-pmix", "0123456789abcdef0123456789abcdef");
        let slurm = [
            ("SLURM_PROCID", "2"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_JOB_ID", "7"),
            ("SLURM_STEP_ID", "0"),
            ("MALT_SECRET_FILE", secret.as_str()),
        ];
        let plain = Config::from_source(&env(&slurm)).unwrap();
        let mut e = slurm.to_vec();
        e.extend([("PMIX_RANK", "2"), ("PMIX_NAMESPACE", "slurm.pmix.7.0")]);
        let c = Config::from_source(&env(&e)).unwrap();
        assert_eq!((c.rank, c.world), (2, 4));
        assert_eq!(c.token, plain.token, "the same job as srun without pmix");
        assert_eq!(c.master_port, plain.master_port);
        // A PMIx rank that is not this step's: refused.
        let mut e = slurm.to_vec();
        e.extend([("PMIX_RANK", "3"), ("PMIX_NAMESPACE", "slurm.pmix.7.0")]);
        let e = Config::from_source(&env(&e));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("PMIX_RANK=3") && m.contains("SLURM_PROCID=2")),
            "{e:?}"
        );
        let _ = std::fs::remove_file(&secret);
    }

    #[test]
    fn open_mpi_5_derives_its_token_from_the_pmix_namespace() {
        let secret = secret_file("ompi5", "0123456789abcdef0123456789abcdef");
        let base = [
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("PMIX_RANK", "0"),
            ("MALT_SECRET_FILE", secret.as_str()),
        ];
        let e = Config::from_source(&env(&base));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("OMPI_MCA_ess_base_jobid") && m.contains("PMIX_NAMESPACE")),
            "{e:?}"
        );
        let mut with = base.to_vec();
        with.push(("PMIX_NAMESPACE", "prterun-h-9@1"));
        let c = Config::from_source(&env(&with)).unwrap();
        assert!(c.token.starts_with("derived:"));
        let _ = std::fs::remove_file(&secret);
    }

    #[test]
    fn the_missing_token_error_names_the_launchers_variables() {
        let secret = secret_file("names", "0123456789abcdef0123456789abcdef");
        let e = Config::from_source(&env(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_PORT", "29500"),
            ("MALT_SECRET_FILE", &secret),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("TORCHELASTIC_RUN_ID is not set") && m.contains("torchrun")),
            "{e:?}"
        );
        let e = Config::from_source(&env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("MALT_SECRET_FILE", &secret),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("SLURM_JOB_ID and SLURM_STEP_ID are not set")),
            "{e:?}"
        );
        let _ = std::fs::remove_file(&secret);
    }

    #[test]
    fn under_slurm_the_master_is_the_first_host_of_the_step() {
        let base = [
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "6"),
            ("SLURM_NNODES", "6"),
            ("SLURM_LAUNCH_NODE_IPADDR", "10.9.9.9"),
            ("MALT_JOB_TOKEN", "t"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut e = base.to_vec();
            e.extend_from_slice(extra);
            Config::from_source(&env(&e))
        };
        let c = with(&[("SLURM_STEP_NODELIST", "node[007-010,012],gpu3")]).unwrap();
        assert_eq!(c.master_addr, "node007");
        assert_eq!(c.data_addr, DATA_ADDR_ROUTE);
        let c = with(&[("SLURM_JOB_NODELIST", "gpu[2-3]")]).unwrap();
        assert_eq!(c.master_addr, "gpu2");
        let c = with(&[
            ("SLURM_STEP_NODELIST", "b[1-2]"),
            ("SLURM_JOB_NODELIST", "a[1-9]"),
        ])
        .unwrap();
        assert_eq!(c.master_addr, "b1", "the step's list first");
        // Given addresses win.
        let c = with(&[("SLURM_STEP_NODELIST", "b[1-2]"), ("MASTER_ADDR", "m")]).unwrap();
        assert_eq!(c.master_addr, "m");
        let c = with(&[
            ("SLURM_STEP_NODELIST", "b[1-2]"),
            ("MASTER_ADDR", "m"),
            ("MALT_MASTER_ADDR", "mm"),
        ])
        .unwrap();
        assert_eq!(c.master_addr, "mm");
        // One host: loopback.
        let c = with(&[("SLURM_STEP_NODELIST", "node[007]")]).unwrap();
        assert_eq!(c.master_addr, "127.0.0.1");
        // A malformed list is refused, naming its variable.
        let e = with(&[("SLURM_STEP_NODELIST", "node[007-010")]);
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("SLURM_STEP_NODELIST")),
            "{e:?}"
        );
        // No list: the address is required, never srun's host.
        let e = with(&[]);
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("MALT_MASTER_ADDR")),
            "{e:?}"
        );
        // Open MPI inside a Slurm allocation does not take Slurm's list.
        let e = Config::from_source(&env(&[
            ("SLURM_JOB_NODELIST", "a[1-2]"),
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ("MALT_JOB_TOKEN", "t"),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("MALT_MASTER_ADDR")),
            "{e:?}"
        );
    }

    #[test]
    fn master_port_is_torchs_and_malt_takes_another_beside_it() {
        let base = [
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("TORCHELASTIC_RUN_ID", "none"),
            ("MALT_JOB_TOKEN", "t"),
        ];
        let port = |mp: &'static str, malt: Option<&'static str>| {
            let mut e = base.to_vec();
            e.push(("MASTER_PORT", mp));
            if let Some(p) = malt {
                e.push(("MALT_MASTER_PORT", p));
            }
            Config::from_source(&env(&e)).map(|c| c.master_port)
        };
        let p = port("29500", None).unwrap();
        assert_ne!(p, 29500);
        assert!((20000..30000).contains(&p), "{p}");
        assert_eq!(p, port_beside(29500), "the same in every rank");
        assert_ne!(port("29501", None).unwrap(), p, "another job, another port");
        assert_eq!(port("29500", Some("4242")).unwrap(), 4242);
        for bad in ["0", "65536", "x"] {
            let e = port(bad, None);
            assert!(
                matches!(&e, Err(Error::Config(m)) if m.contains("MASTER_PORT")),
                "{bad}: {e:?}"
            );
            let e = port("29500", Some(bad));
            assert!(
                matches!(&e, Err(Error::Config(m)) if m.contains("MALT_MASTER_PORT")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn the_port_beside_is_never_the_port_itself() {
        for p in 1..=u16::MAX {
            let b = port_beside(p);
            assert_ne!(b, p);
            assert!((20000..30000).contains(&b));
        }
    }

    #[test]
    fn the_derived_token_mixes_the_job_id_with_the_users_secret() {
        let a = secret_file("a", "0123456789abcdef0123456789abcdef");
        let b = secret_file("b", "fedcba9876543210fedcba9876543210");
        let token = |secret: &str, job: &str| {
            Config::from_source(&env(&[
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "2"),
                ("SLURM_JOB_ID", job),
                ("SLURM_STEP_ID", "0"),
                ("MALT_SECRET_FILE", secret),
            ]))
            .map(|c| c.token)
        };
        let t = token(&a, "77").unwrap();
        assert_eq!(token(&a, "77").unwrap(), t, "the same for every rank");
        assert!(!t.contains("77"), "{t}");
        assert_ne!(token(&b, "77").unwrap(), t, "another user's secret");
        assert_ne!(token(&a, "78").unwrap(), t, "another job");
        // Without SLURM_STEP_ID the error names it.
        let e = Config::from_source(&env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_ID", "77"),
            ("MALT_SECRET_FILE", &a),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("SLURM_STEP_ID")),
            "{e:?}"
        );
        // No secret to be found: the error says what to set.
        let e = Config::from_source(&env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_ID", "77"),
            ("SLURM_STEP_ID", "0"),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("MALT_SECRET_FILE") && m.contains("MALT_JOB_TOKEN")),
            "{e:?}"
        );
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
    }

    #[test]
    fn mpirun_inside_a_slurm_allocation_reads_the_mpi_rank() {
        // The batch step's SLURM_PROCID=0 is inherited by every rank.
        let c = Config::from_source(&env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ("MALT_MASTER_ADDR", "127.0.0.1"),
            ("MALT_JOB_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.world), (3, 4));
        assert_eq!((c.local_rank, c.local_world), (Some(1), Some(2)));
    }

    #[test]
    fn mpich_ranks_are_read_and_its_missing_token_is_explained() {
        let base = [
            ("PMI_RANK", "1"),
            ("PMI_SIZE", "2"),
            ("MPI_LOCALRANKID", "1"),
            ("MPI_LOCALNRANKS", "2"),
        ];
        let e = Config::from_source(&env(&base));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("MALT_JOB_TOKEN") && m.contains("MPICH")),
            "{e:?}"
        );
        let mut with = base.to_vec();
        with.push(("MALT_JOB_TOKEN", "t"));
        with.push(("MALT_MASTER_PORT", "23456"));
        let c = Config::from_source(&env(&with)).unwrap();
        assert_eq!(
            (c.rank, c.world, c.local_rank, c.local_world),
            (1, 2, Some(1), Some(2))
        );
    }

    #[test]
    fn a_job_over_several_hosts_needs_a_master_address() {
        let e = Config::from_source(&env(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ("MALT_JOB_TOKEN", "t"),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("MALT_MASTER_ADDR")),
            "{e:?}"
        );
        let e = Config::from_source(&env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_NNODES", "2"),
            ("SLURM_NTASKS_PER_NODE", "2(x2)"),
            ("MALT_JOB_TOKEN", "t"),
        ]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("MALT_MASTER_ADDR")),
            "{e:?}"
        );
        // One host: loopback, as before.
        let c = Config::from_source(&env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NNODES", "1"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "2"),
            ("MALT_JOB_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(c.master_addr, "127.0.0.1");
        assert_eq!((c.local_rank, c.local_world), (Some(1), Some(2)));
    }

    #[test]
    fn two_slurm_jobs_on_one_host_get_different_default_ports() {
        let port = |job: &str| {
            Config::from_source(&env(&[
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "2"),
                ("SLURM_JOB_ID", job),
                ("SLURM_STEP_ID", "0"),
                ("MALT_JOB_TOKEN", "t"),
            ]))
            .unwrap()
            .master_port
        };
        let (a, b) = (port("1001"), port("1002"));
        assert_eq!(
            a,
            port("1001"),
            "every rank of a job computes the same port"
        );
        assert_ne!(a, b);
        assert!((20000..30000).contains(&a) && (20000..30000).contains(&b));
    }

    #[test]
    fn a_world_size_from_outside_is_bounded() {
        for (w, ok) in [
            ("65536", true),
            ("65537", false),
            ("1000000000000", false),
            ("18446744073709551615", false),
            ("0", false),
        ] {
            let e = Config::from_source(&env(&[
                ("MALT_RANK", "0"),
                ("MALT_WORLD_SIZE", w),
                ("MALT_JOB_TOKEN", "t"),
                ("MALT_MASTER_PORT", "23456"),
            ]));
            match (ok, e) {
                (true, Ok(c)) => assert_eq!(c.world.to_string(), w),
                (false, Err(Error::Config(m))) => assert!(m.contains("MALT_WORLD_SIZE"), "{m}"),
                (_, other) => panic!("{w}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let e = Config::from_source(&env(&[("MALT_RANK", "4"), ("MALT_WORLD_SIZE", "4")]));
        assert!(matches!(
            e,
            Err(Error::RankOutOfRange { rank: 4, world: 4 })
        ));
        let e = Config::from_source(&env(&[("MALT_RANK", "x"), ("MALT_WORLD_SIZE", "4")]));
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("MALT_RANK")));
        let e = Config::from_source(&env(&[("MALT_RANK", "1")]));
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("MALT_WORLD_SIZE")));
        let e = Config::from_source(&env(&[("MALT_RANK", "1"), ("MALT_WORLD_SIZE", "2")]));
        assert!(matches!(e, Err(Error::MissingToken)));
        let e = Config::from_source(&env(&[
            ("MALT_RANK", "0"),
            ("MALT_WORLD_SIZE", "1"),
            ("MALT_TRANSPORT", "carrier-pigeon"),
        ]));
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("carrier-pigeon")));
        for bad in ["2000000", "-1", "fast"] {
            let e = Config::from_source(&env(&[
                ("MALT_RANK", "0"),
                ("MALT_WORLD_SIZE", "1"),
                ("MALT_JOB_TOKEN", "t"),
                ("MALT_SPIN_US", bad),
            ]));
            assert!(
                matches!(&e, Err(Error::Config(m)) if m.contains("MALT_SPIN_US")),
                "{bad}: {e:?}"
            );
        }
        let e = Config::from_source(&env(&[("MALT_TIMEOUT", "-3")]));
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("MALT_TIMEOUT")));
    }

    #[test]
    fn no_launcher_means_a_single_rank_on_a_port_nobody_else_has() {
        let c = Config::from_source(&env(&[])).unwrap();
        assert_eq!((c.rank, c.world), (0, 1));
        assert_eq!(c.transport, TransportKind::Shm);
        assert_eq!(c.master_port, ANY_PORT);
        assert_eq!(c.master_addr, "127.0.0.1");
    }

    #[test]
    fn several_ranks_started_by_hand_without_a_port_are_told_to_set_one() {
        for e in [
            vec![
                ("MALT_RANK", "1"),
                ("MALT_WORLD_SIZE", "2"),
                ("MALT_JOB_TOKEN", "t"),
            ],
            vec![
                ("PMI_RANK", "0"),
                ("PMI_SIZE", "2"),
                ("MALT_JOB_TOKEN", "t"),
            ],
        ] {
            let r = Config::from_source(&env(&e));
            assert!(
                matches!(&r, Err(Error::Config(m)) if m.contains("set MALT_MASTER_PORT")),
                "{e:?}: {r:?}"
            );
            let mut given = e.clone();
            given.push(("MALT_MASTER_PORT", "23456"));
            assert_eq!(
                Config::from_source(&env(&given)).unwrap().master_port,
                23456
            );
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = Config::local(0, 2, 1, "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
