//! `my-flows`: an example Dagy project. Three tasks, one flow, and the registry every binary of
//! the project is built over.
//!
//! - `count_primes`: CPU-bound, a plain `fn` (it runs on a blocking thread);
//! - `summarize`: takes its upstream tasks' outputs, typed;
//! - `banner`: a closure over the raw JSON input;
//! - `save_report`: writes the summary through a [`ReportSink`] shared by every task of the
//!   process: a DynamoDB table on AWS (the `aws` feature and `REPORT_TABLE`), a folder locally.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use dagy::{
    FlowBuilder, FlowSpec, HandlerRegistry, Parameters, State, TaskContext, TaskError, Upstream,
};

/// `args` of `count_primes`.
#[derive(Debug, Deserialize)]
pub struct Range {
    /// Count primes from here...
    pub from: u64,
    /// ...to here (exclusive).
    pub to: u64,
}

/// How many primes lie in `[from, to)`: CPU-bound, so a plain `fn`.
#[dagy::task(timeout_seconds = 120, memory_mb = 512)]
pub fn count_primes(range: Range) -> Result<u64, TaskError> {
    if range.to < range.from {
        return Err(TaskError::permanent(format!(
            "args.to ({}) is below args.from ({})",
            range.to, range.from
        )));
    }
    Ok((range.from..range.to).filter(|&n| is_prime(n)).count() as u64)
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// What `summarize` returns.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Primes found, by counting task.
    pub by_task: BTreeMap<String, u64>,
    /// All of them.
    pub total: u64,
}

/// Adds up the counts of its upstream tasks.
#[dagy::task]
pub async fn summarize(
    Upstream(counts): Upstream<BTreeMap<String, u64>>,
) -> Result<Summary, TaskError> {
    let total = counts.values().sum();
    Ok(Summary {
        by_task: counts,
        total,
    })
}

/// The run's parameters this project reads.
#[derive(Debug, Deserialize)]
pub struct ReportParameters {
    /// The report's title.
    pub title: String,
}

/// What `save_report` takes from its upstream tasks.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportInputs {
    /// The summary task's output.
    pub summary: Summary,
    /// The banner task's output.
    pub banner: String,
}

/// Saves the summary of its run: retried (1 s, then 5 s) when the sink fails.
#[dagy::task(retries = 3, retry_delay_seconds = [1, 5], retry_jitter_factor = 0.2)]
pub async fn save_report(
    ctx: TaskContext,
    Parameters(parameters): Parameters<ReportParameters>,
    Upstream(upstream): Upstream<ReportInputs>,
    State(sink): State<ReportSink>,
) -> Result<serde_json::Value, TaskError> {
    let report = json!({
        "run_id": ctx.run_id,
        "title": parameters.title,
        "banner": upstream.banner,
        "summary": upstream.summary,
    });
    let location = sink.save(&ctx.run_id, &report).await?;
    Ok(json!({"saved_to": location}))
}

/// Where reports go: built once per process, shared by every task (see [`registry`]).
pub enum ReportSink {
    /// One JSON file per run in this folder (local runs; `REPORT_DIR`, default `reports`).
    Folder(PathBuf),
    /// One item per run in this DynamoDB table (`REPORT_TABLE`, with the `aws` feature).
    #[cfg(feature = "aws")]
    Table {
        /// The client, made once per process.
        client: aws_sdk_dynamodb::Client,
        /// The table.
        table: String,
    },
}

impl ReportSink {
    /// The sink the environment names: `REPORT_TABLE` (with the `aws` feature), else a folder.
    pub async fn from_env() -> ReportSink {
        #[cfg(feature = "aws")]
        if let Ok(table) = std::env::var("REPORT_TABLE") {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            return ReportSink::Table {
                client: aws_sdk_dynamodb::Client::new(&config),
                table,
            };
        }
        ReportSink::Folder(
            std::env::var_os("REPORT_DIR").map_or_else(|| "reports".into(), PathBuf::from),
        )
    }

