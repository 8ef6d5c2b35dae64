//! The document itself: [`Api`] records each route's [`Op`] as it is mounted
//! (`crate::routes::Mount`) and writes the OpenAPI 3.1 document, with the schemas of
//! every type the operations name, the error responses of every [`ErrorShape`] used,
//! and the rate-limit headers of every rate-limited operation.

use std::collections::BTreeMap;

use actix_web::http::Method;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::openapi::op::Op;
use crate::openapi::shape::{ERROR_STATUSES, ErrorShape, error_example};

/// What introduces the document: its `info` and its groups of operations. The app
/// writes it (it is the one place that knows every dialect).
#[derive(Debug, Clone, Copy)]
pub struct Info {
    pub title: &'static str,
    pub version: &'static str,
    pub summary: &'static str,
    /// Markdown under the title.
    pub description: &'static str,
    /// `(name, description)` of each tag, in the order Redoc lists them.
    pub tags: &'static [(&'static str, &'static str)],
}

/// The document being made.
pub struct Api {
    generator: SchemaGenerator,
    paths: BTreeMap<String, Map<String, Value>>,
    /// Every `(method, path)` mounted, in mount order.
    routes: Vec<(Method, String)>,
    /// The error shapes of the operations added, by name.
    shapes: BTreeMap<&'static str, ErrorShape>,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

/// `{name}` segments of a path pattern.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect()
}

/// A stable operation id: `get_api_chat_id_messages`.
fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part);
    }
    if path.ends_with('/') && path.len() > 1 {
        id.push_str("_slash");
    }
    id
}

