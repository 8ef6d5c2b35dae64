//! The OpenAPI 3.1 document of every HTTP route the gateway serves, served at
//! `/openapi.json` and rendered at `/docs` (Redoc, built into the binary).
//!
//! The document is made while the routes are mounted ([`crate::routes::Mount`]): a
//! route cannot be registered without its [`Op`], so what is documented is what is
//! routed. An [`Op`] names the handler's types — the body it reads, the reply it
//! sends (usually the bus command's `Reply`) — and their JSON Schemas come from the
//! same `schemars` derivations as `proto-schemas/` (OpenAPI 3.1 schemas are JSON
//! Schema 2020-12, so they are used as they are, under `#/components/schemas`).
//!
//! Each dialect has its error shape ([`Dialect`]); every operation a tenant's caller
//! makes is rate limited, so it gets the `X-RateLimit-*` headers and the `429` here,
//! in one place, rather than in each operation.

mod docs;

use std::collections::BTreeMap;

use actix_web::http::Method;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

pub use docs::{DocsPage, openapi_json, redoc_js, redoc_licence, render_page};

/// How a dialect answers errors and wraps its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `rest-rooms.md` (and everything else outside `/api/chat`): replies as they are,
    /// errors as `{"success": false, "error": {"code", "message", "field"}}`.
    Rooms,
    /// `rest-chat.md` under `/api/chat`: replies as `{"success": true, "data": ...}`,
    /// errors as `{"success": false, "message", "code", "field"}`.
    Chat,
}

impl Dialect {
    fn error_schema(self) -> &'static str {
        match self {
            Dialect::Rooms => "Error",
            Dialect::Chat => "ChatError",
        }
    }
}

/// Who may call an operation: the OpenAPI security requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Nobody needs to say who they are.
    Public,
    /// A tenant's server: `X-API-Key`.
    Tenant,
    /// A user: `X-API-Key` + `X-User-Id`, or `Authorization: Bearer <user token>`.
    User,
    /// A user by token only: `Authorization: Bearer <user token>` (or the key and a user).
    Bearer,
    /// The operator: `X-API-Key` with the operator key.
    Operator,
    /// A WebSocket handshake: `?token=` (a user token or API key, with `user_id`).
    Socket,
    /// A user as for [`Auth::User`], or `?token=<user token>` when no header can be sent
    /// (a link in `<img src>`).
    UserOrQueryToken,
    /// The `/api/v1` helpers of `ws-rooms.md`, acting as a user: `X-API-Key` holding
    /// the tenant's key (with `X-User-Id`) or a user token, or `Authorization: Bearer`.
    KeyOrToken,
    /// Like [`Auth::KeyOrToken`], where the key needs no `X-User-Id` (the user is named
    /// in the body, or none is needed).
    KeyOrTokenAnyUser,
}

impl Auth {
    fn security(self) -> Option<Value> {
        Some(match self {
            Auth::Public => return None,
            Auth::Tenant => json!([{"apiKey": []}]),
            Auth::User | Auth::Bearer => json!([{"apiKey": [], "userId": []}, {"bearer": []}]),
            Auth::Operator => json!([{"operatorKey": []}]),
            Auth::Socket => json!([{"queryToken": []}]),
            Auth::UserOrQueryToken => json!([{"apiKey": [], "userId": []}, {"bearer": []}, {"queryToken": []}]),
            Auth::KeyOrToken => json!([{"apiKey": [], "userId": []}, {"apiKeyToken": []}, {"bearer": []}]),
            Auth::KeyOrTokenAnyUser => json!([{"apiKey": []}, {"apiKeyToken": []}, {"bearer": []}]),
        })
    }

    /// Whether the tenant's rate limit counts the request.
    fn rate_limited(self) -> bool {
        matches!(
            self,
            Auth::Tenant
                | Auth::User
                | Auth::Bearer
                | Auth::Socket
                | Auth::UserOrQueryToken
                | Auth::KeyOrToken
                | Auth::KeyOrTokenAnyUser
        )
    }
}

/// A schema made by the document's generator (a `$ref` for named types).
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The properties of a struct, inlined: for query parameters.
fn properties_of<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
    SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator().into_root_schema_for::<T>()
}

