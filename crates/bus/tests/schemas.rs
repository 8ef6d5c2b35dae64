//! `proto-schemas/` is the source of truth for what crosses the bus. This test checks
//! that every JSON Schema there equals the one the Rust type produces, that no file is
//! left over from a type that is gone, that real values (built by the bus crate's own
//! envelope functions) validate against the checked-in files, and that
//! `proto-schemas/asyncapi.json` names every subject [`Subjects`] can build.
//!
//! Needs nothing running. With `UPDATE_SCHEMAS=1` (`make schemas`) it first rewrites
//! the files (and deletes stale ones), then runs the same checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chat_bus::envelope;
use chat_bus::subjects::{Placeholder, PresenceSignal, Subjects};
use chat_domain::ApiError;
use chat_domain::ids::{EventId, MessageId, RoomId, TenantId, UserId};
use chat_domain::model::{Actor, Member, MemberRole, Message, MessageContent, Room, RoomType, Tenant};
use chat_domain::proto::blocks::{BlockUser, ListBlocks, UnblockUser};
use chat_domain::proto::chat::{
    ChatMessages, CreateChat, GetChat, GetChatStats, GetUser, ListChats, PutUser, ReadAll, ToggleArchive,
};
use chat_domain::proto::events::{MemberRemoved, RoomEvent, RoomEventBody, TenantChanged, UserEvent};
use chat_domain::proto::health::{Health, ServiceHealth};
use chat_domain::proto::moderation::{
    CheckSpeak, FlagMessage, GetRoomSettings, ListFlags, ListRestrictions, ResolveFlag, Restrict, RoomModerationLog,
    SetMemberRole, TenantFlags, TenantModerationLog, Unrestrict, UpdateRoomSettings,
};
use chat_domain::proto::notify::{
    EraseNotifications, ListDeadLetters, ListInbox, ListSubscriptions, Notify, RetryDeadLetter, Subscribe, TakeInbox,
    Unsubscribe,
};
use chat_domain::proto::presence::{
    Connect, ConnectMany, DisconnectSignal, ErasePresence, GatewayLease, GatewayResync, GetOnline, GetTenantOnline,
    OnlineHistory, SetTyping,
};
use chat_domain::proto::reactions::{AddReaction, ListPins, ListReactors, PinMessage, RemoveReaction, UnpinMessage};
use chat_domain::proto::search::SearchMessages;
use chat_domain::proto::store::{
    AddMember, Audience, Authenticate, AuthenticateAdmin, CreateRoom, CreateTenant, CreateTenantOn, DeleteMessage,
    EditMessage, EraseData, GetRoom, GetTenant, GetTokenSecret, GetWebhook, ListClusters, ListMembers, ListMessages,
    ListRooms, ListTenants, MarkDelivered, MessageFeed, MoveCursor, MoveTenant, OlderMessages, ReadMessages,
    RemoveMember, ResolveIssuer, RoomAudiences, RoomMessages, RotateKey, SendMessage, SendMessages, UpdateTenant,
};
use chat_domain::proto::sync::SyncChanges;
use chat_domain::proto::threads::{GetThread, ListThreads};
use chat_domain::proto::{Command, Service, ServiceCommand};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// A test failure that prints as written rather than `Debug`-escaped, so file names and
/// the `make schemas` hint read well in the test output.
struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

type TestResult = Result<(), Failure>;

/// The folder under `commands/` and `replies/` of a command every service answers.
const COMMON: &str = "common";
/// The generated AsyncAPI document, relative to `proto-schemas/`.
const ASYNCAPI: &str = "asyncapi.json";
/// The JSON Schema dialect of every file, as AsyncAPI's `schemaFormat` names it.
const SCHEMA_FORMAT: &str = "application/schema+json;version=draft-2020-12";

// ---------------------------------------------------------------------------------
// What exists: every command, event and subject. Adding one to the domain or bus
// crate means adding it here; the tripwire tests at the bottom notice when that was
// forgotten.
// ---------------------------------------------------------------------------------

/// One command, as its schema files and AsyncAPI channels describe it.
struct CommandSpec {
    verb: &'static str,
    /// The folder under `commands/` and `replies/`: the owning service, or [`COMMON`].
    folder: &'static str,
    /// Who answers it.
    services: Vec<Service>,
    /// The schema of the command itself.
    command: Value,
    /// The schema of its reply envelope.
    reply: Value,
}

impl CommandSpec {
    fn of<C: Command>(folder: &'static str, services: &[Service]) -> Self {
        let command = schemars::schema_for!(C).to_value();
        let title = command.get("title").and_then(Value::as_str).unwrap_or(C::VERB).to_owned();
        Self {
            verb: C::VERB,
            folder,
            services: services.to_vec(),
            command,
            reply: envelope_schema::<C::Reply>(&title, C::VERB),
        }
    }

    /// A command one service owns: its files live under that service's name.
    fn owned<C: ServiceCommand>() -> Self {
        Self::of::<C>(C::SERVICE.name(), &[C::SERVICE])
    }

