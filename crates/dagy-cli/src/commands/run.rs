//! `dagy run`: run a flow here, on the embedded store or on DynamoDB, with live progress.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use dagy_core::{BackendKind, ExecutionMode, Flow, PlanRequest, RuntimeTier, Settings, TierInputs};
use dagy_engine::{Budget, Executor, HandlerRegistry, NewRunRequest, RunOptions, StepOutcome};
use dagy_store::{RunStatus, RunStore, StoreError};

use crate::commands::store::StoreKind;

use crate::progress::{Display, Progress};

/// Arguments of `dagy run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The FlowSpec JSON file (`-` for standard input). Not needed with --resume.
    #[arg(required_unless_present = "resume")]
    pub flow: Option<PathBuf>,
    /// Parameters as a JSON object, merged over the flow's defaults.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Run as this tier: nano (the whole flow in one invocation, 600 s budget) or micro (one
    /// task per invocation, 600 s each); small, medium, large or xlarge with --backend docker.
    /// Without it, the tier is resolved as the router would, and a Fargate tier runs here
    /// without a budget.
    #[arg(long)]
    pub tier: Option<RuntimeTier>,
    /// Where the run executes: here, in this process (default), or `docker`: an ECS tier in a
    /// local container of the worker image with the tier's Fargate limits.
    #[arg(long, value_enum, default_value_t = LocalBackend::Here)]
    pub backend: LocalBackend,
    /// The worker image for --backend docker.
    #[arg(long, env = "DAGY_ECS_WORKER_IMAGE", default_value = crate::commands::docker::DEFAULT_IMAGE)]
    pub image: String,
    /// Print the final run record as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Where to keep the run's state.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// Use this run id (a fresh one by default).
    #[arg(long, conflicts_with = "resume")]
    pub run_id: Option<String>,
    /// Resume this run from its stored state, without re-running completed tasks; waits for a
    /// lapsed lease if another executor held it.
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Seconds an executor's lease lasts without renewal; a killed executor's run can be
    /// resumed after this long.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub lease_ttl: f64,
    /// No live progress on standard error.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// A line per attempt and per task's end, even on a terminal (where a live bar with
    /// counts by state is the default).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Where `dagy run` executes a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalBackend {
    /// In this process.
    Here,
    /// In a local Docker container of the worker image, sized as on ECS Fargate.
    Docker,
}