/// The schema of an `Option<T>` field that is always sent (`null` when empty):
/// `#[schemars(with = "Nullable<T>")]` makes it `T` or `null`, and required (schemars
/// makes `Option` fields optional, and `required` ones not nullable).
pub struct Nullable<T>(std::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for Nullable<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Option<T>>::schema_name()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        <Option<T>>::json_schema(g)
    }
}

/// One response.
#[derive(Clone)]
struct Reply {
    status: u16,
    description: String,
    /// `(content type, schema)`; `None` for no body.
    content: Option<(&'static str, SchemaFn)>,
    example: Option<Value>,
    headers: Vec<(&'static str, &'static str)>,
}

/// One operation: what a route reads and answers, for the document.
#[derive(Clone)]
pub struct Op {
    summary: String,
    description: Option<String>,
    tag: Option<&'static str>,
    auth: Auth,
    params: Vec<(&'static str, &'static str, String, bool, SchemaFn)>,
    query: Option<SchemaFn>,
    body: Option<(&'static str, SchemaFn, Option<Value>)>,
    /// Whether the request may come without a body.
    body_optional: bool,
    replies: Vec<Reply>,
    errors: Vec<u16>,
    raw: bool,
}

/// The start of an [`Op`]: `op("Create a room").user().json::<NewRoom>()...`.
pub fn op(summary: &str) -> Op {
    Op {
        summary: summary.to_owned(),
        description: None,
        tag: None,
        auth: Auth::Public,
        params: Vec::new(),
        query: None,
        body: None,
        body_optional: false,
        replies: Vec::new(),
        errors: Vec::new(),
        raw: false,
    }
}

impl Op {
    /// More words under the summary (Markdown).
    pub fn describe(mut self, text: &str) -> Self {
        self.description = Some(text.to_owned());
        self
    }

    /// The group it is listed under (the mount's tag otherwise).
    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = Some(tag);
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn tenant(self) -> Self {
        self.auth(Auth::Tenant)
    }

    pub fn user(self) -> Self {
        self.auth(Auth::User)
    }

    pub fn operator(self) -> Self {
        self.auth(Auth::Operator)
    }

    /// Describes a path parameter (every `{name}` of the path is one, a string,
    /// whether described or not).
    pub fn path_param(mut self, name: &'static str, description: &str) -> Self {
        self.params.push((name, "path", description.to_owned(), true, schema_of::<String>));
        self
    }

    /// Describes a path parameter that is an id of type `T` (its schema says the
    /// id's format).
    pub fn path_id<T: JsonSchema>(mut self, name: &'static str, description: &str) -> Self {
        self.params.push((name, "path", description.to_owned(), true, schema_of::<T>));
        self
    }

    /// A header or query parameter of type `T`.
    pub fn param<T: JsonSchema>(mut self, name: &'static str, place: &'static str, description: &str) -> Self {
        let required = place == "path";
        self.params.push((name, place, description.to_owned(), required, schema_of::<T>));
        self
    }

    /// A required header or query parameter of type `T`.
    pub fn required_param<T: JsonSchema>(mut self, name: &'static str, place: &'static str, description: &str) -> Self {
        self.params.push((name, place, description.to_owned(), true, schema_of::<T>));
        self
    }

    /// The query parameters: the fields of `Q`.
    pub fn query<Q: JsonSchema>(mut self) -> Self {
        self.query = Some(properties_of::<Q>);
        self
    }

    /// A JSON request body of type `B`.
    pub fn json<B: JsonSchema>(mut self) -> Self {
        self.body = Some(("application/json", schema_of::<B>, None));
        self
    }

    /// A JSON request body of type `B`, with an example.
    pub fn json_example<B: JsonSchema>(mut self, example: Value) -> Self {
        self.body = Some(("application/json", schema_of::<B>, Some(example)));
        self
    }

    /// The body (set by [`Op::json`] and the like) may be left out.
    pub fn optional_body(mut self) -> Self {
        self.body_optional = true;
        self
    }

    /// A request body of another content type.
    pub fn body<B: JsonSchema>(mut self, content_type: &'static str) -> Self {
        self.body = Some((content_type, schema_of::<B>, None));
        self
    }

