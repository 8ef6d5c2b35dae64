//! The operations endpoints: `/healthz` (the process is alive), `/readyz` (its
//! dependencies answer, so it should receive traffic) and Prometheus `/metrics`.
//! The gateway mounts [`configure`] on its main port; the other services run
//! [`serve`] on their `OPS_ADDR`.

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use anyhow::Context as _;

/// Answers whether the service's dependencies are reachable.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Adds `/healthz`, `/readyz` and `/metrics` to an actix app.
pub fn configure(check: ReadinessCheck) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(check))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics));
    }
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(check: web::Data<ReadinessCheck>) -> HttpResponse {
    if (check.get_ref())().await {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        // The documented error shape, like every other error the services send.
        HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "success": false,
            "error": {"code": "SERVICE_UNAVAILABLE", "message": "not ready: a dependency cannot be reached"},
        }))
    }
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics_text())
}

/// Everything in the default Prometheus registry, in the text format.
pub fn metrics_text() -> String {
    let families = prometheus::gather();
    prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
}

/// Binds the ops listener when an address is configured (`None`: no ops endpoints).
pub fn bind(addr: Option<std::net::SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    addr.map(|a| TcpListener::bind(a).with_context(|| format!("binding the ops port {a}"))).transpose()
}

/// The port an ops listener actually bound (useful with port 0).
pub fn port(listener: &Option<TcpListener>) -> Option<u16> {
    listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
}

/// Serves the operations endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    check: ReadinessCheck,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(configure(check.clone())))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(2)
        .listen(listener)
        .context("listening for the ops endpoints")?
        .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await.context("ops server")
}

#[cfg(test)]
mod tests {
    use actix_web::{App, http::StatusCode, test};

    use super::*;

    fn answering(ready: bool) -> ReadinessCheck {
        Arc::new(move || Box::pin(async move { ready }))
    }

    #[actix_web::test]
    async fn not_ready_is_a_503_in_the_documented_error_shape() {
        let app = test::init_service(App::new().configure(configure(answering(false)))).await;
        let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("not ready")));
    }

    #[actix_web::test]
    async fn ready_is_a_200() {
        let app = test::init_service(App::new().configure(configure(answering(true)))).await;
        let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}
