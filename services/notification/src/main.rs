//! The notification binary: configuration from the environment, then run until SIGTERM.

fn main() -> anyhow::Result<()> {
    chat_telemetry::runtime()?.block_on(async {
        chat_telemetry::init("notification", chat_telemetry::LogFormat::from_env());
        let replicas = notification::stream_replicas_from_env()?;
        let app = notification::Notification::build(notification::Config::from_env()?).await?.stream_replicas(replicas);
        tracing::info!(ops_port = ?app.ops_port(), "notification started");
        let result = chat_telemetry::on_workers(app.run(chat_telemetry::shutdown_signal())).await;
        chat_telemetry::shutdown();
        result
    })
}
