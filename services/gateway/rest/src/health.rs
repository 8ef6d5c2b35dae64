//! `GET /health`: the gateway's uptime and the state of every service behind it,
//! asked over the bus. `503` when any of them is down or degraded.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chat_domain::proto::Service;
use chat_domain::proto::health::Health;
use schemars::JsonSchema;
use serde::Serialize;

use gateway_core::Core;
use gateway_core::routes::{Mount, op};
use serde_json::json;

/// How long each service gets to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of `GET /health`.
#[derive(Serialize, JsonSchema)]
pub struct HealthReport {
    /// `ok` when every service answered `ok`, else `degraded`.
    #[schemars(extend("enum" = ["ok", "degraded"]))]
    status: &'static str,
    /// How long the gateway has been up, e.g. `2h30m45s`.
    #[schemars(example = &"2h30m45s")]
    uptime: String,
    /// Whether message-store can write to its database.
    db_writable: bool,
    /// Each service behind the gateway by name (`message-store`, `presence`, `notification`).
    services: BTreeMap<&'static str, ServiceState>,
}

/// What a service said, or that it did not answer.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ServiceState {
    Up {
        /// `ok` when every check passed, else `degraded`.
        #[schemars(extend("enum" = ["ok", "degraded"]))]
        status: String,
        /// Which replica answered (host name and process id).
        instance: String,
        /// How long it has been up, e.g. `2h30m45s`.
        uptime: String,
        /// Named checks, e.g. `db_writable` for message-store, `redis` for presence.
        checks: BTreeMap<String, bool>,
    },
    Down {
        /// `down`.
        #[schemars(extend("const" = "down"))]
        status: &'static str,
        /// Why it did not answer.
        error: String,
    },
}

pub async fn health(state: web::Data<Core>) -> HttpResponse {
    let bus = state.bus.with_timeout(TIMEOUT);
    let answers = futures_util::future::join_all(Service::BACKENDS.iter().map(|s| {
        let bus = bus.clone();
        async move { (*s, bus.request_to(*s, &Health {}).await) }
    }))
    .await;
    let mut services = BTreeMap::new();
    let mut all_ok = true;
    let mut db_writable = false;
    for (service, answer) in answers {
        let entry = match answer {
            Ok(h) => {
                all_ok &= h.is_ok();
                if service == Service::MessageStore {
                    db_writable = h.checks.get("db_writable").copied().unwrap_or(false);
                }
                ServiceState::Up {
                    status: h.status,
                    instance: h.instance,
                    uptime: chat_domain::time::human_duration(Duration::from_secs(h.uptime_secs)),
                    checks: h.checks,
                }
            }
            Err(e) => {
                all_ok = false;
                ServiceState::Down { status: "down", error: e.message }
            }
        };
        services.insert(service.name(), entry);
    }
    let body = HealthReport {
        status: if all_ok { "ok" } else { "degraded" },
        uptime: chat_domain::time::human_duration(state.started.elapsed()),
        db_writable,
        services,
    };
    if all_ok { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// The route of `/health`, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Operations")
.at(&["/health"], |r| {
            r.get(
                health,
                op("Health of the gateway and the services behind it")
                    .describe("Each service is asked over the bus and given 2 seconds to answer.")
                    .reply_example::<HealthReport>(
                        200,
                        "Every service answered `ok`.",
                        json!({
                            "status": "ok",
                            "uptime": "2h30m45s",
                            "db_writable": true,
                            "services": {
                                "message-store": {"status": "ok", "instance": "store-1:4242", "uptime": "2h30m40s", "checks": {"db_writable": true}},
                                "notification": {"status": "ok", "instance": "notify-1:4243", "uptime": "2h30m41s", "checks": {}},
                                "presence": {"status": "ok", "instance": "presence-1:4244", "uptime": "2h30m42s", "checks": {"redis": true}},
                            },
                        }),
                    )
                    .reply::<HealthReport>(503, "A service is down or degraded (`status` is `degraded`)."),
            )
        });
}
