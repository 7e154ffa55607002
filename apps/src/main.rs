//! The `malt` command line.

use clap::{Args, Parser, Subcommand};
use malt::train::cli::{parse_local_ranks, parse_timeout};
use malt::{bench, check, launch};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vol::TransportKind;

#[derive(Parser, Debug)]
#[command(
    name = "malt",
    version,
    about = "Data-parallel machine learning over one-sided writes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start N local ranks of PROGRAM with the job environment set.
    Launch(LaunchArgs),
    /// Verify every byte of every peer's writes (run inside a job).
    Check(CheckArgs),
    /// Measurements against a baseline taken in the same run.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Train a model data-parallel: svm (SGD) or mf (matrix factorization).
    #[command(subcommand)]
    Train(Box<malt::train::cli::TrainCmd>),
    /// Prepare data sets: convert Fashion-MNIST, generate synthetic data.
    #[command(subcommand)]
    Data(DataCmd),
    /// Predict with a model written by `malt train ... --model FILE`, and
    /// score the predictions against the data's labels.
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// The model file.
    #[arg(long)]
    model: PathBuf,
    /// The data: LIBSVM for an svm model, `user item rating` lines for an
    /// mf model (in the format it was trained on).
    #[arg(long)]
    data: PathBuf,
    /// Write the predictions here (one per line) instead of to standard
    /// output; the score line then goes to standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the score as one JSON line (`app`, `examples`, `test_error` or
    /// `test_rmse`).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum DataCmd {
    /// Convert the Debian package dataset-fashion-mnist to LIBSVM train/test files.
    FashionMnist {
        /// Output directory (train.libsvm, test.libsvm).
        #[arg(long)]
        out: PathBuf,
        /// Make the task CLASS (+1) against the rest (-1).
        #[arg(long)]
        binary: Option<u8>,
        /// Where the IDX files are.
        #[arg(long, default_value = malt::data::fashion_mnist::DEFAULT_DIR)]
        source: PathBuf,
    },
    /// RCV1-like sparse binary classification data in LIBSVM format.
    ///
    /// Labels come from a hidden linear separator drawn from --model-seed
    /// (default: --seed); the rows are drawn from --seed. For a training and
    /// a test set of one model, give both files the same --model-seed (and
    /// --features, --nnz) and different seeds, or write both at once with
    /// --test-rows and --test-out.
    SynthSparse {
        /// Rows (examples).
        #[arg(long)]
        rows: u64,
        /// Features.
        #[arg(long)]
        features: u32,
        /// Non-zeros per row.
        #[arg(long)]
        nnz: u32,
        /// Seed of the rows (the sample); also of the hidden separator
        /// unless --model-seed is given.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seed of the hidden model: the separator, its bias and the
        /// features' popularity (default: --seed, as in files written
        /// without it). Files with the same --model-seed, --features and
        /// --nnz share one separator.
        #[arg(long, value_name = "S")]
        model_seed: Option<u64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Also write N test rows of the same model to --test-out: the
        /// rows after --out's rows in the same stream (--out is unchanged).
        #[arg(long, value_name = "N", requires = "test_out",
              value_parser = clap::value_parser!(u64).range(1..))]
        test_rows: Option<u64>,
        /// The test file of --test-rows.
        #[arg(long, value_name = "FILE", requires = "test_rows")]
        test_out: Option<PathBuf>,
    },
    /// Small dense binary classification data in LIBSVM format, shaped like
    /// handwritten digits: ten Gaussian classes (one of them +1, 10% of the
    /// rows by default) with correlated, standardised features.
    ///
    /// The class centres and the shared correlations come from
    /// --model-seed (default: --seed); the rows from --seed. The shape of
    /// the set in `malt`'s convergence tests: --rows 1300 --features 64.
    SynthDense {
        /// Rows (examples).
        #[arg(long)]
        rows: u64,
        /// Features.
        #[arg(long, default_value_t = 64)]
        features: u32,
        /// Classes (clusters); class 0 is +1, the rest -1.
        #[arg(long, default_value_t = 10)]
        classes: u32,
        /// Fraction of rows in the positive class.
        #[arg(long, default_value_t = malt::data::synth::DEFAULT_POSITIVES)]
        positives: f64,
        /// Spread of each class around its centre (larger: more overlap).
        #[arg(long, default_value_t = malt::data::synth::DEFAULT_SPREAD)]
        spread: f64,
        /// Seed of the rows; also of the hidden model unless --model-seed
        /// is given.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seed of the hidden model (class centres and correlations).
        #[arg(long, value_name = "S")]
        model_seed: Option<u64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Also write N test rows of the same model to --test-out.
        #[arg(long, value_name = "N", requires = "test_out",
              value_parser = clap::value_parser!(u64).range(1..))]
        test_rows: Option<u64>,
        /// The test file of --test-rows.
        #[arg(long, value_name = "FILE", requires = "test_rows")]
        test_out: Option<PathBuf>,
    },
    /// Netflix-like ratings (`user item rating` lines).
    ///
    /// Ratings come from hidden user and item factors drawn from
    /// --model-seed (default: --seed) plus Gaussian noise of standard
    /// deviation 0.5 (the RMSE floor); the rated pairs and the noise are
    /// drawn from --seed. For a training and a test set of one model, give
    /// both files the same --model-seed (and --users, --items, --rank) and
    /// different seeds, or write both at once with --test-ratings and
    /// --test-out (then no pair is rated in both).
    SynthRatings {
        /// Users.
        #[arg(long)]
        users: u32,
        /// Items.
        #[arg(long)]
        items: u32,
        /// Rank of the hidden model.
        #[arg(long)]
        rank: u32,
        /// Number of ratings.
        #[arg(long)]
        ratings: u64,
        /// Seed of the ratings (the sample); also of the hidden factors
        /// unless --model-seed is given.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seed of the hidden model: the user and item factors and their
        /// popularity (default: --seed, as in files written without it).
        /// Files with the same --model-seed, --users, --items and --rank
        /// share one model.
        #[arg(long, value_name = "S")]
        model_seed: Option<u64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Also write N test ratings of the same model to --test-out: the
        /// ratings after --out's in the same stream, none of a pair rated
        /// in --out (--out is unchanged).
        #[arg(long, value_name = "N", requires = "test_out", alias = "test-rows",
              value_parser = clap::value_parser!(u64).range(1..))]
        test_ratings: Option<u64>,
        /// The test file of --test-ratings.
        #[arg(long, value_name = "FILE", requires = "test_ratings")]
        test_out: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct LaunchArgs {
    /// Number of ranks (at most 1024).
    #[arg(short = 'n', long = "ranks", value_parser = parse_local_ranks)]
    ranks: usize,
    /// Transport for model bytes.
    #[arg(long, default_value = "shm")]
    transport: TransportKind,
    /// Hard bound on every wait of the ranks (seconds; above one year, `inf`
    /// included, it means one year). None by default: collectives wait for
    /// live ranks, and the fault monitors find dead, stopped or hung ones
    /// within 2T. Once the job's outcome is decided, ranks still running
    /// are ended within 6 s, whatever this is.
    #[arg(long, env = "MALT_TIMEOUT", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Fault tolerance: the job succeeds when at least this many ranks
    /// finish successfully; when ranks die, the survivors regroup and go on
    /// (default: every rank must succeed, any failure stops the job).
    #[arg(long, value_name = "K", env = "MALT_MIN_RANKS")]
    min_ranks: Option<usize>,
    /// Failure timeout T in seconds: a rank whose heartbeat has not moved
    /// for T is evicted (default 5; a crashed rank is noticed at once;
    /// above one year, `inf` included, it means one year).
    #[arg(
        long,
        value_name = "SECS",
        env = "MALT_FAIL_TIMEOUT",
        value_parser = parse_timeout
    )]
    fail_timeout: Option<Duration>,
    /// Regroups allowed before the job stops (default: the number of ranks).
    #[arg(long, value_name = "N", env = "MALT_MAX_REGROUPS")]
    max_regroups: Option<u32>,
    /// The program to run, then its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Transport (default: MALT_TRANSPORT, else shm).
    #[arg(long)]
    transport: Option<TransportKind>,
    /// Update size in bytes (at most 1 GiB).
    #[arg(long, default_value_t = 65536, value_parser = usize_in(0, check::MAX_SIZE))]
    size: usize,
    /// Rounds (at most 1,000,000).
    #[arg(long, default_value_t = 20, value_parser = usize_in(0, check::MAX_ROUNDS))]
    rounds: usize,
}

