//! Telemetry and process plumbing shared by every service.
//!
//! - [`init`]: JSON (or pretty) logs through `tracing`, and OpenTelemetry spans —
//!   exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Spans get
//!   trace ids either way, so trace context still travels across the bus.
//! - [`ops`]: `/healthz`, `/readyz` and Prometheus `/metrics` for Kubernetes.
//! - [`shutdown_signal`]: resolves on SIGTERM or Ctrl-C.
//! - [`runtime`]: the runtime a service's `main` runs on (`WORKER_THREADS`).
//! - [`on_workers`]: runs a service on the runtime's worker threads.
//! - [`instance_id`]: which replica this is, for health replies and logs.

pub mod ops;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default; what log pipelines want).
    Json,
    /// Human-readable, for `make run` in a terminal.
    Pretty,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`json` or `pretty`).
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT").as_deref() {
            Ok("pretty") | Ok("text") => LogFormat::Pretty,
            _ => LogFormat::Json,
        }
    }
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber for `service`. Safe to call more than once (tests
/// start many services in one process): only the first call installs anything.
pub fn init(service: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = PROVIDER.get_or_init(|| build_provider(service));
    // Spans reach OpenTelemetry whatever RUST_LOG says, so trace context always
    // travels; RUST_LOG only filters what is logged.
    let otel =
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned())).with_filter(LevelFilter::INFO);
    let registry = tracing_subscriber::registry().with(otel);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_filter(filter),
            )
            .try_init(),
    };
    if result.is_ok() && std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        tracing::info!("exporting traces over OTLP");
    }
}

/// Installs a subscriber for tests: spans with trace ids, logs to the test writer at
/// `warn` unless `RUST_LOG` says otherwise. Idempotent.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let provider = PROVIDER.get_or_init(|| build_provider("test"));
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test")).with_filter(LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter))
        .try_init();
}

/// Like [`init_for_tests`], but spans are exported over OTLP/HTTP to `traces_url`
/// (e.g. `http://127.0.0.1:4318/v1/traces`) in batches every 50 ms, for tests that
/// check traces against a real receiver. Fails when this process already has its
/// tracer provider (installed once per process: call this before starting anything).
pub fn init_for_tests_exporting(traces_url: &str) -> anyhow::Result<()> {
    let mut installed = false;
    PROVIDER.get_or_init(|| {
        installed = true;
        provider_with("test", Export::ToQuickly(traces_url.to_owned()))
    });
    if !installed {
        anyhow::bail!("this process already has a tracer provider; export to {traces_url} was not set up");
    }
    init_for_tests();
    Ok(())
}

/// Exports every finished span that is still buffered, and waits for that.
pub fn force_flush() -> anyhow::Result<()> {
    match PROVIDER.get() {
        Some(p) => p.force_flush().map_err(|e| anyhow::anyhow!("flushing spans: {e}")),
        None => Ok(()),
    }
}

fn build_provider(service: &str) -> SdkTracerProvider {
    let export =
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() { Export::FromEnv } else { Export::Nowhere };
    provider_with(service, export)
}

/// Where spans go.
enum Export {
    /// Nowhere: spans still get ids, so trace context propagates.
    Nowhere,
    /// OTLP/HTTP, configured by the standard `OTEL_EXPORTER_OTLP_*` variables.
    FromEnv,
    /// OTLP/HTTP to this traces URL.
    #[cfg_attr(not(test), allow(dead_code))]
    To(String),
    /// OTLP/HTTP to this traces URL, batches every 50 ms (tests).
    ToQuickly(String),
}

fn provider_with(service: &str, export: Export) -> SdkTracerProvider {
    use opentelemetry_otlp::WithExportConfig as _;
    let resource = Resource::builder().with_service_name(service.to_owned()).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let mut delay = None;
    if !matches!(export, Export::Nowhere) {
        // The exporter's HTTP client is reqwest with rustls, built in this workspace
        // without a bundled crypto provider (object_store's S3 client keeps aws-lc-rs,
        // a C build, out of the tree): without a provider installed it panics on its
        // first export. Installing ring's is a no-op when one is already there.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let exporter = match export {
        Export::Nowhere => return builder.build(),
        Export::FromEnv => opentelemetry_otlp::SpanExporter::builder().with_http().build(),
        Export::To(url) => opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build(),
        Export::ToQuickly(url) => {
            delay = Some(std::time::Duration::from_millis(50));
            opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build()
        }
    };
    // A collector that is down only costs failed background exports, never an error here.
    match exporter {
        Ok(exporter) => match delay {
            None => builder.with_batch_exporter(exporter).build(),
            Some(delay) => {
                use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
                let config = BatchConfigBuilder::default().with_scheduled_delay(delay).build();
                builder
                    .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(config).build())
                    .build()
            }
        },
        Err(e) => {
            eprintln!("OTLP exporter could not be built ({e}); traces will not be exported");
            builder.build()
        }
    }
}

/// Flushes spans that are still buffered. Call once at the end of `main`.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

