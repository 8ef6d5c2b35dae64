//! An operation's documentation, built next to the route it documents:
//! `op("Create a room").user().json::<NewRoom>().reply::<Room>(201, "...")`. What it
//! reads (auth, parameters, query, body) and answers (replies, errors) is named by the
//! handler's own types; [`crate::openapi::Api`] turns it into the document.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Value, json};

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
    pub(crate) fn security(self) -> Option<Value> {
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
    pub(crate) fn rate_limited(self) -> bool {
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
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub(crate) fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// A body of any bytes: the schema that holds for everything.
fn any_bytes(_: &mut SchemaGenerator) -> Schema {
    Schema::default()
}

/// The properties of a struct, inlined: for query parameters.
pub(crate) fn properties_of<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
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
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) description: String,
    /// `(content type, schema)`; `None` for no body.
    pub(crate) content: Option<(&'static str, SchemaFn)>,
    pub(crate) example: Option<Value>,
    pub(crate) headers: Vec<(&'static str, &'static str)>,
    /// More content types the same body may come as (a file of any type).
    pub(crate) more_types: Vec<&'static str>,
}

/// One operation: what a route reads and answers, for the document.
#[derive(Clone)]
pub struct Op {
    pub(crate) summary: String,
    pub(crate) description: Option<String>,
    pub(crate) tag: Option<&'static str>,
    pub(crate) auth: Auth,
    pub(crate) params: Vec<(&'static str, &'static str, String, bool, SchemaFn)>,
    pub(crate) query: Option<SchemaFn>,
    pub(crate) body: Option<(&'static str, SchemaFn, Option<Value>)>,
    /// Whether the request may come without a body.
    pub(crate) body_optional: bool,
    pub(crate) replies: Vec<Reply>,
    pub(crate) errors: Vec<u16>,
    pub(crate) raw: bool,
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
            more_types: Vec::new(),
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
            more_types: Vec::new(),
        });
        self
    }

    /// A successful reply that is one of several content types (a file: each type it
    /// may be served as), each a string of bytes.
    pub fn reply_types(mut self, status: u16, description: &str, content_types: &[&'static str]) -> Self {
        let (first, more) = content_types.split_first().map_or((None, &[][..]), |(f, m)| (Some(*f), m));
        self = self.reply_raw(status, description, first);
        if let Some(r) = self.replies.last_mut() {
            r.more_types = more.to_vec();
            // Bytes of any kind (a JSON file is not a JSON string): no schema.
            r.content = first.map(|c| (c, any_bytes as SchemaFn));
        }
        self
    }

    /// A successful reply with a JSON body of type `T`, as it is (no envelope): the
    /// probes, the document itself.
    pub fn reply_plain<T: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        self = self.reply::<T>(status, description);
        self.raw = true;
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