/// Checks that `--tier`, `--backend` and `--store` go together (the ECS tiers need a container,
/// a container a store it can reach); the problem, as a usage error, when they do not.
fn check_tier(args: &RunArgs) -> Result<(), String> {
    match (args.tier, args.backend) {
        (Some(tier @ (RuntimeTier::Nano | RuntimeTier::Micro)), LocalBackend::Docker) => {
            Err(format!(
                "{tier} runs on Lambda; --backend docker runs the ECS tiers: use --tier small, \
             medium, large or xlarge"
            ))
        }
        (Some(tier), LocalBackend::Here) if tier.fargate_resources().is_some() => Err(format!(
            "{tier} runs on ECS Fargate; `dagy run --tier` takes nano or micro here, or add \
             --backend docker to run it in a local container with the tier's limits (leave \
             --tier out to run a Fargate-tier flow here without a budget)"
        )),
        _ if args.backend == LocalBackend::Docker && args.store == StoreKind::Memory => Err(
            "--backend docker needs a store the container can reach: leave out --store memory \
             (the embedded database is mounted into the container) or use --store dynamodb"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A run about to be driven: its id, how it runs, and its container size for docker.
struct Started {
    run_id: String,
    mode: ExecutionMode,
    size: Option<dagy_core::FargateSize>,
}

/// Runs the command; the exit code is 0 when the run completed, 1 otherwise.
pub fn run(args: RunArgs, registry: HandlerRegistry) -> anyhow::Result<ExitCode> {
    // One worker: tasks run one at a time, and a second worker was woken each time a handler
    // finished (a system call and a context switch per task, a ninth of a micro step). CPU-bound
    // handlers are plain `fn`s and run on the blocking pool, so they never hold it up.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // On the worker thread, not the caller's: each task's handler is spawned onto the same
    // worker and wakes its waiter there.
    let code = runtime
        .block_on(runtime.spawn(run_async(args, Arc::new(registry))))
        .context("the run's driver panicked")?;
    // A blocking handler that ignored its timeout may still be spinning: do not wait for it.
    runtime.shutdown_background();
    code
}

async fn run_async(args: RunArgs, registry: Arc<HandlerRegistry>) -> anyhow::Result<ExitCode> {
    if let Err(problem) = check_tier(&args) {
        eprintln!("error: {problem}");
        return Ok(ExitCode::from(2));
    }
    if args.resume.is_some() && args.store == StoreKind::Memory {
        bail!("--resume needs a store that outlives a process: leave out --store memory");
    }
    let opened = crate::commands::store::open(args.store).await?;
    let store = opened.store.clone();
    let interactive = std::io::stderr().is_terminal();
    let display = if args.quiet {
        Display::Quiet
    } else if interactive && !args.verbose {
        Display::Bar
    } else {
        Display::Lines
    };
    let progress = Arc::new(Progress::new(display, interactive));
    let ttl = Duration::try_from_secs_f64(args.lease_ttl)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--lease-ttl must be a number of seconds > 0")?;
    let executor = Executor::new(store.clone(), registry.clone())
        .with_lease_ttl(ttl)
        .with_observer(progress.clone());

    let started = match &args.resume {
        Some(run_id) => resumed(&args, store.as_ref(), run_id).await?,
        None => started(&args, &registry, &executor, &progress).await?,
    };
    let Some(Started { run_id, mode, size }) = started else {
        return Ok(ExitCode::from(1));
    };

    let options = RunOptions {
        budget: Budget::for_mode(mode),
        ..RunOptions::default()
    };
    let signals = Signals::watch(&options, progress.clone(), &run_id);
    // A run on a store that outlives this process can be taken up again after any failure.
    let store_flag = match args.store {
        StoreKind::Dynamodb => " --store dynamodb",
        _ => "",
    };
    let resume_hint = |e: anyhow::Error| {
        if opened.durable {
            e.context(format!(
                "run {run_id} stopped before its end and its state is kept ({}): resume it \
                 with `dagy run --resume {run_id}{store_flag}` (once its lease of {} s lapses)",
                opened.label,
                ttl.as_secs_f64()
            ))
        } else {
            e
        }
    };
    let outcome = match args.backend {
        LocalBackend::Here => {
            drive(
                &executor,
                &run_id,
                &options,
                mode,
                args.resume.is_some(),
                &progress,
            )
            .await
        }
        LocalBackend::Docker => {
            crate::commands::docker::drive(
                store.clone(),
                args.store,
                &run_id,
                size.unwrap_or(dagy_core::FargateSize::SMALL),
                &args.image,
                &options,
                &progress,
            )
            .await
        }
    }
    .map_err(resume_hint)?;
    let snapshot = opened
        .last_look(&run_id)
        .await
        .map_err(|e| resume_hint(e.into()))?;
    if args.json {
        crate::output::json(&snapshot.report());
    } else {
        progress.summary(&snapshot);
    }
    Ok(if signals.aborted() {
        ExitCode::from(ABORTED)
    } else if outcome == RunStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The run to resume and how it runs (its plan's mode, or the one `--tier` asks for).
async fn resumed(
    args: &RunArgs,
    store: &dyn RunStore,
    run_id: &str,
) -> anyhow::Result<Option<Started>> {
    let run = store.get_run(run_id).await?;
    let mode = run
        .plan
        .as_ref()
        .map_or(ExecutionMode::WholeFlow, |p| p.mode);
    Ok(Some(Started {
        run_id: run_id.to_string(),
        mode: args.tier.map_or(mode, mode_of_tier),
        size: run.plan.and_then(|p| p.resources),
    }))
}

/// Validates and plans the flow, writes its run, and says how it runs; `None` (the problem
/// printed) when the flow is invalid or its plan refused.
async fn started(
    args: &RunArgs,
    registry: &HandlerRegistry,
    executor: &Executor,
    progress: &Progress,
) -> anyhow::Result<Option<Started>> {
    let path = args.flow.as_ref().context("a FLOW file is required")?;
    let text = crate::input::read_flow_text(path)?;
    let parsed = match args.backend {
        LocalBackend::Here => Flow::from_json(&text, Some(registry)),
        LocalBackend::Docker => {
            let catalog = crate::commands::docker::image_catalog(&args.image, registry).await?;
            Flow::from_json(&text, Some(&catalog))
        }
    };
    // Not kept for the run: the text of a large flow is megabytes.
    drop(text);
    let flow = match parsed {
        Ok(flow) => flow,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    let parameters = parse_params(args.params.as_deref())?;
    let mut settings = Settings::from_env()?;
    let mut backend = None;
    if args.backend == LocalBackend::Docker {
        settings = crate::commands::docker::settings(settings, &args.image);
        backend = Some(BackendKind::EcsFargate);
    }
    let request = PlanRequest {
        tiers: TierInputs {
            request: args.tier,
            ..TierInputs::default()
        },
        backend,
    };
    let plan = match dagy_core::plan(&flow, &request, &settings) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    if args.backend == LocalBackend::Docker && plan.backend != BackendKind::EcsFargate {
        eprintln!(
            "error: --backend docker runs the ECS tiers, and this flow's plan is {} on {}: \
             pass --tier small, medium, large or xlarge",
            plan.tier, plan.backend
        );
        return Ok(None);
    }
    let (mode, size) = (plan.mode, plan.resources);
    progress.header(&flow, &plan);
    let created = executor
        .create_run(
            &flow,
            NewRunRequest {
                run_id: args.run_id.clone(),
                parameters,
                plan: Some(plan),
                ..NewRunRequest::default()
            },
        )
        .await?;
    Ok(Some(Started {
        run_id: created.run.run_id,
        mode,
        size,
    }))
}

fn mode_of_tier(tier: RuntimeTier) -> ExecutionMode {
    if tier == RuntimeTier::Nano {
        ExecutionMode::WholeFlow
    } else {
        ExecutionMode::TaskPerInvocation
    }
}

/// Runs to the end: micro one task per step (as its Lambda invocations would, each step
/// handing the lease on to the next), the others in one session. A resumed run waits while
/// another executor's lease is live.
async fn drive(
    executor: &Executor,
    run_id: &str,
    options: &RunOptions,
    mode: ExecutionMode,
    wait_for_lease: bool,
    progress: &Progress,
) -> anyhow::Result<RunStatus> {
    let mut holder: Option<String> = None;
    loop {
        let outcome = if mode == ExecutionMode::TaskPerInvocation {
            executor.run_steps(run_id, options).await?
        } else {
            executor.run(run_id, options).await?
        };
        match outcome {
            StepOutcome::Finished(status) => return Ok(status),
            StepOutcome::Continue { .. } => {}
            StepOutcome::Superseded => {
                bail!("another executor took run {run_id} over; this one stopped")
            }
            StepOutcome::Busy { owner, until_ms } if wait_for_lease => {
                if holder.as_deref() != Some(owner.as_str()) {
                    progress.note(&format!(
                        "run {run_id} is held by {owner} until {}; waiting for its lease to lapse",
                        describe_instant(until_ms, dagy_store::now_ms())
                    ));
                    holder = Some(owner);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = options.stop.cancelled() => bail!("interrupted while waiting for the lease"),
                    () = options.cancel.cancelled() => bail!("interrupted while waiting for the lease"),
                }
            }
            StepOutcome::Busy { owner, until_ms } => {
                return Err(StoreError::LeaseHeld {
                    run_id: run_id.to_string(),
                    owner,
                    expires_at_ms: until_ms,
                }
                .into());
            }
        }
    }
}

/// `at_ms` (Unix ms) as a UTC time of day and its distance from `now_ms`: "14:03:07 UTC (in 2.5 s)".
fn describe_instant(at_ms: u64, now_ms: u64) -> String {
    let seconds_of_day = (at_ms / 1000) % 86_400;
    let clock = format!(
        "{:02}:{:02}:{:02} UTC",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    );
    if at_ms >= now_ms {
        format!("{clock} (in {:.1} s)", (at_ms - now_ms) as f64 / 1000.0)
    } else {
        format!("{clock} ({:.1} s ago)", (now_ms - at_ms) as f64 / 1000.0)
    }
}

/// The exit code of a run cut short by a second Ctrl-C, as a shell reports SIGINT.
const ABORTED: u8 = 130;

/// Ctrl-C (or SIGTERM), counted. Once: the run stops after the task in flight, which finishes.
/// Twice: the task in flight is cancelled, and the run is recorded cancelled before exiting
/// with 130. Three times, or when recording takes too long: exit 130 at once (the run is then
/// left to its lease, and can be resumed).
struct Signals {
    count: Arc<std::sync::atomic::AtomicU32>,
}

impl Signals {
    fn watch(options: &RunOptions, progress: Arc<Progress>, run_id: &str) -> Signals {
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = count.clone();
        let (stop, cancel) = (options.stop.clone(), options.cancel.clone());
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                let term = async {
                    match terminate.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    r = tokio::signal::ctrl_c() => { if r.is_err() { return; } }
                    () = term => {}
                }
                match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 {
                    1 => {
                        progress.note(
                            "stopping: the task in flight finishes, then the run is recorded \
                             cancelled (Ctrl-C again to cancel the task in flight too)",
                        );
                        stop.cancel();
                    }
                    2 => {
                        progress.note(
                            "cancelling the task in flight and recording the run cancelled \
                             (Ctrl-C again to exit at once)",
                        );
                        cancel.cancel();
                        let grace = dagy_engine::executor::CANCEL_GRACE + RECORD_GRACE;
                        let progress = progress.clone();
                        let run_id = run_id.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            progress.note(&format!(
                                "could not record the cancel within {} s; run {run_id} is left \
                                 to its lease",
                                grace.as_secs()
                            ));
                            std::process::exit(i32::from(ABORTED));
                        });
                    }
                    _ => {
                        progress.note(&format!(
                            "aborted; run {run_id} is left to its lease (`dagy run --resume \
                             {run_id}` takes it up again)"
                        ));
                        std::process::exit(i32::from(ABORTED));
                    }
                }
            }
        });
        Signals { count }
    }

    /// Whether a second signal cut the run short.
    fn aborted(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::SeqCst) >= 2
    }
}

/// How long recording a cancelled run may take after the cancelled handler's grace.
const RECORD_GRACE: Duration = Duration::from_secs(10);

fn parse_params(text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    let Some(text) = text else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => bail!(
            "--params must be a JSON object like '{{\"day\": \"2026-11-24\"}}', got {}",
            dagy_core::decode::type_name(&other)
        ),
        Err(e) => bail!("--params is not valid JSON: {e}"),
    }
}