/// The runtime a service's `main` runs on, sized by `WORKER_THREADS` (see [`worker_threads`]).
///
/// One thread (the default) is a current-thread runtime: the service's tasks — its
/// command handlers, the NATS client's connection, a database connection's task — hand
/// work to each other on the one thread, with no wake-up of another thread in between.
/// On a 2-core box running the whole stack this cut message-store's CPU per stored
/// message by a fifth (BENCHMARKS.md, "One thread per service"). More threads give a
/// work-stealing runtime with that many workers, for a process that has several cores
/// to itself; scaling out is otherwise done with replicas, which every service supports.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(worker_threads(std::env::var("WORKER_THREADS").ok().as_deref())?)
}

/// [`runtime`] with `threads` workers: one is a current-thread runtime.
pub fn runtime_with(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    Ok(builder.enable_all().build()?)
}

/// Most worker threads `WORKER_THREADS` may ask for.
pub const MAX_WORKER_THREADS: usize = 256;

/// Reads a `WORKER_THREADS` value: absent or empty is 1; otherwise a whole number from
/// 1 to [`MAX_WORKER_THREADS`], or an error that says what was wrong.
pub fn worker_threads(value: Option<&str>) -> anyhow::Result<usize> {
    match value.map(str::trim) {
        None | Some("") => Ok(1),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_WORKER_THREADS).contains(&n) => Ok(n),
            _ => {
                Err(anyhow::anyhow!("WORKER_THREADS must be a whole number from 1 to {MAX_WORKER_THREADS}, not {v:?}"))
            }
        },
    }
}

/// Runs a service (its `run` future) in a task on the runtime's workers rather than on
/// the thread that called `block_on` (a binary's `main`), which is not one of them on a
/// work-stealing runtime: a command loop running there spawns each handler onto the
/// runtime's shared queue and wakes a worker from outside for it, a switch between
/// threads per command; from a worker, the handler goes to that worker's own queue and
/// runs next. On a current-thread runtime the task runs on that same thread.
pub async fn on_workers<F>(run: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    match tokio::spawn(run).await {
        Ok(result) => result,
        Err(e) => Err(anyhow::anyhow!("the service stopped abnormally: {e}")),
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// `host-pid`: tells replicas apart in health replies and logs.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};

    /// The test's own body runs on the thread that called `block_on`, as a `main` does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_runs_on_a_worker_not_on_the_thread_that_started_the_runtime() -> anyhow::Result<()> {
        let caller = std::thread::current().id();
        let ran_on = std::sync::Arc::new(std::sync::Mutex::new(None));
        let record = ran_on.clone();
        super::on_workers(async move {
            *record.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(std::thread::current().id());
            Ok(())
        })
        .await?;
        let ran_on = *ran_on.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        assert!(ran_on.is_some_and(|t| t != caller), "ran on {ran_on:?}, the caller is {caller:?}");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_that_fails_or_panics_is_an_error() {
        let failed = super::on_workers(async { Err(anyhow::anyhow!("no database")) }).await;
        assert_eq!(failed.map_err(|e| e.to_string()), Err("no database".to_owned()));
        let panicked = super::on_workers(async { panic!("bug") }).await;
        assert!(panicked.is_err_and(|e| e.to_string().contains("stopped abnormally")));
    }

    #[test]
    fn worker_threads_is_one_unless_asked_and_a_bad_value_says_what_is_wrong() {
        assert_eq!(super::worker_threads(None).ok(), Some(1));
        assert_eq!(super::worker_threads(Some("")).ok(), Some(1));
        assert_eq!(super::worker_threads(Some(" 4 ")).ok(), Some(4));
        assert_eq!(super::worker_threads(Some("256")).ok(), Some(256));
        for bad in ["0", "257", "-1", "two", "1.5"] {
            let e = super::worker_threads(Some(bad)).map_err(|e| e.to_string());
            assert!(e.as_ref().is_err_and(|m| m.contains("WORKER_THREADS") && m.contains(bad)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn one_worker_thread_is_a_current_thread_runtime_that_runs_a_service() -> anyhow::Result<()> {
        use tokio::runtime::RuntimeFlavor;
        let one = super::runtime_with(1)?;
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        // A service's run, spawned as `main` does, runs (on the one thread) and ends.
        let caller = std::thread::current().id();
        let ran_on = std::sync::Arc::new(std::sync::Mutex::new(None));
        let record = ran_on.clone();
        one.block_on(super::on_workers(async move {
            *record.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(std::thread::current().id());
            Ok(())
        }))?;
        assert_eq!(*ran_on.lock().map_err(|_| anyhow::anyhow!("poisoned"))?, Some(caller));
        let two = super::runtime_with(2)?;
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(two.metrics().num_workers(), 2);
        Ok(())
    }

    #[test]
    fn no_collector_is_no_error() {
        // Nothing listens on port 9: exports fail in the background, quietly.
        let provider =
            super::provider_with("telemetry-test", super::Export::To("http://127.0.0.1:9/v1/traces".to_owned()));
        let tracer = provider.tracer("t");
        tracer.in_span("work", |_| {});
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    }
}
