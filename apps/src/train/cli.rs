//! `malt train svm|mf`: the command line around the trainers.
//!
//! Outside a job, `--ranks N` launches N local ranks of this same command
//! (through [`crate::launch`]); `--compare-single` first trains one rank in
//! this process, takes the goal loss from it (unless `--goal-loss` is
//! given), then runs the job and puts both curves and the speedup to the
//! goal on one plot. Inside a job (launched by `malt launch`, srun, mpirun),
//! every rank joins the group and trains its shard through [`VolSync`].

use super::metrics::{read_metrics, RunSummary};
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
    /// Examples between synchronisations (0: only at epoch ends).
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
    /// Objective to reach; its time is reported (default with
    /// --compare-single: 99% of the way from the single rank's first to
    /// its final objective).
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
    /// The single-rank run to compare with (set by --compare-single).
    #[arg(long, hide = true)]
    pub single_from: Option<PathBuf>,
}

/// `malt train svm`
#[derive(Args, Debug, Clone)]
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
    let mut extra: Vec<String> = Vec::new();
    if c.compare_single {
        let single_out = job.out().join("single");
        let single = job.silent(single_out.clone());
        eprintln!("malt train: training one rank for the comparison ...");
        let s = single.run(&mut NoSync)?;
        let goal = c.goal_loss.unwrap_or_else(|| {
            let first = s
                .points
                .first()
                .map_or(s.summary.final_loss, |p| p.objective);
            s.summary.final_loss + 0.01 * (first - s.summary.final_loss)
        });
        if c.goal_loss.is_none() {
            extra.extend(["--goal-loss".into(), goal.to_string()]);
        }
        // Without --data the job finds the single rank's synthetic data
        // in the data directory: it trains on exactly the same files.
        extra.extend(["--single-from".into(), single_out.display().to_string()]);
    }
    if c.ranks == 1 && !c.compare_single {
        return job.run(&mut NoSync).map(|_| ());
    }
    let exe = std::env::current_exe()
        .map_err(|e| TrainError::InvalidOptions(format!("cannot find my own executable: {e}")))?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.extend(extra);
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

/// One rank of a job: join, train, and on rank 0 compare when asked.
fn run_rank(job: &Job, c: &CommArgs) -> Result<(), TrainError> {
    let mut cfg = vol::Config::from_env().map_err(|e| sync_err(0, "configuration", e))?;
    if let Some(t) = c.transport {
        cfg.transport = t;
    }
    let rank = cfg.rank;
    if cfg.world == 1 && c.single_from.is_none() {
        return job.run(&mut NoSync).map(|_| ());
    }
    let group = vol::Group::join(cfg).map_err(|e| sync_err(rank, "join", e))?;
    let mut sync = VolSync::new(group, c.graph.clone(), c.sync, c.representation);
    let comparing = c.single_from.as_deref();
    let run_job = match comparing {
        // The comparison line replaces the job's own summary line.
        Some(_) if job.json() => job.silent(job.out().to_path_buf()),
        _ => match job {
            Job::Svm(o) => Job::Svm(o.clone()),
            Job::Mf(o) => Job::Mf(o.clone()),
        },
    };
    let out = match run_job.run(&mut sync) {
        Ok(out) => out,
        Err(e) => {
            sync.fail(&e);
            return Err(e);
        }
    };
    sync.finish()?;
    if let (Some(single_dir), 0) = (comparing, rank) {
        compare(job, &out, single_dir, c)?;
    }
    Ok(())
}

fn sync_err(rank: usize, what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Sync {
        rank,
        what: what.into(),
        message: e.to_string(),
    }
}

fn compare(job: &Job, out: &RunOutput, single_dir: &Path, c: &CommArgs) -> Result<(), TrainError> {
    let summary_path = single_dir.join("summary.json");
    let text =
        std::fs::read_to_string(&summary_path).map_err(|e| TrainError::io(&summary_path, e))?;
    let single: RunSummary = serde_json::from_str(&text).map_err(|e| TrainError::Metrics {
        file: summary_path.display().to_string(),
        line: 1,
        problem: e.to_string(),
    })?;
    let single_points = read_metrics(&single_dir.join("metrics.csv"))?;
    let goal = c
        .goal_loss
        .or(out.summary.goal_loss)
        .unwrap_or(single.final_loss);
    let mut summary = out.summary.clone();
    summary.compare_with(&out.points, &single, &single_points, goal);
    let (title, y) = job.titles();
    if !c.no_plot {
        if let Err(e) =
            plot_comparison(job.out(), title, y, (&summary, &out.points), &single_points)
        {
            tracing::warn!("{e}");
        }
    }
    summary.write(&job.out().join("summary.json"))?;
    if job.json() {
        println!("{}", summary.to_json());
    } else if !c.quiet {
        // The job printed its summary line; add what the comparison found.
        if let Some(line) = summary.comparison_line() {
            println!("{line}");
        }
    }
    Ok(())
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