    /// An example of the request body given so far.
    pub fn body_example(mut self, example: Value) -> Self {
        if let Some(body) = &mut self.body {
            body.2 = Some(example);
        }
        self
    }

    /// A successful reply with a JSON body of type `T` (wrapped in the dialect's
    /// envelope when it has one).
    pub fn reply<T: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        self.replies.push(Reply {
            status,
            description: description.to_owned(),
            content: Some(("application/json", schema_of::<T>)),
            example: None,
            headers: Vec::new(),
        });
        self
    }

    /// Like [`Op::reply`], with an example of the body (as sent, envelope included).
    pub fn reply_example<T: JsonSchema>(mut self, status: u16, description: &str, example: Value) -> Self {
        self = self.reply::<T>(status, description);
        if let Some(r) = self.replies.last_mut() {
            r.example = Some(example);
        }
        self
    }

    /// A successful reply of another content type (or none, for `None`).
    pub fn reply_raw(mut self, status: u16, description: &str, content_type: Option<&'static str>) -> Self {
        self.replies.push(Reply {
            status,
            description: description.to_owned(),
            content: content_type.map(|c| (c, schema_of::<String> as SchemaFn)),
            example: None,
            headers: Vec::new(),
        });
        self
    }

    /// A response header on the last reply added.
    pub fn reply_header(mut self, name: &'static str, description: &'static str) -> Self {
        if let Some(r) = self.replies.last_mut() {
            r.headers.push((name, description));
        }
        self
    }

    /// The documented errors (statuses), each in the dialect's error shape.
    pub fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// Replies are not wrapped in the dialect's envelope (pages, files, probes).
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
}

/// The document being made.
pub struct Api {
    generator: SchemaGenerator,
    paths: BTreeMap<String, Map<String, Value>>,
    /// Every `(method, path)` mounted, in mount order.
    routes: Vec<(Method, String)>,
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
        let mut generator = settings.into_generator();
        // The error shapes every operation refers to.
        generator.subschema_for::<ErrorBody>();
        generator.subschema_for::<ChatErrorBody>();
        Self { generator, paths: BTreeMap::new(), routes: Vec::new() }
    }

    /// Every `(method, path)` mounted so far.
    pub fn routes(&self) -> &[(Method, String)] {
        &self.routes
    }

    /// Records one route and its operation.
    pub fn add(&mut self, method: &Method, path: &str, dialect: Dialect, tag: &'static str, op: &Op) {
        self.routes.push((method.clone(), path.to_owned()));
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
                let schema = if dialect == Dialect::Chat && !op.raw && content_type == "application/json" {
                    json!({
                        "type": "object",
                        "properties": {"success": {"const": true}, "data": inner},
                        "required": ["success", "data"],
                    })
                } else {
                    inner
                };
                let mut media = json!({"schema": schema});
                if let Some(e) = &reply.example {
                    media["example"] = e.clone();
                }
                response["content"] = json!({content_type: media});
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
        if limited && !errors.contains(&429) {
            errors.push(429);
        }
        for status in errors {
            let mut response = json!({"$ref": format!("#/components/responses/{}{status}", dialect.error_schema())});
            if status == 429 && limited {
                response = json!({"$ref": format!("#/components/responses/{}429", dialect.error_schema())});
            }
            responses.insert(status.to_string(), response);
        }
        operation["responses"] = Value::Object(responses);
        self.paths.entry(path.to_owned()).or_default().insert(method.as_str().to_ascii_lowercase(), operation);
    }

