//! How a dialect answers errors and wraps its successes, as the document states it.
//! Each dialect exports its own [`ErrorShape`] and mounts its routes with it; the
//! document then has, per shape, the body's schema (`{name}Body`) and one response per
//! error status (`{name}400`, `{name}401`, ...) that operations refer to.

use schemars::Schema;
use schemars::generate::SchemaGenerator;
use serde_json::Value;

/// A dialect's error body and success envelope.
#[derive(Debug, Clone, Copy)]
pub struct ErrorShape {
    /// Names the shape's components: the schema `{name}Body`, the responses `{name}{status}`.
    pub name: &'static str,
    /// Adds the body's schema, named `{name}Body`, to the document.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// An error body of this shape with `code` and `message`, for the examples.
    pub example: fn(code: &str, message: &str) -> Value,
    /// Wraps the schema of a JSON success reply in the dialect's envelope; `None`:
    /// replies are sent as they are.
    pub envelope: Option<fn(Value) -> Value>,
}

/// The documented error statuses: every shape gets a response for each.
pub(crate) const ERROR_STATUSES: &[(u16, &str)] = &[
    (400, "Invalid input (`VALIDATION_ERROR`; `field` names the field at fault)."),
    (401, "Missing or bad credentials (`AUTHENTICATION_ERROR`)."),
    (403, "Authenticated but not allowed (`FORBIDDEN`)."),
    (404, "No such resource, or the caller may not know it exists (`NOT_FOUND`)."),
    (
        408,
        "The request's head or body did not arrive in time (`REQUEST_TIMEOUT`; `GATEWAY_BODY_TIMEOUT_SECS` for a body).",
    ),
    (409, "Conflicts with the current state (`CONFLICT`)."),
    (413, "The body is larger than allowed (`PAYLOAD_TOO_LARGE`)."),
    (415, "The content type is not accepted (`UNSUPPORTED_MEDIA_TYPE`)."),
    (
        429,
        "Over the tenant's rate limit, or too many failed authentications from this address \
         (`RATE_LIMIT_EXCEEDED`); see `Retry-After`.",
    ),
    (500, "A fault of the server (`INTERNAL_ERROR`)."),
    (503, "A service behind the gateway did not answer (`SERVICE_UNAVAILABLE`)."),
];

/// The example of a shape's error at `status`.
pub(crate) fn error_example(shape: &ErrorShape, status: u16) -> Value {
    let (code, message) = match status {
        400 => ("VALIDATION_ERROR", "content must not be empty"),
        401 => ("AUTHENTICATION_ERROR", "Invalid API key"),
        403 => ("FORBIDDEN", "Not a member of this room"),
        404 => ("NOT_FOUND", "Room not found"),
        408 => ("REQUEST_TIMEOUT", "The request body did not arrive in time"),
        409 => ("CONFLICT", "Already exists"),
        413 => ("PAYLOAD_TOO_LARGE", "Body larger than 65536 bytes"),
        415 => ("UNSUPPORTED_MEDIA_TYPE", "Files of type application/x-msdownload are not allowed"),
        429 => ("RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Try again in 1 seconds"),
        503 => ("SERVICE_UNAVAILABLE", "message-store did not answer"),
        _ => ("INTERNAL_ERROR", "Internal error"),
    };
    (shape.example)(code, message)
}