    /// A command every backend answers: one schema under [`COMMON`], a channel per service.
    fn common<C: Command>() -> Self {
        Self::of::<C>(COMMON, &Service::BACKENDS)
    }

    fn command_file(&self) -> String {
        format!("commands/{}/{}.json", self.folder, self.verb)
    }

    fn reply_file(&self) -> String {
        format!("replies/{}/{}.json", self.folder, self.verb)
    }

    fn title(&self) -> &str {
        self.command.get("title").and_then(Value::as_str).unwrap_or(self.verb)
    }
}

fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::owned::<Authenticate>(),
        CommandSpec::owned::<AuthenticateAdmin>(),
        CommandSpec::owned::<GetTokenSecret>(),
        CommandSpec::owned::<ResolveIssuer>(),
        CommandSpec::owned::<GetWebhook>(),
        CommandSpec::owned::<CreateTenant>(),
        CommandSpec::owned::<ListTenants>(),
        CommandSpec::owned::<GetTenant>(),
        CommandSpec::owned::<UpdateTenant>(),
        CommandSpec::owned::<RotateKey>(),
        CommandSpec::owned::<EraseData>(),
        CommandSpec::owned::<EraseNotifications>(),
        CommandSpec::owned::<ErasePresence>(),
        CommandSpec::owned::<CreateRoom>(),
        CommandSpec::owned::<GetRoom>(),
        CommandSpec::owned::<ListMembers>(),
        CommandSpec::owned::<AddMember>(),
        CommandSpec::owned::<RemoveMember>(),
        CommandSpec::owned::<SendMessage>(),
        CommandSpec::owned::<SendMessages>(),
        CommandSpec::owned::<ListMessages>(),
        CommandSpec::owned::<MoveCursor>(),
        CommandSpec::owned::<ReadMessages>(),
        CommandSpec::owned::<MarkDelivered>(),
        CommandSpec::owned::<OlderMessages>(),
        CommandSpec::owned::<ListRooms>(),
        CommandSpec::owned::<EditMessage>(),
        CommandSpec::owned::<DeleteMessage>(),
        CommandSpec::owned::<Connect>(),
        CommandSpec::owned::<ConnectMany>(),
        CommandSpec::owned::<GetOnline>(),
        CommandSpec::owned::<GetTenantOnline>(),
        CommandSpec::owned::<SetTyping>(),
        CommandSpec::owned::<Notify>(),
        CommandSpec::owned::<Subscribe>(),
        CommandSpec::owned::<Unsubscribe>(),
        CommandSpec::owned::<ListSubscriptions>(),
        CommandSpec::owned::<ListInbox>(),
        CommandSpec::owned::<TakeInbox>(),
        CommandSpec::owned::<ListDeadLetters>(),
        CommandSpec::owned::<RetryDeadLetter>(),
        CommandSpec::owned::<Audience>(),
        CommandSpec::owned::<RoomMessages>(),
        CommandSpec::owned::<RoomAudiences>(),
        CommandSpec::owned::<MessageFeed>(),
        CommandSpec::owned::<ListClusters>(),
        CommandSpec::owned::<CreateTenantOn>(),
        CommandSpec::owned::<MoveTenant>(),
        CommandSpec::owned::<OnlineHistory>(),
        CommandSpec::owned::<PutUser>(),
        CommandSpec::owned::<GetUser>(),
        CommandSpec::owned::<CreateChat>(),
        CommandSpec::owned::<GetChat>(),
        CommandSpec::owned::<ListChats>(),
        CommandSpec::owned::<GetChatStats>(),
        CommandSpec::owned::<ToggleArchive>(),
        CommandSpec::owned::<ChatMessages>(),
        CommandSpec::owned::<ReadAll>(),
        CommandSpec::owned::<SearchMessages>(),
        CommandSpec::owned::<SyncChanges>(),
        CommandSpec::owned::<BlockUser>(),
        CommandSpec::owned::<UnblockUser>(),
        CommandSpec::owned::<ListBlocks>(),
        CommandSpec::owned::<AddReaction>(),
        CommandSpec::owned::<RemoveReaction>(),
        CommandSpec::owned::<ListReactors>(),
        CommandSpec::owned::<PinMessage>(),
        CommandSpec::owned::<UnpinMessage>(),
        CommandSpec::owned::<ListPins>(),
        CommandSpec::owned::<GetThread>(),
        CommandSpec::owned::<ListThreads>(),
        CommandSpec::owned::<Restrict>(),
        CommandSpec::owned::<Unrestrict>(),
        CommandSpec::owned::<ListRestrictions>(),
        CommandSpec::owned::<SetMemberRole>(),
        CommandSpec::owned::<GetRoomSettings>(),
        CommandSpec::owned::<UpdateRoomSettings>(),
        CommandSpec::owned::<CheckSpeak>(),
        CommandSpec::owned::<FlagMessage>(),
        CommandSpec::owned::<ListFlags>(),
        CommandSpec::owned::<ResolveFlag>(),
        CommandSpec::owned::<TenantFlags>(),
        CommandSpec::owned::<RoomModerationLog>(),
        CommandSpec::owned::<TenantModerationLog>(),
        CommandSpec::common::<Health>(),
    ]
}

