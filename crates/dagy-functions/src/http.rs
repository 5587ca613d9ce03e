//! The router's events: API Gateway HTTP API (payload format 2.0) requests and responses and
//! EventBridge events, as `aws_lambda_events` defines them, with what the router reads from them.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::http::header::CONTENT_TYPE;
use base64::Engine as _;
use serde_json::{Value, json};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An HTTP API (payload format 2.0) request event.
pub type Request = ApiGatewayV2httpRequest;

/// An EventBridge event, such as a schedule's "Scheduled Event" envelope.
pub type ScheduledEvent = EventBridgeEvent<Value>;

/// Whether an event looks like an HTTP API (2.0) event.
pub fn is_http_event(event: &Value) -> bool {
    event
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .is_some()
}

/// Whether an event is an EventBridge envelope (it has a `detail-type`).
pub fn is_eventbridge_event(event: &Value) -> bool {
    event.get("detail-type").is_some()
}

/// The request's path split into segments, without empty ones.
pub fn segments(request: &Request) -> Vec<&str> {
    request
        .raw_path
        .as_deref()
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// A query parameter's (first) value.
pub fn query(request: &Request, name: &str) -> Option<String> {
    request
        .query_string_parameters
        .first(name)
        .map(str::to_string)
}

/// The body as text (decoded from base64 when needed), or a 400/413 response.
pub fn body_text(request: &Request) -> Result<String, Response> {
    let Some(body) = &request.body else {
        return Ok(String::new());
    };
    let text = if request.is_base64_encoded {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| {
                Response::error(
                    400,
                    "bad_body",
                    format!("the body is not valid base64: {e}"),
                )
            })?;
        String::from_utf8(bytes)
            .map_err(|_| Response::error(400, "bad_body", "the body is not UTF-8 text".into()))?
    } else {
        body.clone()
    };
    if text.len() > MAX_BODY_BYTES {
        return Err(Response::error(
            413,
            "body_too_large",
            format!(
                "the body is {} bytes; the limit is {MAX_BODY_BYTES} bytes",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// The body parsed as JSON (an empty body is `{}`), or a 400/413 response.
pub fn json_body(request: &Request) -> Result<Value, Response> {
    let text = body_text(request)?;
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(&text).map_err(|e| {
        Response::error(
            400,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// A response: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: Value) -> Self {
        Response { status, body }
    }

    /// `{"error": {"code", "message"}}` with a status.
    pub fn error(status: u16, code: &str, message: String) -> Self {
        Response {
            status,
            body: json!({"error": {"code": code, "message": message}}),
        }
    }

    /// The API Gateway (2.0) response event.
    pub fn to_event(&self) -> ApiGatewayV2httpResponse {
        let mut event = ApiGatewayV2httpResponse::default();
        event.status_code = i64::from(self.status);
        event
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        event.body = Some(Body::Text(self.body.to_string()));
        event
    }
}