    /// Saves `report` under `run_id`; says where.
    pub async fn save(
        &self,
        run_id: &str,
        report: &serde_json::Value,
    ) -> Result<String, TaskError> {
        match self {
            ReportSink::Folder(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{run_id}.json"));
                std::fs::write(&path, serde_json::to_vec_pretty(report)?)?;
                Ok(path.display().to_string())
            }
            #[cfg(feature = "aws")]
            ReportSink::Table { client, table } => {
                use aws_sdk_dynamodb::types::AttributeValue;
                client
                    .put_item()
                    .table_name(table)
                    .item("pk", AttributeValue::S(format!("REPORT#{run_id}")))
                    .item("sk", AttributeValue::S("REPORT".into()))
                    .item("report", AttributeValue::S(report.to_string()))
                    .send()
                    .await
                    .map_err(|e| {
                        TaskError::new(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
                    })?;
                Ok(format!("dynamodb://{table}/REPORT#{run_id}"))
            }
        }
    }
}

/// Every handler of the project, and the state they share: what each binary runs over.
pub fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry
        .add(count_primes)
        .add(summarize)
        .add(save_report)
        .state_with(ReportSink::from_env);
    // A closure works too, on the raw JSON input: `{parameters, upstream, args}`.
    registry.register("banner", |_ctx, input| async move {
        let title = input["parameters"]["title"].as_str().unwrap_or("untitled");
        Ok(json!(format!("== {title} ==")))
    });
    registry
}

/// The project's flow, in Rust: `flows/primes.json` is the same flow as JSON.
pub fn primes_flow() -> FlowSpec {
    let mut flow = FlowBuilder::new("primes").parameter("title", "primes below 200,000");
    let ranges = [
        (0, 50_000),
        (50_000, 100_000),
        (100_000, 150_000),
        (150_000, 200_000),
    ];
    for (i, (from, to)) in ranges.into_iter().enumerate() {
        flow = flow.task_of(format!("count-{i}"), &count_primes, |t| {
            t.args(json!({"from": from, "to": to}))
        });
    }
    flow.task_of("summary", &summarize, |t| {
        t.depends_on((0..4).map(|i| format!("count-{i}")))
    })
    .task("banner", "banner", |t| t)
    .task_of("report", &save_report, |t| {
        t.depends_on(["summary", "banner"])
    })
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report through the DynamoDB sink, on the server `AWS_ENDPOINT_URL` names (the test
    /// suite's moto; `scripts/moto.sh` starts one): the task calls another AWS service through
    /// the client the registry shares.
    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn the_report_goes_to_dynamodb_through_the_shared_client() {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
            ScalarAttributeType,
        };
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            "set AWS_ENDPOINT_URL to a DynamoDB-compatible server (scripts/moto.sh starts one)"
        );
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = format!("my-flows-reports-{}", std::process::id());
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key")
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute")
        };
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attribute("pk"))
            .attribute_definitions(attribute("sk"))
            .send()
            .await
            .expect("create the report table");
        let mut registry = registry();
        registry.state(ReportSink::Table {
            client: client.clone(),
            table: table.clone(),
        });
        let snap = dagy::run_locally(&primes_flow(), registry)
            .await
            .expect("runs");
        let run_id = snap.run.run_id.clone();
        assert_eq!(
            snap.tasks[6].output_value(),
            Some(json!({"saved_to": format!("dynamodb://{table}/REPORT#{run_id}")}))
        );
        let item = client
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(format!("REPORT#{run_id}")))
            .key("sk", AttributeValue::S("REPORT".into()))
            .send()
            .await
            .expect("get the report")
            .item
            .expect("the report item");
        let report: serde_json::Value =
            serde_json::from_str(item["report"].as_s().expect("text")).expect("JSON");
        assert_eq!(report["summary"]["total"], 17_984);
        let _ = client.delete_table().table_name(&table).send().await;
    }

    #[test]
    fn the_json_flow_is_the_rust_flow() {
        let text = include_str!("../flows/primes.json");
        let json: FlowSpec = serde_json::from_str(text).expect("flows/primes.json parses");
        assert_eq!(json, primes_flow());
    }

    #[test]
    fn count_primes_counts() {
        assert_eq!(count_primes::run(Range { from: 0, to: 30 }), Ok(10));
        let err = count_primes::run(Range { from: 5, to: 1 }).expect_err("bad range");
        assert!(!err.retryable);
    }

    #[tokio::test]
    async fn the_flow_runs_and_saves_its_report() {
        let dir = std::env::temp_dir().join(format!("my-flows-test-{}", std::process::id()));
        let mut registry = registry();
        registry.state(ReportSink::Folder(dir.clone()));
        let snap = dagy::run_locally(&primes_flow(), registry)
            .await
            .expect("runs");
        let summary = snap.tasks[4].output_value().expect("summary");
        assert_eq!(summary["total"], 17_984, "primes below 200,000");
        assert_eq!(
            snap.tasks[5].output_value(),
            Some(json!("== primes below 200,000 =="))
        );
        let saved = std::fs::read_to_string(dir.join(format!("{}.json", snap.run.run_id)))
            .expect("the report file");
        assert!(saved.contains("primes below 200,000"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