/// The event schema files, by path.
fn events() -> Vec<(&'static str, Value)> {
    vec![
        ("events/room-event.json", schemars::schema_for!(RoomEvent).to_value()),
        ("events/tenant-changed.json", schemars::schema_for!(TenantChanged).to_value()),
        ("events/user-event.json", schemars::schema_for!(UserEvent).to_value()),
        ("signals/disconnect.json", schemars::schema_for!(DisconnectSignal).to_value()),
        ("signals/gateway-lease.json", schemars::schema_for!(GatewayLease).to_value()),
        ("signals/gateway-resync.json", schemars::schema_for!(GatewayResync).to_value()),
    ]
}

/// Every presence signal. Adding a variant stops this from compiling until it is listed.
fn presence_signals() -> Vec<PresenceSignal> {
    let all = vec![PresenceSignal::Connect, PresenceSignal::Disconnect];
    for signal in &all {
        match signal {
            PresenceSignal::Connect | PresenceSignal::Disconnect => {}
        }
    }
    all
}

const TENANT: Placeholder = Placeholder("{tenant}");
const ROOM: Placeholder = Placeholder("{room}");
const USER: Placeholder = Placeholder("{user}");
const KIND: Placeholder = Placeholder("{kind}");
const GATEWAY: Placeholder = Placeholder("{gateway}");

/// Every builder of [`Subjects`] this test covers, by method name. A new builder fails
/// `every_subject_builder_is_covered` until it is called in [`concrete_subjects`] or
/// [`wildcard_subjects`] and named here.
const COVERED_BUILDERS: [&str; 18] = [
    "command",
    "commands_of",
    "room_event",
    "room_events",
    "all_room_events",
    "room_events_of_kind",
    "user_event",
    "tenant_user_events",
    "all_user_events",
    "delivery_jobs",
    "all_dead_letters",
    "dead_letters_of",
    "presence",
    "gateway_lease",
    "gateway_resync",
    "all_presence",
    "dead_letter",
    "tenant_changed",
];
/// Methods of [`Subjects`] (and its helpers) that build no subject.
const NOT_SUBJECTS: [&str; 7] =
    ["new", "prefix", "events_stream", "deliveries_stream", "dead_letter_stream", "as_str", "user_of_user_event"];

/// Every subject something publishes on, with placeholders for ids and open kinds.
/// Built independently of the AsyncAPI generator, so each side checks the other.
fn concrete_subjects(s: &Subjects) -> Vec<String> {
    let mut out = Vec::new();
    for c in commands() {
        for service in &c.services {
            out.push(s.command(*service, c.verb));
        }
    }
    for kind in RoomEventBody::KINDS {
        out.push(s.room_event(&TENANT, &ROOM, kind));
    }
    out.push(s.user_event(&TENANT, &USER, KIND.0));
    for signal in presence_signals() {
        out.push(s.presence(&TENANT, &ROOM, signal));
    }
    out.push(s.gateway_lease(&GATEWAY));
    out.push(s.gateway_resync(&GATEWAY));
    out.push(s.dead_letter(&TENANT, KIND.0));
    out.push(s.tenant_changed());
    out.push(s.delivery_jobs());
    out
}

/// Every wildcard subject something subscribes to; each must cover a channel.
fn wildcard_subjects(s: &Subjects) -> Vec<String> {
    let mut out: Vec<String> = Service::BACKENDS.iter().map(|service| s.commands_of(*service)).collect();
    out.push(s.room_events(&TENANT, &ROOM));
    out.push(s.all_room_events());
    out.push(s.room_events_of_kind("message.created"));
    out.push(s.all_presence());
    out.push(s.tenant_user_events(&TENANT));
    out.push(s.all_user_events());
    out.push(s.all_dead_letters());
    out.push(s.dead_letters_of(&TENANT));
    out
}

// ---------------------------------------------------------------------------------
// Generation.
// ---------------------------------------------------------------------------------

/// The schema of a reply envelope: `{"ok":true,"data":T}` or `{"ok":false,"error":ApiError}`
/// (see `chat_bus::envelope`).
fn envelope_schema<T: JsonSchema>(command: &str, verb: &str) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let data = generator.subschema_for::<T>().to_value();
    let error = generator.subschema_for::<ApiError>().to_value();
    let defs = generator.take_definitions(true);
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("{command} reply"),
        "description": format!(
            "The reply envelope of `{verb}`: `{{\"ok\":true,\"data\":...}}` on success, \
             `{{\"ok\":false,\"error\":...}}` on failure."
        ),
        "oneOf": [
            {
                "type": "object",
                "properties": { "ok": { "const": true }, "data": data },
                "required": ["ok", "data"],
            },
            {
                "type": "object",
                "properties": { "ok": { "const": false }, "error": error },
                "required": ["ok", "error"],
            },
        ],
    });
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs);
    }
    schema
}

