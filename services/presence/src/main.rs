//! The presence binary: configuration from the environment, then run until SIGTERM.

fn main() -> anyhow::Result<()> {
    chat_telemetry::runtime()?.block_on(async {
        chat_telemetry::init("presence", chat_telemetry::LogFormat::from_env());
        let app = presence::Presence::build(presence::Config::from_env()?).await?;
        tracing::info!(ops_port = ?app.ops_port(), "presence started");
        let result = chat_telemetry::on_workers(app.run(chat_telemetry::shutdown_signal())).await;
        chat_telemetry::shutdown();
        result
    })
}
