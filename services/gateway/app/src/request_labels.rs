//! The labels of the request metrics (`chat_gateway_http_requests_total`,
//! `chat_gateway_http_seconds`): a bounded set, whatever clients send. Each label value
//! is a series Prometheus keeps, so a client free to choose them (any method token,
//! any path) could grow the gateway's `/metrics` and the monitoring's memory without
//! end. A method is one of the standard ones or `OTHER`; a route is a pattern the
//! gateway mounts (`/rooms/{room_id}`, never a concrete id) or `unmatched`.

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::http::Method;

/// The label of a method no route of the gateway serves.
pub const OTHER_METHOD: &str = "OTHER";
/// The label of a path no route pattern of the gateway matches.
pub const UNMATCHED: &str = "unmatched";

/// The route patterns the gateway mounts: the only route labels.
#[derive(Debug, Clone, Default)]
pub struct RouteLabels(Arc<HashSet<String>>);

impl RouteLabels {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(patterns.into_iter().collect()))
    }

    /// The label of a request's matched pattern (`HttpRequest::match_pattern`).
    pub fn route(&self, pattern: Option<String>) -> String {
        pattern.filter(|p| self.0.contains(p)).unwrap_or_else(|| UNMATCHED.to_owned())
    }
}

/// The label of a request's method.
pub fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER_METHOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_and_paths_collapse_to_one_value() -> anyhow::Result<()> {
        assert_eq!(method(&Method::GET), "GET");
        assert_eq!(method(&Method::from_bytes(b"BREW")?), OTHER_METHOD);
        assert_eq!(method(&Method::from_bytes(b"X-1234567")?), OTHER_METHOD);
        let labels = RouteLabels::new(["/rooms/{room_id}".to_owned()]);
        assert_eq!(labels.route(Some("/rooms/{room_id}".to_owned())), "/rooms/{room_id}");
        assert_eq!(labels.route(Some("/v1/whatever/abc".to_owned())), UNMATCHED);
        assert_eq!(labels.route(None), UNMATCHED);
        Ok(())
    }
}