/// A channel parameter: a `{name}` token of a channel's address.
fn parameter(description: &str) -> Value {
    json!({ "description": description })
}

/// A message whose payload is the schema in `file` (relative to `proto-schemas/`).
fn message(name: &str, title: &str, file: &str) -> Value {
    json!({
        "name": name,
        "title": title,
        "contentType": "application/json",
        "payload": { "schemaFormat": SCHEMA_FORMAT, "schema": { "$ref": file } },
    })
}

/// A channel id for an address: its tokens after the prefix, joined by `_`, without
/// braces (AsyncAPI ids are `[A-Za-z0-9_-]+`).
fn channel_id(s: &Subjects, address: &str) -> String {
    let rest = address.strip_prefix(s.prefix()).unwrap_or(address).trim_start_matches('.');
    rest.replace(['{', '}'], "").replace('.', "_")
}

/// The AsyncAPI 3.0 document naming every subject, generated from the same lists as
/// the schema files.
fn asyncapi() -> Value {
    let s = Subjects::default();
    let mut channels = Map::new();
    let mut operations = Map::new();

    for c in commands() {
        for service in &c.services {
            let address = s.command(*service, c.verb);
            let id = channel_id(&s, &address);
            let reply_id = format!("{id}_reply");
            let description = c.command.get("description").and_then(Value::as_str).unwrap_or_default();
            channels.insert(
                id.clone(),
                json!({
                    "address": address,
                    "title": c.verb,
                    "description": format!(
                        "{description}\n\nRequest/reply, answered by one instance of `{name}` \
                         (queue group `{name}`).",
                        name = service.name()
                    ).trim_start(),
                    "messages": { "request": message(c.title(), c.verb, &c.command_file()) },
                }),
            );
            channels.insert(
                reply_id.clone(),
                json!({
                    "address": null,
                    "title": format!("{} reply", c.verb),
                    "description": "The requester's reply inbox, chosen per request by the NATS client.",
                    "messages": {
                        "reply": message(&format!("{}Reply", c.title()), &format!("{} reply", c.verb), &c.reply_file()),
                    },
                }),
            );
            operations.insert(
                format!("{}_{}", service.name(), c.verb),
                json!({
                    "action": "receive",
                    "title": format!("{} answers {}", service.name(), c.verb),
                    "channel": { "$ref": format!("#/channels/{id}") },
                    "messages": [{ "$ref": format!("#/channels/{id}/messages/request") }],
                    "reply": {
                        "channel": { "$ref": format!("#/channels/{reply_id}") },
                        "messages": [{ "$ref": format!("#/channels/{reply_id}/messages/reply") }],
                    },
                }),
            );
        }
    }

    let tenant = parameter("A tenant id (`TenantId`: letters, digits, `_`, `-`).");
    let room = parameter("A room id (`RoomId`: letters, digits, `_`, `-`).");
    let user = parameter("A user id (`UserId`: letters, digits and `_ - @ + = ~`).");

    for kind in RoomEventBody::KINDS {
        let address = s.room_event(&TENANT, &ROOM, kind);
        let id = channel_id(&s, &address);
        channels.insert(
            id.clone(),
            json!({
                "address": address,
                "title": kind,
                "description": format!(
                    "A room event of kind `{kind}`, published on core NATS right after the \
                     transaction that made it commits (PostgreSQL keeps the durable copy: \
                     message-store republishes message events from the messages log and \
                     other events from its outbox after a crash, so a receiver may see an \
                     event twice, with the same `event_id`). A gateway subscribes to \
                     `{room_all}` while it has a socket in the room and orders messages by \
                     `seq`, dropping repeats. Notification follows messages through \
                     message-store's feed, not this subject.",
                    room_all = s.room_events(&TENANT, &ROOM),
                ),
                "parameters": { "tenant": tenant, "room": room },
                "messages": { "event": message("RoomEvent", kind, "events/room-event.json") },
            }),
        );
        operations.insert(
            format!("message-store_publish_{}", kind.replace('.', "_")),
            json!({
                "action": "send",
                "title": format!("message-store publishes {kind}"),
                "channel": { "$ref": format!("#/channels/{id}") },
                "messages": [{ "$ref": format!("#/channels/{id}/messages/event") }],
            }),
        );
    }

    let address = s.delivery_jobs();
    channels.insert(
        channel_id(&s, &address),
        json!({
            "address": address,
            "title": "webhook delivery jobs",
            "description": "notification's JetStream work queue: `{\"delivery_id\"}` per webhook \
                            delivery; retried by delayed naks until the tenant's max_attempts.",
        }),
    );

    let address = s.tenant_changed();
    let id = channel_id(&s, &address);
    channels.insert(
        id.clone(),
        json!({
            "address": address,
            "title": "tenant changed",
            "description": "A tenant's keys or settings changed; gateways drop what they cached \
                            about it. Core NATS, not kept.",
            "messages": { "event": message("TenantChanged", "tenant changed", "events/tenant-changed.json") },
        }),
    );
    operations.insert(
        "message-store_publish_tenant_changed".to_owned(),
        json!({
            "action": "send",
            "title": "message-store announces a tenant change",
            "channel": { "$ref": format!("#/channels/{id}") },
            "messages": [{ "$ref": format!("#/channels/{id}/messages/event") }],
        }),
    );

    // Subjects whose payloads have no Rust type in `chat_domain::proto` yet: named here so
    // the address space is complete, without a message until a type exists.
    let address = s.user_event(&TENANT, &USER, KIND.0);
    channels.insert(
        channel_id(&s, &address),
        json!({
            "address": address,
            "title": "user event",
            "description": "An event addressed to one person on any room, e.g. `notification` or \
                            `message.status` (a kind may span several tokens). Payload not yet \
                            defined in `chat_domain::proto`.",
            "parameters": {
                "tenant": tenant,
                "user": user,
                "kind": parameter("The event's kind, e.g. `notification`, `message.status`."),
            },
        }),
    );
    for signal in presence_signals() {
        let address = s.presence(&TENANT, &ROOM, signal);
        channels.insert(
            channel_id(&s, &address),
            json!({
                "address": address,
                "title": format!("presence {}", signal.as_str()),
                "description": "A gateway's presence signal about one of its sockets in a room. \
                                Payload not yet defined in `chat_domain::proto`.",
                "parameters": { "tenant": tenant, "room": room },
            }),
        );
    }
    let address = s.gateway_lease(&GATEWAY);
    let id = channel_id(&s, &address);
    channels.insert(
        id.clone(),
        json!({
            "address": address,
            "title": "gateway lease",
            "description": "A gateway renewing the lease its sockets live by (every few seconds, \
                            one signal per gateway however many sockets it holds). When a lease \
                            runs out, presence closes that gateway's sockets. Core NATS, in the \
                            `presence` queue group.",
            "parameters": { "gateway": parameter("A gateway id (`GatewayId`).") },
            "messages": { "signal": message("GatewayLease", "gateway lease", "signals/gateway-lease.json") },
        }),
    );
    operations.insert(
        "gateway_renew_lease".to_owned(),
        json!({
            "action": "send",
            "title": "a gateway renews its lease",
            "channel": { "$ref": format!("#/channels/{id}") },
            "messages": [{ "$ref": format!("#/channels/{id}/messages/signal") }],
        }),
    );
    let address = s.gateway_resync(&GATEWAY);
    let id = channel_id(&s, &address);
    channels.insert(
        id.clone(),
        json!({
            "address": address,
            "title": "gateway resync",
            "description": "Presence asking one gateway to announce its sockets again (a `connect` \
                            per socket): sent when a lease arrives from a gateway presence has no \
                            lease for (its Redis lost it), and to every leased gateway once Redis \
                            answers again after an outage. Core NATS; the gateway subscribes to its \
                            own.",
            "parameters": { "gateway": parameter("A gateway id (`GatewayId`).") },
            "messages": { "signal": message("GatewayResync", "gateway resync", "signals/gateway-resync.json") },
        }),
    );
    operations.insert(
        "presence_asks_for_resync".to_owned(),
        json!({
            "action": "send",
            "title": "presence asks a gateway to announce its sockets again",
            "channel": { "$ref": format!("#/channels/{id}") },
            "messages": [{ "$ref": format!("#/channels/{id}/messages/signal") }],
        }),
    );
    let address = s.dead_letter(&TENANT, KIND.0);
    channels.insert(
        channel_id(&s, &address),
        json!({
            "address": address,
            "title": "dead letter",
            "description": "Work that failed for good, kept by the dead-letter stream. Payload not \
                            yet defined in `chat_domain::proto`.",
            "parameters": {
                "tenant": tenant,
                "kind": parameter("What failed, e.g. `webhook`."),
            },
        }),
    );

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Chat bus",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Every NATS subject of the chat backend. Addresses use the default prefix `{prefix}`; \
                 a deployment may set another with `CHAT_BUS_PREFIX`. Payload schemas are the \
                 JSON Schema (2020-12) files beside this document. Generated by \
                 `crates/bus/tests/schemas.rs`: run `make schemas` instead of editing it.",
                prefix = s.prefix()
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
    })
}

