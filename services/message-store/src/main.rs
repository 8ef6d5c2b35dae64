//! The message-store binary: configuration from the environment, then run until SIGTERM.

fn main() -> anyhow::Result<()> {
    chat_telemetry::runtime()?.block_on(async {
        chat_telemetry::init("message-store", chat_telemetry::LogFormat::from_env());
        let config = message_store::Config::from_env()?;
        let clusters = message_store::Clusters::from_env()?;
        let app = message_store::MessageStore::build_on(config, clusters).await?;
        tracing::info!(ops_port = ?app.ops_port(), "message-store started");
        let result = chat_telemetry::on_workers(app.run(chat_telemetry::shutdown_signal())).await;
        chat_telemetry::shutdown();
        result
    })
}
