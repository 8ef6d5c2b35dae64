//! `chatctl`: see the library for what it does. Usage errors exit with code 2 (clap).

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    chatctl::run(chatctl::cli::Cli::parse()).await
}