/// Every generated file, by path relative to `proto-schemas/`.
fn generated() -> BTreeMap<String, Value> {
    let mut files = BTreeMap::new();
    for c in commands() {
        files.insert(c.command_file(), c.command.clone());
        files.insert(c.reply_file(), c.reply.clone());
    }
    for (path, schema) in events() {
        files.insert(path.to_owned(), schema);
    }
    files.insert(ASYNCAPI.to_owned(), asyncapi());
    files
}

// ---------------------------------------------------------------------------------
// Files.
// ---------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schemas_dir() -> PathBuf {
    workspace_root().join("proto-schemas")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The same value with every object's keys in sorted order, so the files are byte-stable
/// whatever serde_json features the build happens to unify.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn pretty(v: &Value) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(&canonical(v))? + "\n")
}

/// Every `.json` file under `proto-schemas/`, relative, with `/` separators.
fn json_files_on_disk() -> Result<BTreeSet<String>, std::io::Error> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) -> Result<(), std::io::Error> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, base, out)?;
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(base).unwrap_or(&path);
                let parts: Vec<String> =
                    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.insert(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    let dir = schemas_dir();
    if dir.is_dir() {
        walk(&dir, &dir, &mut out)?;
    }
    Ok(out)
}

/// With `UPDATE_SCHEMAS` set, rewrites every generated file and deletes stale ones, once
/// per test run, before any test reads the files.
fn update_once() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        if !updating() {
            return Ok(());
        }
        let write = || -> Result<(), Box<dyn std::error::Error>> {
            let files = generated();
            let dir = schemas_dir();
            for (rel, value) in &files {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let text = pretty(value)?;
                if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                    std::fs::write(&path, text)?;
                    eprintln!("wrote proto-schemas/{rel}");
                }
            }
            for stale in json_files_on_disk()?.difference(&files.keys().cloned().collect()) {
                std::fs::remove_file(dir.join(stale))?;
                eprintln!("removed stale proto-schemas/{stale}");
            }
            Ok(())
        };
        write().map_err(|e| format!("could not update proto-schemas/: {e}"))
    })
    .clone()
}

