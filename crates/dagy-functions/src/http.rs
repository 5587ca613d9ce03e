//! The API Gateway HTTP API (payload format 2.0) request and response, as far as the router
//! reads and writes them.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The parts of an HTTP API event the router uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The path as the client sent it.
    #[serde(default)]
    pub raw_path: String,
    /// Query parameters (API Gateway joins repeated ones with commas).
    #[serde(default)]
    pub query_string_parameters: HashMap<String, String>,
    /// The body, if any.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64.
    #[serde(default)]
    pub is_base64_encoded: bool,
    /// Method and path.
    pub request_context: RequestContext,
}

/// `requestContext`.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestContext {
    /// `requestContext.http`.
    pub http: HttpContext,
}

/// `requestContext.http`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpContext {
    /// GET, POST, ...
    pub method: String,
}

impl Request {
    /// Whether an event looks like an HTTP API (2.0) event.
    pub fn matches(event: &Value) -> bool {
        event
            .get("requestContext")
            .and_then(|c| c.get("http"))
            .is_some()
    }

    /// The path split into segments, without empty ones.
    pub fn segments(&self) -> Vec<&str> {
        self.raw_path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The body as text (decoded from base64 when needed), or a 400/413 response.
    pub fn body_text(&self) -> Result<String, Response> {
        let Some(body) = &self.body else {
            return Ok(String::new());
        };
        let text = if self.is_base64_encoded {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| {
                    Response::error(
                        400,
                        "bad_body",
                        format!("the body is not valid base64: {e}"),
                    )
                })?;
            String::from_utf8(bytes).map_err(|_| {
                Response::error(400, "bad_body", "the body is not UTF-8 text".into())
            })?
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
    pub fn json_body(&self) -> Result<Value, Response> {
        let text = self.body_text()?;
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
    pub fn to_event(&self) -> Value {
        json!({
            "statusCode": self.status,
            "headers": {"content-type": "application/json"},
            "body": self.body.to_string(),
            "isBase64Encoded": false,
        })
    }
}
