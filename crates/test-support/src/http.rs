//! [`Client`]: an HTTP client acting as one caller, and its [`Response`], read whole,
//! with typed helpers that give failures a readable message.

use anyhow::{anyhow, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An HTTP client with fixed headers.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Client {
    /// A client with other headers (or none): `Client::raw(base)`.
    pub fn raw(base: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.to_owned(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (n, v) in &self.headers {
            req = req.header(n, v);
        }
        req
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        Response::from(self.request(reqwest::Method::GET, path).send().await?).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Response> {
        Response::from(self.request(reqwest::Method::POST, path).json(&body).send().await?).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> anyhow::Result<Response> {
        let req = self.request(reqwest::Method::POST, path).header("Content-Type", "application/json").body(body);
        Response::from(req.send().await?).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Response> {
        Response::from(self.request(reqwest::Method::DELETE, path).send().await?).await
    }

    /// Creates a room and returns its id.
    pub async fn create_room(&self, kind: &str, members: &[&str]) -> anyhow::Result<String> {
        let res = self.post("/rooms", json!({"type": kind, "members": members, "name": "test room"})).await?;
        Ok(res.expect(StatusCode::CREATED)?.str("room_id")?.to_owned())
    }

    /// Sends a message and returns the stored message.
    pub async fn send(&self, room: &str, content: &str) -> anyhow::Result<Value> {
        let res = self.post(&format!("/rooms/{room}/messages"), json!({"content": content})).await?;
        Ok(res.expect(StatusCode::CREATED)?.body)
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    pub async fn from(res: reqwest::Response) -> anyhow::Result<Self> {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await?;
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok(Self { status, headers, body })
    }

    /// This response if it has `status`, else an error showing what came instead.
    pub fn expect(self, status: StatusCode) -> anyhow::Result<Self> {
        if self.status == status { Ok(self) } else { bail!("expected {status}, got {}: {}", self.status, self.body) }
    }

    /// Checks the documented error shape and returns `(code, field)`.
    pub fn error(&self) -> anyhow::Result<(String, Option<String>)> {
        if self.body["success"] != json!(false) {
            bail!("not an error body: {}", self.body);
        }
        let e = &self.body["error"];
        let code = e["code"].as_str().ok_or_else(|| anyhow!("error without code: {}", self.body))?;
        if !e["message"].is_string() {
            bail!("error without message: {}", self.body);
        }
        Ok((code.to_owned(), e["field"].as_str().map(str::to_owned)))
    }

    /// Expects an error of `status` with `code` (and `field`, when given).
    pub fn expect_error(&self, status: StatusCode, code: &str, field: Option<&str>) -> anyhow::Result<()> {
        let (got_code, got_field) = self.error()?;
        if self.status != status || got_code != code || (field.is_some() && got_field.as_deref() != field) {
            bail!("expected {status} {code} {field:?}, got {} {}", self.status, self.body);
        }
        Ok(())
    }

    pub fn str(&self, field: &str) -> anyhow::Result<&str> {
        self.body[field].as_str().ok_or_else(|| anyhow!("no string {field:?} in {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