/// A checked-in file, parsed.
fn read_json(rel: &str) -> Result<Value, String> {
    update_once()?;
    let path = schemas_dir().join(rel);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("proto-schemas/{rel} is missing ({e}); run `make schemas`"))?;
    serde_json::from_str(&text).map_err(|e| format!("proto-schemas/{rel} is not valid JSON ({e}); run `make schemas`"))
}

/// Where two JSON values first differ, as a JSON pointer, for a readable failure.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(x), Some(y)) => first_difference(x, y, &format!("{at}/{k}")),
                _ => Some(format!("{at}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (x, y))| first_difference(x, y, &format!("{at}/{i}")))
        }
        _ if a == b => None,
        _ => Some(if at.is_empty() { "/".to_owned() } else { at.to_owned() }),
    }
}

/// A draft 2020-12 validator for a checked-in schema file.
fn validator(rel: &str) -> Result<jsonschema::Validator, String> {
    let schema = read_json(rel)?;
    jsonschema::draft202012::new(&schema).map_err(|e| format!("proto-schemas/{rel} is not a usable schema: {e}"))
}

fn check_valid(rel: &str, instance: &Value) -> Result<(), String> {
    let errors: Vec<String> =
        validator(rel)?.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{instance} does not validate against proto-schemas/{rel}: {}", errors.join("; ")))
    }
}