/// A clap parser of integers in `lo..=hi` that yields `usize`.
fn usize_in(lo: usize, hi: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(lo as u64..=hi as u64)
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// One-sided write throughput and latency between two ranks.
    Write(WriteArgs),
    /// scatter + gather rounds of a dense f32 vector over a graph.
    Gather(GatherArgs),
    /// Tables, ratios and a plot from the lines benches/peers/run.sh collected.
    Report(ReportArgs),
    /// Bytes each rank sends per round and rounds until every rank has every
    /// rank's information, by schedule (computed, not measured).
    Traffic(TrafficArgs),
}

#[derive(Args, Debug)]
struct TrafficArgs {
    /// Ranks (at most 4096).
    #[arg(long, value_parser = usize_in(1, bench::traffic::MAX_RANKS))]
    ranks: usize,
    /// Elements (f32) of the vector (at most 2^34).
    #[arg(long, value_parser = usize_in(1, bench::traffic::MAX_LEN))]
    len: usize,
    /// The direct schedule's graph: all, halton, ring, random:K[:SEED], custom:[[..],..].
    #[arg(long, default_value = "all")]
    graph: vol::Graph,
    /// Consistency: bsp, async, ssp:S.
    #[arg(long, default_value = "bsp")]
    sync: vol::Consistency,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The collected JSON lines.
    #[arg(long)]
    input: PathBuf,
    /// Directory for report.md, report.json, peers.png and peers.svg.
    #[arg(long)]
    out: PathBuf,
    /// Date of the measurement, as written in the report.
    #[arg(long, default_value = "")]
    date: String,
    /// One line describing the machine.
    #[arg(long, default_value = "")]
    machine: String,
    /// The measurement was the quick (smoke) mode.
    #[arg(long)]
    quick: bool,
}