    /// The finished document.
    pub fn document(mut self) -> Value {
        let mut schemas = self.generator.take_definitions(true);
        for def in schemas.values_mut() {
            if let Some(o) = def.as_object_mut() {
                o.remove("$schema");
            }
        }
        let mut responses = Map::new();
        for dialect in [Dialect::Rooms, Dialect::Chat] {
            let name = dialect.error_schema();
            for (status, description) in ERROR_STATUSES {
                let mut response = json!({
                    "description": description,
                    "content": {"application/json": {
                        "schema": {"$ref": format!("#/components/schemas/{name}Body")},
                        "example": error_example(dialect, *status),
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
                "title": "chat-backend gateway",
                "version": env!("CARGO_PKG_VERSION"),
                "summary": "Every HTTP route of the gateway: the canonical REST API (rest-rooms.md, also under /v1), the /api/v1 helpers of ws-rooms.md, rest-chat.md under /api/chat, notifications, tokens, users, settings, the operator's /admin routes, the WebSocket and Socket.IO handshakes, and the pages.",
                "description": INFO_DESCRIPTION,
                "license": {"name": "MIT", "identifier": "MIT"},
            },
            "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
            "servers": [{"url": "/", "description": "This gateway"}],
            "tags": TAGS.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
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

const ERROR_STATUSES: &[(u16, &str)] = &[
    (400, "Invalid input (`VALIDATION_ERROR`; `field` names the field at fault)."),
    (401, "Missing or bad credentials (`AUTHENTICATION_ERROR`)."),
    (403, "Authenticated but not allowed (`FORBIDDEN`)."),
    (404, "No such resource, or the caller may not know it exists (`NOT_FOUND`)."),
    (409, "Conflicts with the current state (`CONFLICT`)."),
    (413, "The body is larger than allowed (`PAYLOAD_TOO_LARGE`)."),
    (415, "The content type is not accepted (`UNSUPPORTED_MEDIA_TYPE`)."),
    (429, "Over the tenant's rate limit (`RATE_LIMIT_EXCEEDED`); see `Retry-After`."),
    (500, "A fault of the server (`INTERNAL_ERROR`)."),
    (503, "A service behind the gateway did not answer (`SERVICE_UNAVAILABLE`)."),
];

fn error_example(dialect: Dialect, status: u16) -> Value {
    let (code, message) = match status {
        400 => ("VALIDATION_ERROR", "content must not be empty"),
        401 => ("AUTHENTICATION_ERROR", "Invalid API key"),
        403 => ("FORBIDDEN", "Not a member of this room"),
        404 => ("NOT_FOUND", "Room not found"),
        409 => ("CONFLICT", "Already exists"),
        413 => ("PAYLOAD_TOO_LARGE", "Body larger than 65536 bytes"),
        415 => ("UNSUPPORTED_MEDIA_TYPE", "Files of type application/x-msdownload are not allowed"),
        429 => ("RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Try again in 1 seconds"),
        503 => ("SERVICE_UNAVAILABLE", "message-store did not answer"),
        _ => ("INTERNAL_ERROR", "Internal error"),
    };
    match dialect {
        Dialect::Rooms => json!({"success": false, "error": {"code": code, "message": message}}),
        Dialect::Chat => json!({"success": false, "message": message, "code": code}),
    }
}

/// The error of every route outside `/api/chat`.
#[derive(JsonSchema)]
#[schemars(rename = "ErrorBody", extend("examples" = [{"success": false, "error": {"code": "VALIDATION_ERROR", "message": "content must not be empty", "field": "content"}}]))]
#[allow(dead_code)] // only its schema is used
pub struct ErrorBody {
    /// Always `false`.
    #[schemars(extend("const" = false))]
    success: bool,
    error: chat_domain::ApiError,
}

/// The error of every `/api/chat` route.
#[derive(JsonSchema)]
#[schemars(rename = "ChatErrorBody")]
#[allow(dead_code)] // only its schema is used
pub struct ChatErrorBody {
    /// Always `false`.
    #[schemars(extend("const" = false))]
    success: bool,
    message: String,
    code: chat_domain::ErrorCode,
    /// The request field at fault (as this dialect names it), for `VALIDATION_ERROR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// The groups of operations, in the order Redoc lists them.
const TAGS: &[(&str, &str)] = &[
    ("Rooms", "`rest-rooms.md`: rooms, members, messages, read cursors (also under `/v1`)."),
    ("ws-rooms helpers", "The REST helpers of `ws-rooms.md` under `/api/v1`."),
    ("Chats", "`rest-chat.md` under `/api/chat`: chats, participants, messages, files."),
    ("Notifications", "Topics, subscriptions, the inbox, and webhook dead letters."),
    ("Users and tokens", "The tenant's user directory and short-lived user tokens."),
    ("Settings", "The tenant's own settings: JWT issuers, uploads, the edit window."),
    ("Admin", "The operator: tenants, keys, limits, webhooks."),
    ("Real time", "WebSocket and Socket.IO handshakes (the frames are in docs/asyncapi-ws.json)."),
    ("Pages", "The web chat app, the admin console, this reference."),
    ("Operations", "Liveness, readiness, Prometheus metrics."),
    (
        "Under /v1",
        "The canonical API, the `/api/v1` helpers, notifications, tokens, users, settings and `/admin` again, each under `/v1` as at `/`.",
    ),
];

const INFO_DESCRIPTION: &str = "\
Every route answers errors in its dialect's shape: `{\"success\": false, \"error\": {\"code\", \"message\", \"field\"}}` \
outside `/api/chat`, `{\"success\": false, \"message\", \"code\", \"field\"}` under it; the codes and their statuses \
are the same (`VALIDATION_ERROR` 400, `AUTHENTICATION_ERROR` 401, `FORBIDDEN` 403, `NOT_FOUND` 404, `CONFLICT` 409, \
`PAYLOAD_TOO_LARGE` 413, `UNSUPPORTED_MEDIA_TYPE` 415, `RATE_LIMIT_EXCEEDED` 429, `INTERNAL_ERROR` 500, \
`SERVICE_UNAVAILABLE` 503). A path no route serves, or a method a path does not serve, is the dialect's 404.\n\n\
Every request made for a tenant (API key or user token) counts against the tenant's rate limit and its response \
carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`; over the limit it is a 429 with \
`Retry-After`.\n\n\
A path with a trailing slash (`/api/chat/`, `/api/v1/rooms/{room_id}/messages/`, `/conversations/{id}/`, \
`/socket.io/`) is listed with and without it where both are served.";

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    /// Every `example` of a request or response body in the document, with where it
    /// is and its schema.
    fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let mut bodies: Vec<(String, &Value)> =
                    vec![(format!("{method} {path} request"), &operation["requestBody"]["content"])];
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    bodies.push((format!("{method} {path} {status}"), &response["content"]));
                }
                for (at, content) in bodies {
                    for (media_type, media) in content.as_object().into_iter().flatten() {
                        if let Some(example) = media.get("example") {
                            out.push((format!("{at} {media_type}"), media["schema"].clone(), example.clone()));
                        }
                    }
                }
            }
        }
        out
    }

    /// What does not fit: `"<where>: <error>"`.
    fn mismatches(doc: &Value) -> anyhow::Result<Vec<String>> {
        let mut failures = Vec::new();
        for (at, schema, example) in examples(doc) {
            // The schema, with the components its `$ref`s point into.
            let mut root = json!({"components": doc["components"].clone()});
            if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object()) {
                root.extend(schema.clone());
            }
            let validator = jsonschema::draft202012::new(&root).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            for error in validator.iter_errors(&example) {
                failures.push(format!("{at}: {error} at {}", error.instance_path()));
            }
        }
        Ok(failures)
    }

    fn document() -> anyhow::Result<Value> {
        let options = crate::routes::Options {
            statics: None,
            dev_login: Some(chat_domain::ids::TenantId::parse("dev")?),
            check: std::sync::Arc::new(|| Box::pin(async { true })),
        };
        Ok(crate::routes::document(&options))
    }

    /// An example that does not fit its schema misleads every reader of the reference
    /// (and every client generated from it).
    #[test]
    fn every_example_matches_its_schema() -> anyhow::Result<()> {
        let doc = document()?;
        let count = examples(&doc).len();
        assert!(count >= 10, "the main operations have examples; found {count}");
        let failures = mismatches(&doc)?;
        assert!(failures.is_empty(), "{failures:#?}");
        Ok(())
    }

    #[test]
    fn an_example_that_does_not_fit_is_caught() -> anyhow::Result<()> {
        let mut doc = document()?;
        let example = doc
            .pointer_mut("/paths/~1rooms/post/responses/201/content/application~1json/example/type")
            .ok_or_else(|| anyhow::anyhow!("POST /rooms has a 201 example with a type"))?;
        *example = json!("lobby");
        let failures = mismatches(&doc)?;
        assert_eq!(failures.len(), 1, "{failures:#?}");
        assert!(failures[0].starts_with("post /rooms 201"), "{failures:#?}");
        Ok(())
    }
}
