//! `loadgen`: see `lib.rs` for the scenarios.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    loadgen::run(<loadgen::Cli as clap::Parser>::parse()).await
}
