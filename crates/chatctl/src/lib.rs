//! `chatctl`, the operator CLI. It does what the gateway's admin API does by sending
//! the same typed commands straight to the services over NATS ([`chat_bus::Bus`]), so
//! it needs no gateway and no admin key. `chatctl token` alone talks to a gateway
//! (`POST /tokens` with a tenant's API key), since minting a user token is the
//! tenant's own business.
//!
//! - [`cli`]: the arguments (clap), validated as the admin API validates them.
//! - [`output`]: tables and `key: value` lines for a terminal.
//! - [`run`]: connect, send one command, print the reply, and pick the exit code:
//!   0 on success, 1 on an error reply or an unreachable bus or gateway
//!   (`error: CODE: message` on stderr), 2 on a usage error (clap).

pub mod cli;
pub mod output;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use chat_bus::{Bus, envelope};
use chat_domain::ApiError;
use chat_domain::model::RetryPolicy;
use chat_domain::proto::Service;
use chat_domain::proto::health::{Health, ServiceHealth};
use chat_domain::proto::notify::{DeadLetters as DeadLetterList, ListDeadLetters, RetryDeadLetter};
use chat_domain::proto::store::{
    CreateTenant, CreateTenantOn, GetTenant, ListClusters, ListTenants, MoveTenant, RotateKey, UpdateTenant,
};
use chat_domain::{ErrorCode, ids::UserId};
use serde::Serialize;

use crate::cli::{Cli, Command, DeadLetterKind, DeadLetters, Tenants};

