//! ECS and CloudWatch Logs on moto: a cluster of its own for a test, in moto's default VPC,
//! and a worker's log stream.

use dagy_backend_ecs::EcsBackend;
use dagy_core::EcsSettings;

use crate::{client, moto, unique};

/// Settings for a new cluster on moto running `image`: two default subnets, one security
/// group, a log group of its own, an execution role and a task role.
pub async fn cluster(image: &str) -> EcsSettings {
    let ecs: aws_sdk_ecs::Client = client!(aws_sdk_ecs);
    let created = ecs
        .create_cluster()
        .cluster_name(unique("dagy"))
        .send()
        .await
        .expect("create a cluster on moto");
    let settings = EcsSettings {
        cluster_arn: created
            .cluster()
            .and_then(|c| c.cluster_arn())
            .expect("the cluster's ARN")
            .to_string(),
        execution_role_arn: Some("arn:aws:iam::123456789012:role/dagy-ecs-execution".into()),
        task_role_arn: Some("arn:aws:iam::123456789012:role/dagy-ecs-task".into()),
        worker_image: image.to_string(),
        subnets: moto::ec2_values("DescribeSubnets", "subnetId")
            .into_iter()
            .take(2)
            .collect(),
        security_groups: moto::ec2_values("DescribeSecurityGroups", "groupId")
            .into_iter()
            .take(1)
            .collect(),
        log_group: format!("/ecs/{}", unique("dagy-worker")),
    };
    assert!(
        !settings.subnets.is_empty() && !settings.security_groups.is_empty(),
        "moto has no default VPC: {settings:?}"
    );
    settings
}

/// The ECS backend on moto's ECS and CloudWatch Logs for `settings`, its workers told to use
/// the runs table `table`.
pub fn backend(settings: &EcsSettings, table: &str) -> EcsBackend {
    EcsBackend::new(
        client!(aws_sdk_ecs),
        client!(aws_sdk_cloudwatchlogs),
        settings.clone(),
        "us-east-1",
        table,
    )
}

/// Creates the log group (if need be) and `stream` in it, as the awslogs driver would for a
/// worker's container; returns the client.
pub async fn log_stream(group: &str, stream: &str) -> aws_sdk_cloudwatchlogs::Client {
    let logs: aws_sdk_cloudwatchlogs::Client = client!(aws_sdk_cloudwatchlogs);
    let _ = logs.create_log_group().log_group_name(group).send().await;
    logs.create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
        .expect("create the log stream");
    logs
}

/// Writes `lines` (milliseconds, message) to `stream` in `group`, as a worker's container would.
pub async fn put_lines(group: &str, stream: &str, lines: &[(i64, &str)]) {
    let logs: aws_sdk_cloudwatchlogs::Client = client!(aws_sdk_cloudwatchlogs);
    let events = lines
        .iter()
        .map(|(t, m)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(*t)
                .message(*m)
                .build()
                .expect("a log event")
        })
        .collect();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .expect("put the log events");
}
