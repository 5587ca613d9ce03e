//! The `dagy` command: validate, plan, graph and run flows, list and inspect runs, serve the
//! run dashboard, read an ECS run's log, and manage the local run table; over the handlers a
//! project registers ([`main`]).
//!
//! Exit codes: 0 success; 1 an invalid flow, a refused plan, a run that did not complete, or
//! a file or store that cannot be used; 2 a usage error; 130 a run cut short by a second Ctrl-C.
//!
//! With the `aws` feature (on by default) it also talks to AWS: `--store dynamodb`, `deploy`,
//! `trigger`, `status`, `cancel`, `logs` and `table`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dagy_engine::HandlerRegistry;

mod commands;
mod input;
mod output;
mod progress;

/// Dagy runs DAG flows serverless on AWS. This command checks, plans and runs them.
#[derive(Debug, Parser)]
#[command(name = "dagy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a FlowSpec JSON file and report every problem in it.
    Validate(commands::validate::ValidateArgs),
    /// Decide tier and backend for a flow, as the router would, without running it.
    Plan(commands::plan::PlanArgs),
    /// Print the flow's DAG as a Mermaid flowchart.
    Graph(commands::graph::GraphArgs),
    /// Print the flow's Step Functions (ASL) definition.
    Asl(commands::asl::AslArgs),
    /// Run a flow here, with live progress.
    Run(commands::run::RunArgs),
    /// The recent runs, newest first, with filters.
    Runs(commands::runs::RunsArgs),
    /// Serve the run dashboard on loopback and print its URL.
    Ui(commands::ui::UiArgs),
    /// Put a flow on a deployed stack as a deployment (PUT /deployments/{name}).
    #[cfg(feature = "aws")]
    Deploy(commands::remote::DeployArgs),
    /// Start a run of a deployment on a deployed stack (POST /deployments/{name}/runs).
    #[cfg(feature = "aws")]
    Trigger(commands::remote::TriggerArgs),
    /// A run and its tasks: in the embedded database, a DynamoDB table or on a deployed stack.
    Status(commands::inspect::RunArgs),
    /// Ask a run to stop at its next task boundary (from any terminal, while it runs).
    Cancel(commands::inspect::RunArgs),
    /// An ECS Fargate run's log (CloudWatch Logs); --follow keeps it streaming.
    #[cfg(feature = "aws")]
    Logs(commands::logs::LogsArgs),
    /// The DynamoDB run table (DAGY_TABLE_NAME), for local work.
    #[cfg(feature = "aws")]
    #[command(subcommand)]
    Table(commands::table::TableCommand),
}

/// The whole `dagy` command over `registry`'s handlers: a project's CLI is this one call.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     let mut registry = dagy_engine::HandlerRegistry::new();
///     registry.register("echo", |_ctx, input| async move { Ok(input) });
///     dagy_cli::main(registry)
/// }
/// ```
pub fn main(registry: HandlerRegistry) -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(args, &registry),
        Command::Plan(args) => commands::plan::run(args, &registry),
        Command::Graph(args) => commands::graph::run(args, &registry),
        Command::Asl(args) => commands::asl::run(args, &registry),
        Command::Run(args) => commands::run::run(args, registry),
        Command::Runs(args) => commands::runs::run(args),
        Command::Ui(args) => commands::ui::run(args),
        #[cfg(feature = "aws")]
        Command::Logs(args) => commands::logs::run(args),
        #[cfg(feature = "aws")]
        Command::Deploy(args) => commands::remote::deploy(args),
        #[cfg(feature = "aws")]
        Command::Trigger(args) => commands::remote::trigger(args),
        Command::Status(args) => commands::inspect::status(args),
        Command::Cancel(args) => commands::inspect::cancel(args),
        #[cfg(feature = "aws")]
        Command::Table(command) => commands::table::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
