//! `malt train svm|mf`: the command line around the trainers.
//!
//! Outside a job, `--ranks N` launches N local ranks of this same command
//! (through [`crate::launch`]); `--compare-single` first trains one rank in
//! this process, takes the goal loss from it (unless `--goal-loss` is
//! given), then runs the job and puts both curves and the speedup to the
//! goal on one plot. Inside a job (launched by `malt launch`, srun, mpirun),
//! every rank joins the group and trains its shard through [`VolSync`].

use super::checkpoint::Keep;
use super::load::{Load, Meter};
use super::metrics::{goal_from, median_speedup, read_metrics, MetricPoint, RunSummary};
use super::mf::{run_mf, MfOptions};
use super::svm::{run_svm, SvmOptions};
use super::sync::{ModelSync, NoSync, Udf};
use super::vol_sync::VolSync;
use super::{plot_comparison, RunOutput, TrainError};
use crate::data::libsvm::DEFAULT_MAX_FEATURES;
use crate::launch;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vol::TransportKind;
use vol::{Consistency, Graph, Representation};

/// The longest wait a timeout flag (`--timeout`, `--fail-timeout`) stands
/// for: one year. Larger values, `inf` included, mean this, which is no
/// bound in practice.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The shortest wait a timeout flag stands for: positive values below it
/// mean it.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The most ranks `malt launch -n`, `malt train --ranks` and `malt bench
/// gather --ranks` start on this machine.
pub const MAX_LOCAL_RANKS: usize = 1024;

/// Reads a timeout flag: a positive number of seconds (`inf` allowed),
/// held within [`MIN_TIMEOUT`]..=[`MAX_TIMEOUT`]. Zero, negative numbers
/// and NaN are refused.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be a positive number of seconds".into());
    }
    let secs = secs.min(MAX_TIMEOUT.as_secs_f64());
    let d = Duration::try_from_secs_f64(secs).unwrap_or(MAX_TIMEOUT);
    Ok(d.clamp(MIN_TIMEOUT, MAX_TIMEOUT))
}

/// Reads a number of local ranks: `1..=`[`MAX_LOCAL_RANKS`].
pub fn parse_local_ranks(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| "not a number of ranks".to_string())?;
    if n == 0 {
        return Err("at least one rank is needed".into());
    }
    if n > MAX_LOCAL_RANKS {
        return Err(format!(
            "at most {MAX_LOCAL_RANKS} ranks are launched on one machine"
        ));
    }
    Ok(n)
}

/// `malt train ...`
#[derive(Subcommand, Debug, Clone)]
pub enum TrainCmd {
    /// Linear SVM by SGD (Bottou's svmsgd), data-parallel.
    Svm(SvmArgs),
    /// Matrix factorization by SGD, data-parallel.
    Mf(MfArgs),
}