#[derive(Args, Debug)]
struct GatherArgs {
    /// Elements (f32) of the vector (at most 2^28).
    #[arg(long, default_value_t = 1 << 20, value_parser = usize_in(1, bench::gather::MAX_LEN))]
    len: usize,
    /// Communication graph: all, halton, ring, random:K[:SEED], custom:[[..],..].
    #[arg(long, default_value = "all")]
    graph: vol::Graph,
    /// Consistency: bsp, async, ssp:S.
    #[arg(long, default_value = "bsp")]
    sync: vol::Consistency,
    /// Measured rounds (at most 10,000,000).
    #[arg(long, default_value_t = 100, value_parser = usize_in(1, bench::MAX_COUNT))]
    rounds: usize,
    /// One JSON line.
    #[arg(long)]
    json: bool,
    /// Ranks to launch when not inside a job (default 2, at most 1024).
    #[arg(long, value_parser = parse_local_ranks)]
    ranks: Option<usize>,
    /// Transport (default: MALT_TRANSPORT, else shm).
    #[arg(long)]
    transport: Option<TransportKind>,
    /// Add a control-channel barrier between scatter and gather.
    #[arg(long)]
    control_barrier: bool,
    /// Several lengths in one job: LEN:ROUNDS,LEN:ROUNDS,... (overrides --len, --rounds).
    #[arg(long)]
    plan: Option<bench::Plan>,
    /// Pin each rank to one CPU (rank mod the CPUs allowed).
    #[arg(long)]
    pin: bool,
    /// The gather's schedule: auto (allreduce from 3 ranks and 16 KiB under
    /// all/bsp), direct or allreduce.
    #[arg(long, default_value = "auto")]
    schedule: vol::Schedule,
}