fn check_invalid(rel: &str, instance: &Value) -> Result<(), String> {
    if validator(rel)?.is_valid(instance) {
        Err(format!("{instance} should not validate against proto-schemas/{rel}"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------

#[test]
fn schema_files_match_the_rust_types() -> TestResult {
    update_once()?;
    let mut problems = String::new();
    for (rel, expected) in generated() {
        match read_json(&rel) {
            Ok(on_disk) if on_disk == expected => {}
            Ok(on_disk) => {
                let at = first_difference(&on_disk, &expected, "").unwrap_or_default();
                let _ = writeln!(problems, "proto-schemas/{rel} differs from the Rust types (first at {at})");
            }
            Err(e) => {
                let _ = writeln!(problems, "{e}");
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{problems}run `make schemas` to regenerate proto-schemas/ and review the diff").into())
    }
}

#[test]
fn no_stale_schema_files() -> TestResult {
    update_once()?;
    let expected: BTreeSet<String> = generated().into_keys().collect();
    let stale: Vec<String> =
        json_files_on_disk()?.difference(&expected).map(|f| format!("proto-schemas/{f}")).collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("no Rust type produces {}; run `make schemas` to remove them", stale.join(", ")).into())
    }
}

#[test]
fn every_checked_in_schema_is_a_valid_2020_12_schema() -> TestResult {
    for rel in generated().into_keys().filter(|f| f != ASYNCAPI) {
        let schema = read_json(&rel)?;
        if schema.get("$schema").and_then(Value::as_str) != Some("https://json-schema.org/draft/2020-12/schema") {
            return Err(format!("proto-schemas/{rel} does not declare draft 2020-12").into());
        }
        jsonschema::meta::validate(&schema).map_err(|e| format!("proto-schemas/{rel} breaks its meta-schema: {e}"))?;
        validator(&rel)?;
    }
    Ok(())
}

/// Example values, serialized by the real types and the bus crate's own envelope
/// functions, validate against the checked-in files; broken ones do not.
#[test]
fn real_values_validate_against_the_checked_in_schemas() -> TestResult {
    let tenant = TenantId::parse("acme")?;
    let room_id = RoomId::parse("room_1")?;
    let alice = UserId::parse("alice@example_com+1")?;
    let now = chat_domain::time::now();

    let create_room = CreateRoom {
        actor: Actor { tenant_id: tenant.clone(), user_id: alice.clone() },
        room_type: RoomType::Group,
        members: vec![UserId::parse("bob")?],
        name: Some("Ops".to_owned()),
    };
    let create_room = serde_json::to_value(&create_room)?;
    check_valid("commands/message-store/create_room.json", &create_room)?;
    let mut bad = create_room.clone();
    bad["room_type"] = json!("party");
    check_invalid("commands/message-store/create_room.json", &bad)?;
    let mut bad = create_room;
    bad["members"] = json!(["a.b"]);
    check_invalid("commands/message-store/create_room.json", &bad)?;

    let message = Message {
        message_id: MessageId::generate(),
        room_id: room_id.clone(),
        sender_id: alice.clone(),
        sender_name: Some("Alice".to_owned()),
        seq: 1,
        content: MessageContent::parse("hello")?.as_str().to_owned(),
        meta: Some(json!({"type": "text"})),
        client_msg_id: Some("c-1".to_owned()),
        edited_at: None,
        deleted_at: None,
        created_at: now,
        kind: chat_domain::model::MessageKind::Text,
        reply_to: None,
        attachments: Vec::new(),
        parent_id: None,
        thread: None,
        mentions: Vec::new(),
        reactions: Vec::new(),
        pinned_at: None,
        pinned_by: None,
    };
    let event = |body| RoomEvent {
        event_id: EventId::generate(),
        tenant_id: tenant.clone(),
        room_id: room_id.clone(),
        occurred_at: now,
        body,
    };
    let created = serde_json::to_value(event(RoomEventBody::MessageCreated(message.clone())))?;
    check_valid("events/room-event.json", &created)?;
    let added =
        event(RoomEventBody::MemberAdded(Member { user_id: alice.clone(), role: MemberRole::Admin, joined_at: now }));
    check_valid("events/room-event.json", &serde_json::to_value(added)?)?;
    let removed =
        event(RoomEventBody::MemberRemoved(MemberRemoved { user_id: alice.clone(), removed_by: alice.clone() }));
    check_valid("events/room-event.json", &serde_json::to_value(removed)?)?;
    let mut bad = created;
    bad["kind"] = json!("member.added");
    check_invalid("events/room-event.json", &bad)?;
    check_valid("events/tenant-changed.json", &serde_json::to_value(TenantChanged { tenant_id: tenant.clone() })?)?;

    let room = Room {
        room_id,
        room_type: RoomType::Group,
        unique_key: None,
        name: Some("Ops".to_owned()),
        last_seq: 0,
        member_count: 1,
        created_by: alice,
        created_at: now,
    };
    let ok: Value = serde_json::from_slice(&envelope::ok(&room))?;
    check_valid("replies/message-store/create_room.json", &ok)?;
    let err: Value = serde_json::from_slice(&envelope::err(&ApiError::validation(
        "type",
        "Invalid room type. Must be one of: dm, group, channel",
    )))?;
    check_valid("replies/message-store/create_room.json", &err)?;
    let internal: Value = serde_json::from_slice(&envelope::err(&ApiError::internal()))?;
    check_valid("replies/message-store/list_tenants.json", &internal)?;
    check_invalid("replies/message-store/create_room.json", &json!({"ok": true}))?;
    check_invalid("replies/message-store/create_room.json", &json!({"ok": true, "error": err["error"]}))?;
    check_invalid("replies/message-store/create_room.json", &json!({"ok": false, "data": ok["data"]}))?;

    let tenants = vec![Tenant {
        tenant_id: tenant,
        name: "Acme".to_owned(),
        rate_limit_per_sec: 100,
        api_key_prefixes: vec!["sk_0123456".to_owned()],
        webhook_url: Some("https://example.com/hook".to_owned()),
        webhook_secret_set: true,
        retry: chat_domain::model::RetryPolicy::default(),
        settings: Default::default(),
        cluster: chat_domain::model::HOME_CLUSTER.to_owned(),
        created_at: now,
    }];
    check_valid("replies/message-store/list_tenants.json", &serde_json::from_slice(&envelope::ok(&tenants))?)?;
    let health = ServiceHealth::new("presence", "host-1", 12, BTreeMap::from([("redis".to_owned(), true)]));
    check_valid("replies/common/health.json", &serde_json::from_slice(&envelope::ok(&health))?)?;
    check_valid("commands/common/health.json", &serde_json::to_value(Health {})?)?;
    let done: Value = serde_json::from_slice(&envelope::ok(&chat_domain::proto::Done {}))?;
    check_valid("replies/message-store/authenticate_admin.json", &done)?;
    Ok(())
}

/// Does a NATS subject pattern (`*` one token, `>` the rest) cover an address? A
/// `{placeholder}` token stands for any one token.
fn covers(pattern: &str, address: &str) -> bool {
    let (mut p, mut a) = (pattern.split('.'), address.split('.'));
    loop {
        match (p.next(), a.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(x), Some(y)) if x == y || (y.starts_with('{') && y.ends_with('}')) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[test]
fn asyncapi_names_every_subject_and_verb() -> TestResult {
    let doc = read_json(ASYNCAPI)?;
    if doc.get("asyncapi").and_then(Value::as_str) != Some("3.0.0") {
        return Err("proto-schemas/asyncapi.json is not an AsyncAPI 3.0.0 document; run `make schemas`".into());
    }
    let channels = doc.get("channels").and_then(Value::as_object).ok_or("asyncapi.json has no channels")?;
    let addresses: BTreeSet<&str> = channels.values().filter_map(|c| c.get("address")?.as_str()).collect();
    let s = Subjects::default();

    let missing: Vec<String> = concrete_subjects(&s).into_iter().filter(|a| !addresses.contains(a.as_str())).collect();
    if !missing.is_empty() {
        return Err(format!("asyncapi.json has no channel for {}; run `make schemas`", missing.join(", ")).into());
    }
    for pattern in wildcard_subjects(&s) {
        if !addresses.iter().any(|a| covers(&pattern, a)) {
            return Err(format!("no channel in asyncapi.json matches the subscription {pattern}").into());
        }
    }
    for c in commands() {
        let suffix = format!(".cmd.{}.{}", c.services.first().map(|s| s.name()).unwrap_or_default(), c.verb);
        if !addresses.iter().any(|a| a.ends_with(&suffix)) {
            return Err(format!("asyncapi.json has no channel for the verb {}", c.verb).into());
        }
    }

    // Every parameter of an address is declared, and every file a payload points at exists.
    for (id, channel) in channels {
        let address = channel.get("address").and_then(Value::as_str).unwrap_or_default();
        for token in address.split('.').filter(|t| t.starts_with('{')) {
            let name = token.trim_start_matches('{').trim_end_matches('}');
            if channel.pointer(&format!("/parameters/{name}")).is_none() {
                return Err(format!("channel {id} does not declare its parameter {name}").into());
            }
        }
        for message in channel.get("messages").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
            let file = message.pointer("/payload/schema/$ref").and_then(Value::as_str).ok_or("payload without $ref")?;
            read_json(file)?;
        }
    }
    Ok(())
}

/// The kinds a `RoomEvent` can have, per its schema, are exactly `RoomEventBody::KINDS`
/// (which names the event channels).
#[test]
fn room_event_kinds_match_the_schema() -> TestResult {
    fn consts(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(kind) = m.get("properties").and_then(|p| p.get("kind")).and_then(|k| k.get("const")) {
                    out.insert(kind.as_str().unwrap_or_default().to_owned());
                }
                m.values().for_each(|v| consts(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| consts(v, out)),
            _ => {}
        }
    }
    let mut in_schema = BTreeSet::new();
    consts(&schemars::schema_for!(RoomEvent).to_value(), &mut in_schema);
    let listed: BTreeSet<String> = RoomEventBody::KINDS.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(in_schema, listed, "RoomEventBody::KINDS and the RoomEvent schema disagree");
    Ok(())
}

// ---------------------------------------------------------------------------------
// Tripwires: the lists above cannot be derived from the type system, so these read the
// source of the domain and bus crates and fail when something new is not listed.
// ---------------------------------------------------------------------------------

/// Every verb declared in `crates/domain/src/proto/` is one this test knows.
#[test]
fn every_command_in_the_domain_crate_is_listed() -> TestResult {
    let dir = workspace_root().join("crates/domain/src/proto");
    let mut declared = BTreeSet::new();
    for entry in std::fs::read_dir(&dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // `const VERB: &'static str = "health";` and `store_command!(X, "verb", Reply);`
        for (i, _) in text.match_indices("VERB: &'static str = \"") {
            let rest = &text[i + "VERB: &'static str = \"".len()..];
            declared.insert(rest.split('"').next().unwrap_or_default().to_owned());
        }
        for (i, _) in text.match_indices("_command!(") {
            let args = text[i..].split(')').next().unwrap_or_default();
            if let Some(verb) = args.split('"').nth(1) {
                declared.insert(verb.to_owned());
            }
        }
    }
    let listed: BTreeSet<String> = commands().iter().map(|c| c.verb.to_owned()).collect();
    let unlisted: Vec<&String> = declared.difference(&listed).collect();
    assert!(!declared.is_empty(), "found no verbs in {}", dir.display());
    assert!(
        unlisted.is_empty(),
        "commands {unlisted:?} are declared in chat_domain::proto but not listed in commands()"
    );
    Ok(())
}

/// Every public method of `crates/bus/src/subjects.rs` is either a covered subject
/// builder or known not to build one.
#[test]
fn every_subject_builder_is_covered() -> TestResult {
    let text = std::fs::read_to_string(workspace_root().join("crates/bus/src/subjects.rs"))?;
    let known: BTreeSet<&str> = COVERED_BUILDERS.iter().chain(NOT_SUBJECTS.iter()).copied().collect();
    let unknown: Vec<&str> = text
        .match_indices("pub fn ")
        .filter_map(|(i, _)| text[i + "pub fn ".len()..].split(['(', '<']).next())
        .filter(|name| !known.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "Subjects::{unknown:?} are not covered by the AsyncAPI check; list them in COVERED_BUILDERS"
    );
    Ok(())
}