/// Options every trainer shares: communication and launching.
#[derive(Args, Debug, Clone)]
// The communication flags of `malt train`: its fields are the flags.
pub struct CommArgs {
    /// Examples between synchronisations (0: only at epoch ends; svm:
    /// default 5,000, and with several ranks at most 1/32 of the largest
    /// shard).
    #[arg(long)]
    pub cb: Option<u64>,
    /// Communication graph: all, halton, ring, random:K or random:K:SEED.
    #[arg(
        long,
        default_value = "all",
        help = "Communication graph: all, halton, ring, random:K[:SEED]"
    )]
    pub graph: Graph,
    /// Consistency: bsp, async, ssp:S.
    #[arg(long, default_value = "bsp")]
    pub sync: Consistency,
    /// Model averaging (avg) or summing the ranks' model deltas (sum).
    #[arg(long, default_value = "avg")]
    pub udf: Udf,
    /// Representation of model updates: dense, sparse, auto or
    /// auto:THRESHOLD.
    #[arg(
        long,
        default_value = "dense",
        help = "Representation of model updates: dense, sparse, auto[:THRESHOLD]"
    )]
    pub representation: Representation,
    /// Transport (default: MALT_TRANSPORT, else shm).
    #[arg(long)]
    pub transport: Option<TransportKind>,
    /// Ranks to launch when not inside a job (at most 1024).
    #[arg(long, default_value = "1", value_parser = parse_local_ranks)]
    pub ranks: usize,
    /// Also train one rank on the same data and report the speedup to the goal loss.
    #[arg(long)]
    pub compare_single: bool,
    /// With --compare-single: run R interleaved pairs (one rank, the job;
    /// then the job, one rank; ...) and report the median speedup (1 to 100).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Objective to reach; its time is reported (default with
    /// --compare-single: 99% of the way from the single rank's first
    /// objective to the best it reached).
    #[arg(long)]
    pub goal_loss: Option<f64>,
    /// Stop once the goal loss is reached.
    #[arg(long)]
    pub stop_at_goal: bool,
    /// Hard bound on every wait of the ranks, in seconds (data loading
    /// included); above one year, `inf` included, it means one year. None
    /// by default: the fault monitors find dead, stopped or hung ranks.
    #[arg(long, value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Print one JSON line with the summary.
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no summary line (unless --json).
    #[arg(long)]
    pub quiet: bool,
    /// Do not draw plots.
    #[arg(long)]
    pub no_plot: bool,
    /// Seed of the example order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the built-in synthetic data is generated once and kept for
    /// later runs, named by a hash of its parameters (default:
    /// $MALT_DATA_DIR, else $XDG_CACHE_HOME/malt, else ~/.cache/malt).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write the trained model to FILE: svm weights and bias, mf factors
    /// and biases, with the training options and the model's shape (see
    /// `malt predict`).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Write a checkpoint into DIR every --checkpoint-every epochs (the
    /// model and each rank's state, at the same round on every rank).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub checkpoint_every: u32,
    /// Continue from the last checkpoint in DIR, to --epochs in all (any
    /// number of ranks: after a failure, the survivors may resume).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// This job is one side of a comparison (set by --compare-single): its
    /// rank 0 writes its files into DIR and prints nothing.
    #[arg(long, hide = true, value_name = "DIR")]
    pub comparing: Option<PathBuf>,
}

/// `malt train svm`
#[derive(Args, Debug, Clone)]
// One field per option of the command: its fields are its flags.
pub struct SvmArgs {
    /// Training data (LIBSVM). Without it, a synthetic RCV1-like set is
    /// generated (once, into --data-dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test data (LIBSVM).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Regularisation λ (default 1/n, liblinear's C = 1).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Passes over the data.
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Averaged SGD.
    #[arg(long)]
    pub averaged: bool,
    /// The learning rate at the start (default: calibrated on a sample of
    /// 1,000 training examples); rates above 0.5/λ are used as 0.5/λ.
    #[arg(long)]
    pub eta0: Option<f64>,
    /// Multiclass labels: this class is +1, the others -1.
    #[arg(long)]
    pub positive_class: Option<f64>,
    /// Output directory (metrics.csv, summary.json, plots).
    #[arg(long, default_value = "malt-train-svm")]
    pub out: PathBuf,
    /// Rows of the synthetic training set.
    #[arg(long)]
    pub synth_rows: Option<u64>,
    /// Features of the synthetic set.
    #[arg(long)]
    pub synth_features: Option<u32>,
    /// Non-zeros per row of the synthetic set.
    #[arg(long)]
    pub synth_nnz: Option<u32>,
    /// Largest feature index accepted in --data and --test (the model holds
    /// one weight per feature); a file with a larger index is refused.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_FEATURES,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_features: u32,
    /// How the ranks communicate.
    #[command(flatten)]
    pub comm: CommArgs,
}

/// `malt train mf`
#[derive(Args, Debug, Clone)]
// The command line's mf options: one of its fields per flag.
pub struct MfArgs {
    /// Training ratings (`user item rating`, CSV or MovieLens `::`). Without
    /// it, a synthetic Netflix-like set is generated (once, into --data-dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test ratings.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Rank of the factorization.
    #[arg(long, default_value_t = 10)]
    pub rank: u32,
    /// Regularisation.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning-rate decay per epoch.
    #[arg(long)]
    pub lr_decay: Option<f64>,
    /// Passes over the data.
    #[arg(long, default_value_t = 20)]
    pub epochs: u32,
    /// Output directory.
    #[arg(long, default_value = "malt-train-mf")]
    pub out: PathBuf,
    /// Users of the synthetic set.
    #[arg(long)]
    pub synth_users: Option<u32>,
    /// Items of the synthetic set.
    #[arg(long)]
    pub synth_items: Option<u32>,
    /// Ratings in the synthetic training set.
    #[arg(long)]
    pub synth_ratings: Option<u64>,
    /// Lock-free SGD threads per rank over one shared model (Hogwild), 1 to
    /// 4 per core.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How the ranks communicate.
    #[command(flatten)]
    pub comm: CommArgs,
}

