//! Where a rank learns who it is: the environment of `malt launch`,
//! torchrun, Slurm or Open MPI, in that order.

use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default port of the master's control listener when none is given.
pub const DEFAULT_MASTER_PORT: u16 = 29517;
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
/// Default bound on every wait (rendezvous, barrier, backpressure).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Source of environment variables (a closure in tests, the process environment otherwise).
pub trait Env {
    /// The value of `key`, if set and not empty.
    fn get(&self, key: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key).filter(|v| !v.is_empty())
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
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

/// (rank variable, world variable, launcher) in order of precedence. MPI
/// launchers come before Slurm: mpirun inside a Slurm allocation leaves the
/// batch step's SLURM_PROCID (0 in every rank) in the environment.
const LAUNCHERS: &[(&str, &str, &str)] = &[
    ("MALT_RANK", "MALT_WORLD_SIZE", "malt"),
    ("RANK", "WORLD_SIZE", "torchrun"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "open mpi"),
    ("PMI_RANK", "PMI_SIZE", "mpich"),
    ("SLURM_PROCID", "SLURM_NTASKS", "slurm"),
];

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

/// The port of a job's coordinator when none is given: under srun and
/// mpirun, one drawn from the job id, so that two jobs started on one host
/// without `malt launch` do not both ask for 29517.
fn default_port(env: &dyn Env, launcher: &str) -> u16 {
    let id = match launcher {
        "slurm" => env
            .get("SLURM_JOB_ID")
            .map(|j| format!("{j}.{}", env.get("SLURM_STEP_ID").unwrap_or_default())),
        "open mpi" => env.get("OMPI_MCA_ess_base_jobid"),
        _ => None,
    };
    match id {
        Some(id) => {
            let h = twox_hash::XxHash3_64::oneshot(format!("{launcher}:{id}").as_bytes());
            20000 + (h % 10000) as u16
        }
        None => DEFAULT_MASTER_PORT,
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_source(&ProcessEnv)
    }

    /// Reads the configuration from `env` (see the README for every variable).
    pub fn from_source(env: &dyn Env) -> Result<Config> {
        let mut found = None;
        for (rk, wk, who) in LAUNCHERS {
            let rank: Option<usize> = parse(env, rk)?;
            let world: Option<usize> = parse(env, wk)?;
            match (rank, world) {
                (Some(r), Some(w)) => {
                    found = Some((r, w, *who, *wk));
                    break;
                }
                (Some(_), None) => {
                    return Err(Error::Config(format!("{rk} is set but {wk} is not")))
                }
                (None, Some(_)) => {
                    return Err(Error::Config(format!("{wk} is set but {rk} is not")))
                }
                (None, None) => {}
            }
        }
        let (rank, world, launcher, world_var) = found.unwrap_or((0, 1, "none", "default"));
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
        let master_addr = match env
            .get("MALT_MASTER_ADDR")
            .or_else(|| env.get("MASTER_ADDR"))
        {
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
        let master_port = match parse::<u16>(env, "MALT_MASTER_PORT")? {
            Some(p) => p,
            None => match parse::<u16>(env, "MASTER_PORT")? {
                Some(p) => p,
                None => default_port(env, launcher),
            },
        };
        let token = match env.get("MALT_JOB_TOKEN") {
            Some(t) => t,
            None => derived_token(env, launcher, world)?,
        };
        let transport = match env.get("MALT_TRANSPORT") {
            Some(t) => t.parse()?,
            None => TransportKind::Shm,
        };
        let timeout = seconds(env, "MALT_TIMEOUT")?.unwrap_or(DEFAULT_TIMEOUT);
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
            shm_dir,
            data_addr,
            min_ranks,
            fail_timeout,
            max_regroups,
            external_coordinator,
            spin,
        })
    }

    /// The fault-tolerance settings.
    pub fn fault_policy(&self) -> crate::fault::FaultPolicy {
        crate::fault::FaultPolicy {
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
            timeout: DEFAULT_TIMEOUT,
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
    let ids: &[&str] = match launcher {
        "slurm" => &["SLURM_JOB_ID", "SLURM_STEP_ID"],
        "open mpi" => &["OMPI_MCA_ess_base_jobid"],
        // torchrun's default run id is the constant "none": the master's
        // port tells apart two jobs of one user.
        "torchrun" => &["TORCHELASTIC_RUN_ID", "MASTER_PORT"],
        "mpich" => {
            return Err(Error::Config(
                "no job token: MPICH's mpiexec gives no job id to derive one from; set \
                 MALT_JOB_TOKEN to the same secret in every rank (mpiexec -genv \
                 MALT_JOB_TOKEN ...)"
                    .into(),
            ))
        }
        _ => return Err(Error::MissingToken),
    };
    let mut parts = Vec::with_capacity(ids.len());
    for k in ids {
        match env.get(k) {
            Some(v) => parts.push(v),
            None => {
                return Err(Error::Config(format!(
                    "no job token: MALT_JOB_TOKEN is not set, and the {launcher} job's token is \
                     derived from {} of which {k} is not set; set MALT_JOB_TOKEN to the same \
                     secret in every rank",
                    ids.join(" and ")
                )))
            }
        }
    }
    let Some(path) = crate::secret::path(env) else {
        return Err(Error::Config(format!(
            "no job token: MALT_JOB_TOKEN is not set, and neither MALT_SECRET_FILE nor HOME \
             names a per-user secret to derive one from the {launcher} job id; set either"
        )));
    };
    let secret = crate::secret::load_or_create(&path)?;
    let id = format!("{launcher}:{}", parts.join("."));
    Ok(format!(
        "derived:{}",
        crate::auth::derive(&secret, id.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

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
    fn launcher_order_is_torchrun_mpi_slurm() {
        let secret = secret_file("order", "0123456789abcdef0123456789abcdef");
        let c = Config::from_source(&env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_JOB_ID", "77"),
            ("SLURM_STEP_ID", "0"),
            ("MALT_SECRET_FILE", &secret),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.world), (1, 3));
        let c = Config::from_source(&env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "3"),
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_MCA_ess_base_jobid", "12345"),
            ("MALT_SECRET_FILE", &secret),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.world), (0, 2));
        let _ = std::fs::remove_file(&secret);
        let c = Config::from_source(&env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "1234"),
            ("MALT_JOB_TOKEN", "x"),
        ]))
        .unwrap();
        assert_eq!((c.rank, c.world, c.master_port), (1, 2, 1234));
        assert_eq!(c.master_addr, "10.0.0.1");
        assert_eq!(c.data_addr, DATA_ADDR_ROUTE);
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
    fn no_launcher_means_a_single_rank() {
        let c = Config::from_source(&env(&[])).unwrap();
        assert_eq!((c.rank, c.world), (0, 1));
        assert_eq!(c.transport, TransportKind::Shm);
        assert_eq!(c.master_port, DEFAULT_MASTER_PORT);
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = Config::local(0, 2, 1, "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
