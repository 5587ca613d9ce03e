//! `dagy deploy`, `trigger`, `status` and `cancel` against a deployed stack.
//!
//! Each command is one HTTP API request. With `DAGY_API_URL` (the stack's `ApiUrl` output) it
//! goes to the HTTP API, signed with SigV4 (service `execute-api`) with your AWS credentials,
//! as the API's IAM authorization wants. Without it, it goes to the router function through
//! the Lambda Invoke API as the HTTP API would send it (an API Gateway payload 2.0 event):
//! `DAGY_ROUTER_FUNCTION` (the `RouterFunctionName` output; default `dagy-router`), signed by
//! the AWS SDK; `AWS_ENDPOINT_URL_LAMBDA` points it at a local emulator.

use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_lambda::primitives::Blob;
use serde_json::{Map, Value, json};

/// The variable naming the router function.
pub const ROUTER_FUNCTION_VAR: &str = "DAGY_ROUTER_FUNCTION";

/// The variable naming the HTTP API's URL.
pub const API_URL_VAR: &str = "DAGY_API_URL";

/// Where the router is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The HTTP API's URL (the stack's ApiUrl output): requests are SigV4-signed.
    #[arg(long, env = API_URL_VAR)]
    pub api_url: Option<String>,
    /// Without an API URL: the router function's name or ARN, invoked directly.
    #[arg(long, env = ROUTER_FUNCTION_VAR, default_value = "dagy-router")]
    pub router: String,
}

/// `dagy deploy FLOW --name NAME`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The FlowSpec JSON file.
    pub flow: std::path::PathBuf,
    /// The deployment's name.
    #[arg(long)]
    pub name: String,
    /// The deployment's default runtime tier.
    #[arg(long)]
    pub tier: Option<String>,
    /// The deployment's backend (lambda, step_functions, ecs_fargate).
    #[arg(long)]
    pub backend: Option<String>,
    /// The environment whose defaults apply.
    #[arg(long)]
    pub environment: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// `dagy trigger NAME`.
#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The deployment.
    pub name: String,
    /// Parameters, a JSON object.
    #[arg(long)]
    pub params: Option<String>,
    /// The runtime tier for this run.
    #[arg(long)]
    pub tier: Option<String>,
    /// The backend for this run.
    #[arg(long)]
    pub backend: Option<String>,
    /// Makes the trigger idempotent: the same key returns the same run.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// `dagy status RUN` and `dagy cancel RUN`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The run.
    pub run_id: String,
    #[command(flatten)]
    pub target: Target,
}

/// Runs `dagy deploy`.
pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let text = crate::input::read_flow_text(&args.flow)?;
    let flow: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.flow.display()))?;
    let mut body = Map::new();
    body.insert("flow".into(), flow);
    for (key, value) in [
        ("default_runtime_tier", args.tier),
        ("backend", args.backend),
        ("environment", args.environment),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    call(
        &args.target,
        "PUT",
        &format!("/deployments/{}", args.name),
        Some(Value::Object(body)),
    )
}

/// Runs `dagy trigger`.
pub fn trigger(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let mut body = Map::new();
    if let Some(params) = &args.params {
        let parsed: Value =
            serde_json::from_str(params).context("--params must be a JSON object")?;
        anyhow::ensure!(parsed.is_object(), "--params must be a JSON object");
        body.insert("parameters".into(), parsed);
    }
    for (key, value) in [
        ("runtime_tier", args.tier),
        ("backend", args.backend),
        ("idempotency_key", args.idempotency_key),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    call(
        &args.target,
        "POST",
        &format!("/deployments/{}/runs", args.name),
        Some(Value::Object(body)),
    )
}

/// Runs `dagy status`.
pub fn status(args: RunArgs) -> anyhow::Result<ExitCode> {
    call(&args.target, "GET", &format!("/runs/{}", args.run_id), None)
}

/// Runs `dagy cancel`.
pub fn cancel(args: RunArgs) -> anyhow::Result<ExitCode> {
    call(
        &args.target,
        "POST",
        &format!("/runs/{}/cancel", args.run_id),
        None,
    )
}

/// The event the HTTP API would send the router for `method path` with `body`: the path's query
/// string is decoded into `queryStringParameters`, as API Gateway does.
pub fn http_event(method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
    use aws_lambda_events::http::{HeaderValue, Method, header};
    use aws_lambda_events::query_map::QueryMap;

    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let method: Method = method
        .parse()
        .with_context(|| format!("{method} is not an HTTP method"))?;
    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(format!("{method} {path}"));
    event.raw_path = Some(path.into());
    event.raw_query_string = Some(query.into());
    event.query_string_parameters = query.parse::<QueryMap>().unwrap_or_default();
    event.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    event
        .headers
        .insert(header::USER_AGENT, HeaderValue::from_static("dagy-cli"));
    let http = &mut event.request_context.http;
    http.method = method;
    http.path = Some(path.into());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some("127.0.0.1".into());
    http.user_agent = Some("dagy-cli".into());
    event.body = body.map(Value::to_string);
    serde_json::to_value(event).context("cannot encode the HTTP API event")
}

/// Sends one request; prints the answer's JSON body; exit 0 for 2xx, 1 otherwise.
fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (status, body) = request(target, method, path, body.as_ref()).await?;
        if (200..300).contains(&status) {
            crate::output::out!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        } else {
            print_refusal(status, &body);
            Ok(ExitCode::from(1))
        }
    })
}