/// One of the two trainers with its options, seen the same way by the
/// launching logic.
enum Job {
    Svm(SvmOptions),
    Mf(MfOptions),
}

/// Copies the options both trainers share from the command line.
macro_rules! apply_comm {
    ($o:expr, $c:expr) => {{
        let c: &CommArgs = $c;
        $o.cb = c.cb.unwrap_or($o.cb);
        $o.udf = c.udf;
        $o.goal_loss = c.goal_loss;
        $o.stop_at_goal = c.stop_at_goal;
        $o.json = c.json;
        $o.quiet = c.quiet;
        $o.plot = !c.no_plot;
        $o.seed = c.seed;
        $o.keep = c.keep();
    }};
}

impl Job {
    fn from_cmd(cmd: &TrainCmd) -> Job {
        match cmd {
            TrainCmd::Svm(a) => {
                let mut o = SvmOptions {
                    data: a.data.clone(),
                    test: a.test.clone(),
                    lambda: a.lambda,
                    epochs: a.epochs,
                    averaged: a.averaged,
                    eta0: a.eta0,
                    positive_class: a.positive_class,
                    out: a.out.clone(),
                    max_features: a.max_features,
                    ..SvmOptions::default()
                };
                if let Some(r) = a.synth_rows {
                    o.synth.rows = r;
                    o.synth.test_rows = (r / 10).max(1);
                }
                if let Some(f) = a.synth_features {
                    o.synth.features = f;
                }
                if let Some(n) = a.synth_nnz {
                    o.synth.nnz = n;
                }
                apply_comm!(o, &a.comm);
                Job::Svm(o)
            }
            TrainCmd::Mf(a) => {
                let mut o = MfOptions {
                    data: a.data.clone(),
                    test: a.test.clone(),
                    rank: a.rank,
                    epochs: a.epochs,
                    out: a.out.clone(),
                    threads: a.threads,
                    ..MfOptions::default()
                };
                o.lambda = a.lambda.unwrap_or(o.lambda);
                o.lr = a.lr.unwrap_or(o.lr);
                o.lr_decay = a.lr_decay.unwrap_or(o.lr_decay);
                if let Some(u) = a.synth_users {
                    o.synth.users = u;
                }
                if let Some(i) = a.synth_items {
                    o.synth.items = i;
                }
                if let Some(r) = a.synth_ratings {
                    o.synth.ratings = r;
                    o.synth.test_ratings = (r / 10).max(1);
                }
                apply_comm!(o, &a.comm);
                Job::Mf(o)
            }
        }
    }

    fn run(&self, sync: &mut dyn ModelSync) -> Result<RunOutput, TrainError> {
        match self {
            Job::Svm(o) => run_svm(o, sync),
            Job::Mf(o) => run_mf(o, sync),
        }
    }

    fn out(&self) -> &Path {
        match self {
            Job::Svm(o) => &o.out,
            Job::Mf(o) => &o.out,
        }
    }

    /// The same job printing nothing and drawing nothing of its own.
    fn silent(&self, out: PathBuf) -> Job {
        match self {
            Job::Svm(o) => Job::Svm(SvmOptions {
                out,
                json: false,
                quiet: true,
                ..o.clone()
            }),
            Job::Mf(o) => Job::Mf(MfOptions {
                out,
                json: false,
                quiet: true,
                ..o.clone()
            }),
        }
    }

    /// The same job writing no model file (the one-rank side of a
    /// comparison: the model is the job's).
    fn without_model(mut self) -> Job {
        match &mut self {
            Job::Svm(o) => (o.keep.model, o.keep.checkpoint) = (None, None),
            Job::Mf(o) => (o.keep.model, o.keep.checkpoint) = (None, None),
        }
        self
    }

    fn titles(&self) -> (&'static str, &'static str) {
        match self {
            Job::Svm(_) => ("malt train svm", "objective (λ/2 |w|² + mean hinge loss)"),
            Job::Mf(_) => ("malt train mf", "training RMSE"),
        }
    }

