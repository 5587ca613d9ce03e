//! The `dagy` command: validate, plan, graph and run flows, read an ECS run's log, and manage
//! the local run table.
//!
//! Exit codes: 0 success; 1 an invalid flow, a refused plan, a run that did not complete, or
//! a file or store that cannot be used; 2 a usage error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod input;
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
    /// Put a flow on a deployed stack as a deployment (PUT /deployments/{name}).
    Deploy(commands::remote::DeployArgs),
    /// Start a run of a deployment on a deployed stack (POST /deployments/{name}/runs).
    Trigger(commands::remote::TriggerArgs),
    /// A run and its tasks on a deployed stack (GET /runs/{id}).
    Status(commands::remote::RunArgs),
    /// Cancel a run on a deployed stack (POST /runs/{id}/cancel).
    Cancel(commands::remote::RunArgs),
    /// An ECS Fargate run's log (CloudWatch Logs); --follow keeps it streaming.
    Logs(commands::logs::LogsArgs),
    /// The DynamoDB run table (DAGY_TABLE_NAME), for local work.
    #[command(subcommand)]
    Table(commands::table::TableCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Graph(args) => commands::graph::run(args),
        Command::Asl(args) => commands::asl::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Logs(args) => commands::logs::run(args),
        Command::Deploy(args) => commands::remote::deploy(args),
        Command::Trigger(args) => commands::remote::trigger(args),
        Command::Status(args) => commands::remote::status(args),
        Command::Cancel(args) => commands::remote::cancel(args),
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