#[derive(Args, Debug)]
struct WriteArgs {
    /// Transport to measure.
    #[arg(long, default_value = "shm")]
    transport: TransportKind,
    /// One size in bytes instead of the sweep from 64 B to 64 MiB (at most 1 GiB).
    #[arg(long, value_parser = usize_in(1, bench::MAX_SIZE))]
    size: Option<usize>,
    /// Updates per size (default: 1 GiB worth, between 10 and 20000; at
    /// most 10,000,000).
    #[arg(long, value_parser = usize_in(1, bench::MAX_COUNT))]
    iters: Option<usize>,
    /// One JSON line per size.
    #[arg(long)]
    json: bool,
    /// Sizes with their update counts: BYTES:UPDATES,... (overrides --size, --iters).
    #[arg(long)]
    plan: Option<bench::Plan>,
    /// Throughput only: no latency run, no baseline.
    #[arg(long)]
    throughput_only: bool,
    /// Throughput runs per size, alternating with baseline runs; the
    /// results are medians (default 5, or 1 with --throughput-only).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: Option<u32>,
    /// Pin each rank to one CPU (rank mod the CPUs allowed).
    #[arg(long)]
    pin: bool,
}

/// Prints a data command's summary as one JSON line, or its error.
fn summary<T: serde::Serialize, E: Into<malt::data::DataError>>(r: Result<T, E>) -> ExitCode {
    match r.map_err(Into::into) {
        Ok(s) => match serde_json::to_string(&s) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("malt data: cannot print the summary: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("malt data: {e}");
            ExitCode::from(2)
        }
    }
}

/// What `malt data synth-*` prints: the summary of the file, or with a test
/// file `{"train": ..., "test": ...}`.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Generated<S> {
    One(S),
    Two { train: S, test: S },
}

fn train_and_test<S>((train, test): (S, Option<S>)) -> Generated<S> {
    match test {
        None => Generated::One(train),
        Some(test) => Generated::Two { train, test },
    }
}

fn data(cmd: DataCmd) -> ExitCode {
    use malt::data::{fashion_mnist, synth};
    match cmd {
        DataCmd::FashionMnist {
            out,
            binary,
            source,
        } => {
            let mut o = fashion_mnist::FashionMnistOptions::new(out);
            o.binary = binary;
            o.data_dir = source;
            summary(fashion_mnist::convert(&o))
        }
        DataCmd::SynthSparse {
            rows,
            features,
            nnz,
            seed,
            model_seed,
            out,
            test_rows,
            test_out,
        } => {
            let mut o = synth::SynthSparseOptions::new(rows, features, nnz, seed);
            o.model_seed = model_seed;
            let test = test_rows.zip(test_out.as_deref());
            summary(synth::synth_sparse_files(&o, &out, test).map(train_and_test))
        }
        DataCmd::SynthDense {
            rows,
            features,
            classes,
            positives,
            spread,
            seed,
            model_seed,
            out,
            test_rows,
            test_out,
        } => {
            let o = synth::SynthDenseOptions {
                classes,
                positives,
                spread,
                model_seed,
                ..synth::SynthDenseOptions::new(rows, features, seed)
            };
            let test = test_rows.zip(test_out.as_deref());
            summary(synth::synth_dense_files(&o, &out, test).map(train_and_test))
        }
        DataCmd::SynthRatings {
            users,
            items,
            rank,
            ratings,
            seed,
            model_seed,
            out,
            test_ratings,
            test_out,
        } => {
            let mut o = synth::SynthRatingsOptions::new(users, items, rank, ratings, seed);
            o.model_seed = model_seed;
            let test = test_ratings.zip(test_out.as_deref());
            summary(synth::synth_ratings_files(&o, &out, test).map(train_and_test))
        }
    }
}

fn relaunch(ranks: usize, transport: TransportKind) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("malt: cannot find my own executable: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = launch::LaunchOptions {
        ranks,
        transport,
        timeout: None,
        program: exe,
        args: std::env::args().skip(1).collect(),
        prefix: false,
        env: Vec::new(),
    };
    finish_launch(launch::launch(&opts))
}

