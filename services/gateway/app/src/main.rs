//! The gateway binary: configuration from the environment, then serve until SIGTERM.

fn main() -> anyhow::Result<()> {
    chat_telemetry::runtime()?.block_on(async {
        chat_telemetry::init("gateway", chat_telemetry::LogFormat::from_env());
        let config = gateway::Config::from_env()?;
        let app = gateway::Gateway::build(config).await?;
        tracing::info!(port = app.port(), "gateway listening");
        let result = app.run(chat_telemetry::shutdown_signal()).await;
        chat_telemetry::shutdown();
        result
    })
}
