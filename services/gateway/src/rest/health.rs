//! `GET /health`: the gateway's uptime and the state of every service behind it,
//! asked over the bus. `503` when any of them is down or degraded.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chat_domain::proto::Service;
use chat_domain::proto::health::Health;
use serde_json::{Map, Value, json};

use crate::AppState;

/// How long each service gets to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let bus = state.bus.with_timeout(TIMEOUT);
    let answers = futures_util::future::join_all(Service::BACKENDS.iter().map(|s| {
        let bus = bus.clone();
        async move { (*s, bus.request_to(*s, &Health {}).await) }
    }))
    .await;
    let mut services = Map::new();
    let mut all_ok = true;
    let mut db_writable = false;
    for (service, answer) in answers {
        let entry = match answer {
            Ok(h) => {
                all_ok &= h.is_ok();
                if service == Service::MessageStore {
                    db_writable = h.checks.get("db_writable").copied().unwrap_or(false);
                }
                json!({"status": h.status, "instance": h.instance, "uptime": chat_domain::time::human_duration(Duration::from_secs(h.uptime_secs)), "checks": h.checks})
            }
            Err(e) => {
                all_ok = false;
                json!({"status": "down", "error": e.message})
            }
        };
        services.insert(service.name().to_owned(), entry);
    }
    let body = json!({
        "status": if all_ok { "ok" } else { "degraded" },
        "uptime": chat_domain::time::human_duration(state.started.elapsed()),
        "db_writable": db_writable,
        "services": Value::Object(services),
    });
    if all_ok { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