/// The name chatctl's NATS connection shows in server monitoring.
const CONNECTION_NAME: &str = "chatctl";
/// How long each service gets to answer `health`, as the gateway's `GET /health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `chatctl tenants move` waits for message-store to finish the copy (a tenant
/// with millions of messages takes minutes; the move goes on if chatctl gives up, and
/// `tenants show` tells when it is done).
const MOVE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long `chatctl token` waits for the gateway.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one parsed command line to completion and returns the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(&cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}: {}", e.code, e.message);
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: &Cli) -> Result<ExitCode, ApiError> {
    // The one verb that needs a gateway rather than the bus.
    if let Command::Token(args) = &cli.command {
        return token(args, cli.json).await;
    }
    // Erasure reaches the attachments store, which only gateways know.
    match &cli.command {
        Command::Tenants(Tenants::Delete { id, admin }) => {
            return erase(admin, &format!("/admin/tenants/{id}"), cli.json).await;
        }
        Command::Tenants(Tenants::EraseUser { id, user, admin }) => {
            return erase(admin, &format!("/admin/tenants/{id}/users/{user}"), cli.json).await;
        }
        _ => {}
    }
    let client =
        chat_bus::connect(&cli.nats_url, CONNECTION_NAME).await.map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let bus = Bus::new(client, cli.bus_prefix.clone());
    let json = cli.json;
    match &cli.command {
        Command::Tenants(Tenants::Create { name, id, rate_limit, cluster }) => {
            let cmd = CreateTenant { name: name.clone(), tenant_id: id.clone(), rate_limit_per_sec: *rate_limit };
            let created = match cluster {
                None => bus.request(&cmd).await?,
                Some(cluster) => bus.request(&CreateTenantOn { tenant: cmd, cluster: cluster.clone() }).await?,
            };
            if json {
                print_json(&created)?;
            } else {
                let t = &created.tenant;
                print(&output::fields(&[("tenant_id", t.tenant_id.to_string()), ("api_key", created.api_key.clone())]));
            }
            eprintln!(
                "created tenant {} ({}, {} requests/s, on cluster {}). The API key is shown only this once: store it now.",
                created.tenant.tenant_id,
                output::cell(&created.tenant.name),
                created.tenant.rate_limit_per_sec,
                created.tenant.cluster,
            );
        }
        Command::Tenants(Tenants::Move { id, to }) => {
            eprintln!("moving tenant {id} to cluster {to}: its requests get 503 (retry) until this finishes");
            let moved =
                bus.with_timeout(MOVE_TIMEOUT).request(&MoveTenant { tenant_id: id.clone(), to: to.clone() }).await?;
            if json { print_json(&moved)? } else { print(&output::moved(&moved)) }
        }
        Command::Clusters => {
            let clusters = bus.request(&ListClusters {}).await?;
            if json { print_json(&clusters)? } else { print(&output::cluster_table(&clusters)) }
        }
        Command::Tenants(Tenants::List(page)) => {
            let tenants = bus.request(&ListTenants { limit: page.limit, offset: page.offset }).await?;
            if json {
                print_json(&tenants)?;
            } else if tenants.is_empty() {
                eprintln!("no tenants (offset {})", page.offset);
            } else {
                print(&output::tenant_table(&tenants));
            }
        }
        Command::Tenants(Tenants::Show { id }) => {
            let tenant = bus.request(&GetTenant { tenant_id: id.clone() }).await?;
            if json { print_json(&tenant)? } else { print(&output::tenant(&tenant)) }
        }
        Command::Tenants(Tenants::Update { id, name, rate_limit }) => {
            let cmd = UpdateTenant {
                tenant_id: id.clone(),
                name: name.clone(),
                rate_limit_per_sec: *rate_limit,
                webhook_url: None,
                webhook_secret: None,
                retry: None,
                settings: None,
            };
            let tenant = bus.request(&cmd).await?;
            if json { print_json(&tenant)? } else { print(&output::tenant(&tenant)) }
        }
        Command::Tenants(Tenants::SetWebhook { id, url, clear, secret, max_attempts, backoff_ms }) => {
            // A retry policy is replaced as a whole: a part not given keeps its value.
            let retry = if max_attempts.is_some() || backoff_ms.is_some() {
                let current = bus.request(&GetTenant { tenant_id: id.clone() }).await?.retry;
                let policy = RetryPolicy {
                    max_attempts: max_attempts.unwrap_or(current.max_attempts),
                    backoff_ms: backoff_ms.unwrap_or(current.backoff_ms),
                };
                Some(policy.validate()?)
            } else {
                None
            };
            let cmd = UpdateTenant {
                tenant_id: id.clone(),
                name: None,
                rate_limit_per_sec: None,
                // An empty URL removes the webhook.
                webhook_url: Some(if *clear { String::new() } else { url.clone().unwrap_or_default() }),
                webhook_secret: secret.clone(),
                retry,
                settings: None,
            };
            let tenant = bus.request(&cmd).await?;
            if json { print_json(&tenant)? } else { print(&output::tenant(&tenant)) }
        }
        Command::DeadLetters(DeadLetters::List { tenant, limit, kind, user }) => {
            let mut letters = bus.request(&ListDeadLetters { tenant_id: tenant.clone(), limit: *limit }).await?;
            filter_dead_letters(&mut letters, *kind, user.as_ref());
            if json {
                print_json(&letters)?;
            } else if letters.failed_messages.is_empty() && letters.failed_notifications.is_empty() {
                eprintln!("no dead letters for {tenant} (among the newest {limit})");
            } else {
                print(&output::dead_letter_table(&letters));
            }
        }
        Command::DeadLetters(DeadLetters::Replay { id }) => {
            bus.request(&RetryDeadLetter { id: id.clone() }).await?;
            if json {
                print_json(&serde_json::json!({"success": true, "id": id}))?;
            } else {
                eprintln!("dead letter {} is queued for delivery again, with a fresh attempt budget", output::cell(id));
            }
        }
        // Answered before connecting to NATS (it needs none).
        Command::Token(args) => return token(args, json).await,
        // Answered before connecting to NATS, like `token`.
        Command::Tenants(Tenants::Delete { id, admin }) => {
            return erase(admin, &format!("/admin/tenants/{id}"), json).await;
        }
        Command::Tenants(Tenants::EraseUser { id, user, admin }) => {
            return erase(admin, &format!("/admin/tenants/{id}/users/{user}"), json).await;
        }
        Command::Tenants(Tenants::RotateKey { id }) => {
            let rotated = bus.request(&RotateKey { tenant_id: id.clone() }).await?;
            if json {
                print_json(&rotated)?;
            } else {
                print(&output::fields(&[
                    ("tenant_id", rotated.tenant_id.to_string()),
                    ("api_key", rotated.api_key.clone()),
                ]));
            }
            eprintln!("previous keys of {} are revoked. The new key is shown only this once: store it now.", id);
        }
        Command::Health => return health(&bus, json).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Keeps the dead letters `kind` and `user` select (notification lists a tenant's
/// newest; the filters apply to that page).
pub fn filter_dead_letters(letters: &mut DeadLetterList, kind: Option<DeadLetterKind>, user: Option<&UserId>) {
    let wanted = |u: &str| user.is_none_or(|w| w.as_str() == u);
    match kind {
        Some(DeadLetterKind::Message) => letters.failed_notifications.clear(),
        Some(DeadLetterKind::Notification) => letters.failed_messages.clear(),
        None => {}
    }
    letters.failed_messages.retain(|m| wanted(&m.user_id));
    letters.failed_notifications.retain(|n| wanted(&n.user_id));
}

/// How long `tenants delete` and `tenants erase-user` wait for the gateway.
const ERASE_TIMEOUT: Duration = Duration::from_secs(120);

/// `DELETE <path>` on the gateway's operator API; prints what was erased.
async fn erase(admin: &cli::AdminApi, path: &str, json: bool) -> Result<ExitCode, ApiError> {
    let http = reqwest::Client::builder()
        .timeout(ERASE_TIMEOUT)
        .build()
        .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("HTTP client: {e}")))?;
    let url = format!("{}{path}", admin.gateway_url);
    let res = http
        .delete(&url)
        .header("X-API-Key", &admin.admin_key)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("could not reach the gateway at {url}: {e}")))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| ApiError::unavailable(format!("reading the gateway's answer: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let code = value["error"]["code"].as_str().unwrap_or("UNEXPECTED_STATUS");
        let message =
            value["error"]["message"].as_str().map_or_else(|| format!("HTTP {status} from {url}"), str::to_owned);
        eprintln!("error: {code}: {}", output::cell(&message));
        return Ok(ExitCode::FAILURE);
    }
    if json {
        print_json(&value)?;
    } else {
        let fields: Vec<(&str, String)> = value
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        print(&output::fields(&fields));
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /tokens` on the gateway with the tenant's key; prints the token alone (so
/// `TOKEN=$(chatctl token ...)` works), or the whole reply with `--json`.
async fn token(args: &cli::Token, json: bool) -> Result<ExitCode, ApiError> {
    let http = reqwest::Client::builder()
        .timeout(TOKEN_TIMEOUT)
        .build()
        .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("HTTP client: {e}")))?;
    let mut body = serde_json::json!({"user_id": args.user.as_str()});
    if let Some(ttl) = args.ttl {
        body["ttl_secs"] = ttl.into();
    }
    let url = format!("{}/tokens", args.gateway_url);
    let res = http
        .post(&url)
        .header("X-API-Key", &args.tenant_key)
        .json(&body)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("could not reach the gateway at {url}: {e}")))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| ApiError::unavailable(format!("reading the gateway's answer: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        // The documented error shape, passed on as it is.
        let code = value["error"]["code"].as_str().unwrap_or("UNEXPECTED_STATUS");
        let message =
            value["error"]["message"].as_str().map_or_else(|| format!("HTTP {status} from {url}"), str::to_owned);
        eprintln!("error: {code}: {}", output::cell(&message));
        return Ok(ExitCode::FAILURE);
    }
    let Some(token) = value["token"].as_str() else {
        return Err(ApiError::new(ErrorCode::InternalError, format!("{url} answered {status} without a token")));
    };
    if json {
        print_json(&value)?;
    } else {
        print(&format!("{token}\n"));
        let ws = args.gateway_url.replacen("http://", "ws://", 1);
        eprintln!(
            "token for {} (expires {}). Connect with: {ws}/ws/<room_id>?token=<token>",
            args.user,
            value["expires_at"].as_str().map(output::cell).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks every backend at once. Exit code 1 unless all answered `ok`.
async fn health(bus: &Bus, json: bool) -> Result<ExitCode, ApiError> {
    let bus = bus.with_timeout(HEALTH_TIMEOUT);
    let answers: Vec<(Service, Result<ServiceHealth, ApiError>)> =
        futures_util::future::join_all(Service::BACKENDS.iter().map(|service| {
            let bus = bus.clone();
            async move { (*service, bus.request_to(*service, &Health {}).await) }
        }))
        .await;
    if json {
        // Each service's reply as the bus carried it: `{"ok":true,"data":..}` or
        // `{"ok":false,"error":..}`.
        let mut all = serde_json::Map::new();
        for (service, answer) in &answers {
            let bytes = match answer {
                Ok(h) => envelope::ok(h),
                Err(e) => envelope::err(e),
            };
            let value = serde_json::from_slice(&bytes).map_err(|_| ApiError::internal())?;
            all.insert(service.name().to_owned(), value);
        }
        print_json(&all)?;
    } else {
        print(&output::health_table(&answers));
    }
    let unhealthy: Vec<String> = answers
        .iter()
        .filter_map(|(service, answer)| match answer {
            Ok(h) if h.is_ok() => None,
            Ok(h) => Some(format!("{} {}", service.name(), output::cell(&h.status))),
            Err(_) => Some(format!("{} down", service.name())),
        })
        .collect();
    if unhealthy.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}: {}", chat_domain::ErrorCode::ServiceUnavailable, unhealthy.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Writes to stdout; a closed pipe (`chatctl tenants list | head -1`) is not an error
/// worth a panic.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn print_json(value: &impl Serialize) -> Result<(), ApiError> {
    let text = serde_json::to_string_pretty(value).map_err(|_| ApiError::internal())?;
    print(&(text + "\n"));
    Ok(())
}
