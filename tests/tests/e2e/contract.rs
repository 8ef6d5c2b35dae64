//! The contract: the gateway does what `/openapi.json` says. Schemathesis (PyPI, in
//! `.dev/schemathesis-venv`, installed by `scripts/ensure-deps.sh schemathesis`)
//! generates requests from the document against a stack started here, in a tenant of
//! its own, and checks every answer: no `5xx` (`not_a_server_error`), a documented
//! status (`status_code_conformance`), content type (`content_type_conformance`) and
//! body (`response_schema_conformance`). Its phases: the document's examples, fuzzing,
//! and stateful sequences following the document's links (a room created, then read,
//! posted to, ...). Bounded so `make test` runs it in a few minutes on 2 cores:
//! `CONTRACT_EXAMPLES` cases per operation (default 10), `CONTRACT_SEED` (default
//! fixed), `CONTRACT_PHASES` (default `examples,fuzzing,stateful`), `CONTRACT_MAX_TIME`
//! (seconds). `make contract` (scripts/contract.sh) runs it deeper: 100 examples and
//! the `coverage` phase too (every boundary of every schema). The settings Schemathesis reads are in
//! `tests/contract/schemathesis.toml`.
//!
//! Fails, with Schemathesis's report, on any failure it finds.

use std::path::{Path, PathBuf};

use chat_test_support::{TestStack, unique};
use serde_json::json;

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/schemathesis-venv/bin/schemathesis"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_the_document_does_not_say() -> anyhow::Result<()> {
    let stack = TestStack::builder().dev_login().start().await?;
    // Its own tenant, with room to spare under the rate limit.
    let t = stack.tenant_with(json!({"name": unique("contract-"), "rate_limit_per_sec": 1_000_000})).await?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract");
    let config = dir.join("schemathesis.toml");
    // Its reports, and the cache it keeps in its working directory, go to a folder
    // removed afterwards.
    let report = std::env::temp_dir().join(unique("contract-report-"));
    std::fs::create_dir_all(&report)?;
    let program = schemathesis();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(stack.url("/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", &env_or("CONTRACT_PHASES", "examples,fuzzing,stateful")])
        .args(["--max-examples", &env_or("CONTRACT_EXAMPLES", "10")])
        .args(["--seed", &env_or("CONTRACT_SEED", "20261206")])
        .args(["--workers", &env_or("CONTRACT_WORKERS", "2")])
        .args(["--request-timeout", "30"])
        .arg("--no-shrink")
        .args(["--header", &format!("X-API-Key: {}", t.api_key)])
        .args(["--header", "X-User-Id: contract-user"])
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(&report)
        .current_dir(&report)
        .kill_on_drop(true);
    if let Ok(secs) = std::env::var("CONTRACT_MAX_TIME") {
        cmd.args(["--max-time", &secs]);
    }
    let status = cmd.status().await.map_err(|e| {
        anyhow::anyhow!("could not run {} ({e}); scripts/ensure-deps.sh schemathesis installs it", program.display())
    })?;
    let _ = std::fs::remove_dir_all(&report);
    assert!(status.success(), "Schemathesis found responses the document does not promise (its report is above)");
    stack.stop().await
}