impl Api {
    pub fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Self {
            generator: settings.into_generator(),
            paths: BTreeMap::new(),
            routes: Vec::new(),
            shapes: BTreeMap::new(),
        }
    }

    /// Every `(method, path)` mounted so far.
    pub fn routes(&self) -> &[(Method, String)] {
        &self.routes
    }

    /// Records one route and its operation, answering errors in `shape`.
    pub fn add(&mut self, method: &Method, path: &str, shape: &ErrorShape, tag: &'static str, op: &Op) {
        self.routes.push((method.clone(), path.to_owned()));
        if !self.shapes.contains_key(shape.name) {
            (shape.schema)(&mut self.generator);
            self.shapes.insert(shape.name, *shape);
        }
        let g = &mut self.generator;
        let mut params: Vec<Value> = Vec::new();
        for name in path_params(path) {
            let described = op.params.iter().find(|p| p.0 == name && p.1 == "path");
            params.push(json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": described.map(|p| p.2.clone()).unwrap_or_default(),
                "schema": described.map(|p| (p.4)(g).to_value()).unwrap_or_else(|| json!({"type": "string"})),
            }));
        }
        for (name, place, description, required, schema) in op.params.iter().filter(|p| p.1 != "path") {
            params.push(json!({
                "name": name, "in": place, "required": required, "description": description,
                "schema": schema(g).to_value(),
            }));
        }
        if let Some(query) = op.query {
            let schema = query(g).to_value();
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                let mut prop = prop.clone();
                let description = prop.as_object_mut().and_then(|p| p.remove("description")).unwrap_or(json!(""));
                params.push(json!({
                    "name": name, "in": "query", "required": required.contains(&name.as_str()),
                    "description": description, "schema": prop,
                }));
            }
        }
        let mut operation = json!({
            "operationId": operation_id(method, path),
            "summary": op.summary,
            "tags": [op.tag.unwrap_or(tag)],
            "responses": {},
        });
        if let Some(d) = &op.description {
            operation["description"] = json!(d);
        }
        if !params.is_empty() {
            operation["parameters"] = Value::Array(params);
        }
        if let Some(security) = op.auth.security() {
            operation["security"] = security;
        }
        if let Some((content_type, schema, example)) = &op.body {
            let mut media = json!({"schema": schema(g).to_value()});
            if let Some(e) = example {
                media["example"] = e.clone();
            }
            operation["requestBody"] = json!({"required": !op.body_optional, "content": {*content_type: media}});
        }
        let limited = op.auth.rate_limited();
        let rate_headers = |headers: &mut Map<String, Value>| {
            for (name, description) in RATE_LIMIT_HEADERS {
                headers.insert((*name).to_owned(), json!({"$ref": format!("#/components/headers/{name}")}));
                let _ = description;
            }
        };
        let mut responses = Map::new();
        for reply in &op.replies {
            let mut response = json!({"description": reply.description});
            if let Some((content_type, schema)) = reply.content {
                let inner = schema(g).to_value();
                let schema = match shape.envelope {
                    Some(envelope) if !op.raw && content_type == "application/json" => envelope(inner),
                    _ => inner,
                };
                let mut media = json!({"schema": schema});
                if let Some(e) = &reply.example {
                    media["example"] = e.clone();
                }
                let mut content = Map::new();
                for more in &reply.more_types {
                    content.insert((*more).to_owned(), media.clone());
                }
                content.insert(content_type.to_owned(), media);
                response["content"] = Value::Object(content);
            }
            let mut headers = Map::new();
            for (name, description) in &reply.headers {
                headers.insert((*name).to_owned(), json!({"description": description, "schema": {"type": "string"}}));
            }
            if limited {
                rate_headers(&mut headers);
            }
            if !headers.is_empty() {
                response["headers"] = Value::Object(headers);
            }
            responses.insert(reply.status.to_string(), response);
        }
        let mut errors = op.errors.clone();
        // A limited operation answers 429 past the tenant's limit; one that checks
        // credentials answers it to an address past its failed authentications
        // (`auth_failures`), whatever the credentials of the request.
        if (limited || errors.contains(&401)) && !errors.contains(&429) {
            errors.push(429);
        }
        for status in errors {
            let response = json!({"$ref": format!("#/components/responses/{}{status}", shape.name)});
            responses.insert(status.to_string(), response);
        }
        operation["responses"] = Value::Object(responses);
        self.paths.entry(path.to_owned()).or_default().insert(method.as_str().to_ascii_lowercase(), operation);
    }

    /// The finished document, introduced by `info`.
    pub fn document(mut self, info: &Info) -> Value {
        let mut schemas = self.generator.take_definitions(true);
        for def in schemas.values_mut() {
            if let Some(o) = def.as_object_mut() {
                o.remove("$schema");
            }
        }
        let mut responses = Map::new();
        for shape in self.shapes.values() {
            let name = shape.name;
            for (status, description) in ERROR_STATUSES {
                let mut response = json!({
                    "description": description,
                    "content": {"application/json": {
                        "schema": {"$ref": format!("#/components/schemas/{name}Body")},
                        "example": error_example(shape, *status),
                    }},
                });
                if *status == 429 {
                    let mut headers = Map::new();
                    for (h, _) in RATE_LIMIT_HEADERS {
                        headers.insert((*h).to_owned(), json!({"$ref": format!("#/components/headers/{h}")}));
                    }
                    headers.insert(
                        "Retry-After".into(),
                        json!({"description": "Seconds until the limit has room again.", "schema": {"type": "integer"}}),
                    );
                    response["headers"] = Value::Object(headers);
                }
                responses.insert(format!("{name}{status}"), response);
            }
        }
        let mut headers = Map::new();
        for (name, description) in RATE_LIMIT_HEADERS {
            headers.insert((*name).to_owned(), json!({"description": description, "schema": {"type": "integer"}}));
        }
        let paths: Map<String, Value> = self.paths.into_iter().map(|(p, ops)| (p, Value::Object(ops))).collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": info.title,
                "version": info.version,
                "summary": info.summary,
                "description": info.description,
                "license": {"name": "MIT", "identifier": "MIT"},
            },
            "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
            "servers": [{"url": "/", "description": "This gateway"}],
            "tags": info.tags.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
            "paths": paths,
            "components": {
                "schemas": schemas,
                "responses": responses,
                "headers": headers,
                "securitySchemes": {
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                        "description": "The tenant's API key (`POST /admin/tenants` returns it once; rotate with `POST /admin/tenants/{tenant_id}/rotate-key`)."},
                    "userId": {"type": "apiKey", "in": "header", "name": "X-User-Id",
                        "description": "The user the tenant's server acts for, with `X-API-Key`."},
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                        "description": "A user token: minted by `POST /tokens`, or issued by the tenant's own auth server and registered in `/settings` (HS256, RS256, ES256)."},
                    "operatorKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                        "description": "The operator key (`ADMIN_API_KEY`), for `/admin/...`."},
                    "apiKeyToken": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                        "description": "A user token in `X-API-Key` (the `/api/v1` helpers of `ws-rooms.md` take one there, as the document's browser examples send it)."},
                    "queryToken": {"type": "apiKey", "in": "query", "name": "token",
                        "description": "A user token, or the tenant's API key with `user_id` in the query (browsers cannot set headers on a WebSocket)."},
                },
            },
        })
    }
}

/// Sent on every response to a tenant's request (rate-limited routes).
const RATE_LIMIT_HEADERS: &[(&str, &str)] = &[
    ("X-RateLimit-Limit", "Requests per second the tenant may make."),
    ("X-RateLimit-Remaining", "Requests left in the current second."),
    ("X-RateLimit-Reset", "Unix time (seconds) when the window resets."),
];
