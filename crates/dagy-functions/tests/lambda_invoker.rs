//! `lambda:<function>` tasks through the real aws-sdk-lambda client, against a loopback server
//! that answers as Lambda's Invoke API does: a JSON result, or `X-Amz-Function-Error` with the
//! function's `{errorType, errorMessage}`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use dagy_engine::LambdaInvoker;
use dagy_functions::dispatch::LambdaTaskInvoker;

/// Serves one canned answer per request and records the request bodies.
async fn lambda_api(
    answer: &'static str,
    function_error: bool,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        log.lock().expect("log").push(text[end + 4..].to_string());
                        break;
                    }
                }
            }
            let extra = if function_error {
                "X-Amz-Function-Error: Unhandled\r\n"
            } else {
                ""
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (url, seen)
}

fn invoker(url: &str) -> LambdaTaskInvoker {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(url)
        .build();
    LambdaTaskInvoker::new(aws_sdk_lambda::Client::from_conf(config))
}

#[tokio::test]
async fn a_function_answer_is_the_task_output_and_the_input_is_the_event() {
    let (url, seen) = lambda_api(r#"{"rows": 42}"#, false).await;
    let input = json!({"parameters": {"day": "mon"}, "upstream": {}, "args": {"table": "t"}});
    let out = invoker(&url).invoke("loader", input.clone()).await;
    assert_eq!(out, Ok(json!({"rows": 42})));
    let sent: Value = serde_json::from_str(&seen.lock().expect("log")[0]).expect("JSON event");
    assert_eq!(sent, input);
}

#[tokio::test]
async fn a_function_error_is_a_task_error_of_its_own_type() {
    let (url, _) = lambda_api(
        r#"{"errorType": "DiskFull", "errorMessage": "no space left"}"#,
        true,
    )
    .await;
    let err = invoker(&url)
        .invoke("loader", json!({}))
        .await
        .expect_err("a function error");
    assert_eq!(err.error_type, "DiskFull");
    assert_eq!(err.message, "loader: no space left");
    assert!(err.retryable);
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_a_clear_error() {
    let (url, _) = lambda_api("not json", false).await;
    let err = invoker(&url)
        .invoke("loader", json!({}))
        .await
        .expect_err("bad answer");
    assert_eq!(err.error_type, "LambdaBadAnswer");
}

/// An invoke whose answer is a server error may have run the function: the invoker Dagy builds
/// never lets the SDK send it again (Airflow's double invocations), the task's retries decide.
#[tokio::test]
async fn a_failed_invoke_is_sent_once_never_retried_by_the_sdk() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(Mutex::new(0usize));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let _ = stream.read(&mut buf).await;
            *count.lock().expect("count") += 1;
            let body = r#"{"__type": "ServiceException", "message": "internal failure"}"#;
            let response = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\nx-amzn-errortype: ServiceException\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::SharedCredentialsProvider::new(
            aws_sdk_lambda::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .endpoint_url(&url)
        .build();
    let invoker = LambdaTaskInvoker::from_sdk_config(&config);
    let err = invoker
        .invoke("slow-function", json!({}))
        .await
        .expect_err("a server error");
    assert!(err.retryable, "the task's own retries may run it again");
    assert_eq!(*requests.lock().expect("count"), 1, "sent once: {err}");
}