fn finish_launch(r: Result<launch::LaunchOutcome, launch::LaunchError>) -> ExitCode {
    match r {
        Ok(outcome) => {
            for line in outcome.report() {
                eprintln!("malt launch: {line}");
            }
            ExitCode::from(outcome.exit_code().clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("malt launch: {e}");
            ExitCode::from(2)
        }
    }
}

fn join(transport: TransportKind) -> Result<vol::Group, vol::GroupError> {
    let mut cfg = vol::Config::from_env()?;
    cfg.transport = transport;
    vol::Group::join(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Launch(_)) {
        malt::log::set_tag("launch");
    }
    malt::log::init();
    match cli.cmd {
        Cmd::Launch(a) => {
            let mut command = a.command.into_iter();
            let program = PathBuf::from(command.next().unwrap_or_default());
            let opts = launch::LaunchOptions {
                ranks: a.ranks,
                transport: a.transport,
                timeout: a.timeout,
                program,
                args: command.collect(),
                prefix: true,
                env: Vec::new(),
            };
            let faults = launch::FaultOptions {
                min_ranks: a.min_ranks,
                fail_timeout: a.fail_timeout,
                max_regroups: a.max_regroups,
            };
            finish_launch(launch::launch_with(&opts, &faults))
        }
        Cmd::Check(a) => {
            let code = check::run(&check::CheckOptions {
                transport: a.transport,
                size: a.size,
                rounds: a.rounds,
            });
            ExitCode::from(code as u8)
        }
        Cmd::Data(cmd) => data(cmd),
        Cmd::Predict(a) => predict(&a),
        Cmd::Train(cmd) => ExitCode::from(malt::train::cli::run(&cmd).clamp(0, 255) as u8),
        Cmd::Bench(BenchCmd::Gather(a)) => {
            let code = bench::gather::run(&bench::gather::GatherOptions {
                len: a.len,
                graph: a.graph,
                sync: a.sync,
                rounds: a.rounds,
                json: a.json,
                ranks: a.ranks,
                transport: a.transport,
                control_barrier: a.control_barrier,
                plan: a.plan,
                pin: a.pin,
                schedule: a.schedule,
            });
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Cmd::Bench(BenchCmd::Traffic(a)) => {
            let opts = bench::traffic::TrafficOptions {
                ranks: a.ranks,
                len: a.len,
                graph: a.graph,
                sync: a.sync,
            };
            ExitCode::from(bench::traffic::run(&opts, a.json))
        }
        Cmd::Bench(BenchCmd::Report(a)) => {
            let opts = bench::report::ReportOptions {
                input: a.input,
                out: a.out,
                date: a.date,
                machine: a.machine,
                quick: a.quick,
            };
            match bench::report::run(&opts) {
                Ok(summary) => match serde_json::to_string(&summary) {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("malt bench report: {e}");
                        ExitCode::from(2)
                    }
                },
                Err(e) => {
                    eprintln!("malt bench report: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Bench(BenchCmd::Write(a)) => {
            if !launch::inside_job() {
                return relaunch(2, a.transport);
            }
            if a.pin {
                bench::usage::pin_from_env("malt bench write");
            }
            let group = match join(a.transport) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("malt bench write: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = bench::write::WriteOptions {
                size: a.size,
                iters: a.iters,
                json: a.json,
                plan: a.plan,
                throughput_only: a.throughput_only,
                repeat: a.repeat.map(|n| n as usize),
            };
            match bench::write::bench(&group, &opts) {
                Ok(results) => {
                    if group.rank() == 0 {
                        bench::write::print(&results, opts.json);
                    }
                    let _ = group.finish();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("malt bench write: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `malt predict`: predictions to `--out` or standard output, the score to
/// standard output (standard error when the predictions take standard
/// output). Exit status 2 with a message on failure.
fn predict(a: &PredictArgs) -> ExitCode {
    let run = || -> Result<malt::train::model::Scored, malt::train::TrainError> {
        match &a.out {
            Some(path) => {
                let f = std::fs::File::create(path).map_err(|e| malt::train::TrainError::Io {
                    path: path.display().to_string(),
                    source: e,
                })?;
                let mut w = std::io::BufWriter::new(f);
                let scored = malt::train::model::predict(&a.model, &a.data, &mut w)?;
                std::io::Write::flush(&mut w).map_err(|e| malt::train::TrainError::Io {
                    path: path.display().to_string(),
                    source: e,
                })?;
                Ok(scored)
            }
            None => {
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                malt::train::model::predict(&a.model, &a.data, &mut w)
            }
        }
    };
    match run() {
        Ok(s) => {
            let line = if a.json {
                serde_json::to_string(&s).unwrap_or_default()
            } else {
                s.human()
            };
            if a.out.is_some() {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("malt predict: {e}");
            ExitCode::from(2)
        }
    }
}