    fn json(&self) -> bool {
        match self {
            Job::Svm(o) => o.json,
            Job::Mf(o) => o.json,
        }
    }
}

impl CommArgs {
    /// What the run keeps (model, checkpoints) and resumes from.
    fn keep(&self) -> Keep {
        Keep {
            model: self.model.clone(),
            checkpoint: self.checkpoint.clone(),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume.clone(),
        }
    }
}

fn comm(cmd: &TrainCmd) -> &CommArgs {
    match cmd {
        TrainCmd::Svm(a) => &a.comm,
        TrainCmd::Mf(a) => &a.comm,
    }
}

/// Runs `malt train`; returns the process exit code.
pub fn run(cmd: &TrainCmd) -> i32 {
    match run_inner(cmd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("malt train: {e}");
            2
        }
    }
}

fn run_inner(cmd: &TrainCmd) -> Result<(), TrainError> {
    let c = comm(cmd);
    if let Some(d) = &c.data_dir {
        super::prepare::set_data_dir(d.clone());
    }
    let job = Job::from_cmd(cmd);
    if launch::inside_job() {
        return run_rank(&job, c);
    }
    if c.ranks == 0 {
        return Err(TrainError::InvalidOptions(
            "--ranks must be at least 1".into(),
        ));
    }
    if c.compare_single {
        return compare_runs(&job, c);
    }
    if c.ranks == 1 {
        return job.run(&mut NoSync).map(|_| ());
    }
    launch_job(c, &[])
}

/// Launches this command as a job of `c.ranks` ranks, with `extra`
/// arguments, and waits for it.
fn launch_job(c: &CommArgs, extra: &[String]) -> Result<(), TrainError> {
    let exe = std::env::current_exe()
        .map_err(|e| TrainError::InvalidOptions(format!("cannot find my own executable: {e}")))?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.extend(extra.iter().cloned());
    let opts = launch::LaunchOptions {
        ranks: c.ranks,
        transport: c.transport.unwrap_or(TransportKind::Shm),
        timeout: c.timeout,
        program: exe,
        args,
        prefix: false,
        env: Vec::new(),
    };
    let outcome = launch::launch(&opts)
        .map_err(|e| TrainError::InvalidOptions(format!("launching ranks: {e}")))?;
    for (rank, why) in outcome.failures() {
        eprintln!("malt train: rank {rank} {why}");
    }
    match outcome.exit_code() {
        0 => Ok(()),
        code => Err(TrainError::Sync {
            rank: outcome.first_failure.unwrap_or(0),
            what: "the training job".into(),
            message: format!("exited with status {code}"),
        }),
    }
}