/// Prints the API's error answer (`{"error": {"code", "message"}}`, or API Gateway's own
/// `{"message"}`) on stderr.
pub fn print_refusal(status: u64, body: &Value) {
    eprintln!(
        "error: {} ({status} {})",
        body["error"]["message"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("no message"),
        body["error"]["code"].as_str().unwrap_or("error")
    );
}

/// One HTTP API request to the stack: over the API (SigV4) when it has a URL, else through the
/// router function. Returns the HTTP status and the JSON body.
pub async fn request(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u64, Value)> {
    let config = dagy_store_dynamodb::sdk_config().await;
    match &target.api_url {
        Some(url) => signed_request(&config, url, method, path, body).await,
        None => invoke_router(&config, target, method, path, body).await,
    }
}

/// The router's answer through the Lambda Invoke API: HTTP status and JSON body.
async fn invoke_router(
    config: &aws_config::SdkConfig,
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u64, Value)> {
    let client = aws_sdk_lambda::Client::new(config);
    let event = http_event(method, path, body)?;
    let out = client
        .invoke()
        .function_name(&target.router)
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the router {}: {}; set {ROUTER_FUNCTION_VAR} to the stack's \
                     RouterFunctionName output",
                target.router,
                aws_sdk_lambda::error::DisplayErrorContext(&e)
            )
        })?;
    let bytes = out
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    let answer: Value = dagy_core::json::from_slice(&bytes)
        .context("the router answered with something that is not JSON")?;
    if let Some(kind) = out.function_error() {
        anyhow::bail!(
            "the router failed ({kind}): {}",
            answer["errorMessage"].as_str().unwrap_or("no message")
        );
    }
    let status = answer["statusCode"].as_u64().unwrap_or(0);
    let body: Value = answer["body"]
        .as_str()
        .and_then(|b| dagy_core::json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, body))
}

/// The answer of the HTTP API at `base`: the request signed with SigV4 for `execute-api`.
async fn signed_request(
    config: &aws_config::SdkConfig,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u64, Value)> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use http_body_util::{BodyExt, Full};

    let region = config
        .region()
        .map(ToString::to_string)
        .context("AWS_REGION is not set: the signature names the API's region")?;
    let credentials = config
        .credentials_provider()
        .context("no AWS credentials provider")?
        .provide_credentials()
        .await
        .context("no AWS credentials to sign the request with")?;
    let identity = credentials.into();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let payload = body.map(Value::to_string).unwrap_or_default();
    let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let host = uri
        .authority()
        .map(ToString::to_string)
        .with_context(|| format!("{url} has no host"))?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(payload.clone())))?;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("execute-api")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let signable = SignableRequest::new(
        method,
        url.as_str(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(payload.as_bytes()),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(&mut request);

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("cannot load the system's root certificates")?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let answer = client
        .request(request)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = u64::from(answer.status().as_u16());
    let bytes = answer.into_body().collect().await?.to_bytes();
    let body = dagy_core::json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"message": String::from_utf8_lossy(&bytes).to_string()}));
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_carries_the_decoded_query() {
        let event = http_event("GET", "/runs/r1/logs?next=f%2F37%2Bx%3D%3D&limit=5", None)
            .expect("an event");
        assert_eq!(event["rawPath"], "/runs/r1/logs");
        assert_eq!(event["rawQueryString"], "next=f%2F37%2Bx%3D%3D&limit=5");
        assert_eq!(event["queryStringParameters"]["next"], "f/37+x==");
        assert_eq!(event["queryStringParameters"]["limit"], "5");
        assert_eq!(event["requestContext"]["http"]["method"], "GET");
        assert_eq!(event.get("body"), None);
    }

    #[test]
    fn query_decoding_leaves_bad_escapes_alone() {
        let event = http_event("GET", "/x?a=a%2Fb+c&b=100%&c=%zz", None).expect("an event");
        let query = &event["queryStringParameters"];
        assert_eq!(query["a"], "a/b c");
        assert_eq!(query["b"], "100%");
        assert_eq!(query["c"], "%zz");
    }

    #[test]
    fn a_bad_method_is_an_error() {
        assert!(http_event("GE T", "/x", None).is_err());
    }
}