/// `--compare-single`: `--repeat` pairs of one rank and the job on the same
/// data, interleaved (pair k runs one rank first when k is even, the job
/// first when it is odd; pair 0 sets the goal, so it runs one rank first),
/// each measured for other processes' load ([`super::load`]). Pair 0 writes
/// into `--out` (one rank into `single/`), pair k into `pairs/k/`. The
/// summary is pair 0's, with the median speedup over the pairs.
fn compare_runs(job: &Job, c: &CommArgs) -> Result<(), TrainError> {
    let out = job.out().to_path_buf();
    let mut goal = c.goal_loss;
    let mut pairs: Vec<(RunSummary, Vec<MetricPoint>, Vec<MetricPoint>)> = Vec::new();
    let mut loads: Vec<(Load, Load)> = Vec::new();
    for k in 0..c.repeat {
        let dir = if k == 0 {
            out.clone()
        } else {
            out.join("pairs").join(k.to_string())
        };
        let mut single = None;
        let mut multi = None;
        for one_rank in if k % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let meter = Meter::start();
            if one_rank {
                eprintln!("malt train: pair {} of {}: one rank ...", k + 1, c.repeat);
                let s = job
                    .silent(dir.join("single"))
                    .without_model()
                    .run(&mut NoSync)?;
                goal = goal.or_else(|| goal_from(&s.points));
                single = Some((s, meter.stop()));
            } else {
                eprintln!(
                    "malt train: pair {} of {}: {} ranks ...",
                    k + 1,
                    c.repeat,
                    c.ranks
                );
                let mut extra = vec!["--comparing".to_string(), dir.display().to_string()];
                if let (Some(g), None) = (goal, c.goal_loss) {
                    extra.extend(["--goal-loss".to_string(), g.to_string()]);
                }
                launch_job(c, &extra)?;
                multi = Some(meter.stop());
            }
        }
        let (Some((s, single_load)), Some(multi_load)) = (single, multi) else {
            unreachable!("both runs of a pair ran");
        };
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut summary: RunSummary =
            serde_json::from_str(&text).map_err(|e| TrainError::Metrics {
                file: path.display().to_string(),
                line: 1,
                problem: e.to_string(),
            })?;
        let points = read_metrics(&dir.join("metrics.csv"))?;
        let g = goal.unwrap_or(s.summary.final_loss);
        summary.compare_with(&points, &s.summary, &s.points, g);
        pairs.push((summary, points, s.points));
        loads.push((multi_load, single_load));
    }
    let speedups: Vec<Option<f64>> = pairs
        .iter()
        .map(|p| p.0.comparison.as_ref().and_then(|c| c.speedup))
        .collect();
    let (mut summary, points, single_points) = pairs.swap_remove(0);
    if let Some(cmp) = summary.comparison.as_mut() {
        let most = |f: fn(&(Load, Load)) -> Option<f64>| {
            loads
                .iter()
                .filter_map(f)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        cmp.others_cores = most(|l| l.0.others_cores);
        cmp.single_others_cores = most(|l| l.1.others_cores);
        cmp.machine_busy = loads.iter().any(|(m, s)| m.busy() || s.busy());
        if speedups.len() > 1 {
            cmp.speedup = median_speedup(&speedups);
            cmp.speedups = speedups;
        }
    }
    let (title, y) = job.titles();
    if !c.no_plot {
        if let Err(e) = plot_comparison(&out, title, y, (&summary, &points), &single_points) {
            tracing::warn!("{e}");
        }
    }
    summary.write(&out.join("summary.json"))?;
    if job.json() {
        println!("{}", summary.to_json());
    } else if !c.quiet {
        println!("{}", summary.human());
        if let Some(line) = summary.comparison_line() {
            println!("{line}");
        }
    }
    Ok(())
}

/// One rank of a job: join, train, and on rank 0 compare when asked.
fn run_rank(job: &Job, c: &CommArgs) -> Result<(), TrainError> {
    let mut cfg = vol::Config::from_env().map_err(|e| sync_err(0, "configuration", e))?;
    if let Some(t) = c.transport {
        cfg.transport = t;
    }
    let rank = cfg.rank;
    if cfg.world == 1 && c.comparing.is_none() {
        return job.run(&mut NoSync).map(|_| ());
    }
    let group = vol::Group::join(cfg).map_err(|e| sync_err(rank, "join", e))?;
    let mut sync = VolSync::new(group, c.graph.clone(), c.sync, c.representation);
    let run_job = match &c.comparing {
        // The process that compares reads the files and prints the result.
        Some(dir) => job.silent(dir.clone()),
        None => match job {
            Job::Svm(o) => Job::Svm(o.clone()),
            Job::Mf(o) => Job::Mf(o.clone()),
        },
    };
    if let Err(e) = run_job.run(&mut sync) {
        sync.fail(&e);
        return Err(e);
    }
    sync.finish()
}

fn sync_err(rank: usize, what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Sync {
        rank,
        what: what.into(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_positive_and_held_within_a_millisecond_and_a_year() {
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        for big in ["1e30", "inf", "1e308", "31536001"] {
            assert_eq!(parse_timeout(big), Ok(MAX_TIMEOUT), "{big}");
        }
        for tiny in ["1e-300", "0.0000001"] {
            assert_eq!(parse_timeout(tiny), Ok(MIN_TIMEOUT), "{tiny}");
        }
        for bad in ["0", "-1", "-inf", "nan", "NaN", "", "ten", "1s"] {
            assert!(parse_timeout(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn local_ranks_are_bounded() {
        assert_eq!(parse_local_ranks("1"), Ok(1));
        assert_eq!(parse_local_ranks("1024"), Ok(MAX_LOCAL_RANKS));
        for bad in [
            "0",
            "1025",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "x",
        ] {
            assert!(parse_local_ranks(bad).is_err(), "{bad} was accepted");
        }
        assert!(parse_local_ranks("0")
            .unwrap_err()
            .contains("at least one rank"));
    }
}
