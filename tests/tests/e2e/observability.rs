//! The Grafana dashboard (`deploy/grafana/chat-backend.json`) and the alert rules
//! (`deploy/prometheus/alerts.yml`) against a real Prometheus (Debian's `prometheus`,
//! installed by `scripts/ensure-deps.sh prometheus`) scraping a running stack: every
//! metric either of them names exists, every expression evaluates, every rule loads
//! and evaluates without error, and `promtool check rules` passes. The expressions
//! come from the files themselves (the dashboard's JSON, and the rules as Prometheus
//! loaded them), never from a list kept here.
//!
//! Without `prometheus` or `promtool` on the path this test fails: it is part of
//! `make test`, which installs them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use chat_test_support::{TestStack, WsClient, eventually, unique};
use reqwest::StatusCode;
use serde_json::Value;

/// The repository's root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A Prometheus server this test started; killed (and its storage removed) on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`(job, port)`) every second and
    /// evaluating `rules` every second. The gateway's job sends `gateway_key` as
    /// `Authorization: Bearer` (its `/metrics` takes the operator key).
    fn start(targets: &[(&str, u16)], rules: &Path, gateway_key: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique("chat-prometheus-"));
        std::fs::create_dir_all(&dir)?;
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (job, port) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ));
            if *job == "gateway" {
                config.push_str(&format!("    authorization:\n      credentials: '{gateway_key}'\n"));
            }
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        // A free port, released for Prometheus to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("could not start `prometheus` ({e}); scripts/ensure-deps.sh prometheus installs it")
            })?;
        Ok(Self { child, dir, url: format!("http://127.0.0.1:{port}") })
    }

    /// `GET /api/v1/<path>`'s `data`, failing on anything but `status: success`.
    async fn api(&self, http: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let res = http.get(format!("{}/api/v1/{path}", self.url)).query(query).send().await?;
        let body: Value = res.json().await?;
        anyhow::ensure!(body["status"] == "success", "{path} {query:?}: {body}");
        Ok(body["data"].clone())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

/// Grafana's variables, replaced by values Prometheus understands.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$tenant", ".*")
}

/// The PromQL expressions of the dashboard's panels, and the metrics its template
/// variables read (`label_values(metric, label)`).
fn dashboard_queries(dashboard: &Value) -> (Vec<String>, BTreeSet<String>) {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().map(|p| p.iter().collect()).unwrap_or_default();
    while let Some(panel) = panels.pop() {
        // Collapsed rows keep their panels inside.
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                exprs.push(without_grafana_variables(expr));
            }
        }
    }
    let mut variable_metrics = BTreeSet::new();
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(def) = var["definition"].as_str()
            && let Some(args) = def.strip_prefix("label_values(")
        {
            let metric = args.split([',', ')']).next().unwrap_or_default().trim();
            variable_metrics.insert(metric.split('{').next().unwrap_or_default().to_owned());
        }
    }
    (exprs, variable_metrics)
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers (`{...}`), ranges (`[...]`) and grouping lists (`by (...)`), that are not
/// functions or aggregations (followed by `(`) and not keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (...)` rather than `(`.
    const KEYWORDS: [&str; 26] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut brackets) = (0, 0i32, 0i32);
    // Set after a grouping keyword: the next parenthesised list holds label names.
    let mut in_labels = false;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '(' if after_grouping => {
                in_labels = true;
                after_grouping = false;
            }
            ')' if in_labels => in_labels = false,
            _ => {}
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if GROUPING.contains(&word.as_str()) {
                after_grouping = true;
            } else if braces == 0
                && brackets == 0
                && !in_labels
                && next != Some(&'(')
                && !KEYWORDS.contains(&word.as_str())
            {
                names.insert(word);
            }
            continue;
        }
        if c.is_ascii_digit() {
            // A number or a duration: digits, letters, dots.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_the_selectors_of_an_expression() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, verb) (rate(chat_a_bucket{outcome=~"x|y", le!="1"}[5m])))
           / on (job) group_left (instance) sum without (pod) (up) > bool 0.5 or time() - max(chat_b) offset 5m"#,
    );
    assert_eq!(names, BTreeSet::from(["chat_a_bucket".to_owned(), "up".to_owned(), "chat_b".to_owned()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_alert_rules_work_against_a_real_prometheus() -> anyhow::Result<()> {
    let root = root();
    let rules = root.join("deploy/prometheus/alerts.yml");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/chat-backend.json"))?)?;

    let promtool = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().map_err(|e| {
        anyhow::anyhow!("could not run `promtool` ({e}); scripts/ensure-deps.sh prometheus installs it")
    })?;
    assert!(
        promtool.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );

    let mut stack = TestStack::start().await?;
    // Traffic that makes every labelled series exist: a socket (connections by
    // dialect and tenant), a REST send it receives (send latency, messages per tenant,
    // fan-out delay, bus requests) and a bus request nobody answers (notification
    // stopped, so `GET /health` finds no responders).
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut bob = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key)).await?;
    bob.expect("connection_status").await?;
    t.user("alice").send(&room, "metrics, please").await?;
    bob.expect("message").await?;
    stack.stop_notification().await?;
    let health = stack.http.get(stack.url("/health")).send().await?;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    stack.start_notification().await?;

    let mut targets = vec![("gateway", stack.gateway_ports[0])];
    targets.extend(stack.ops_ports.iter().copied());
    assert_eq!(targets.len(), 4, "gateway, message-store, presence, notification: {targets:?}");
    let prometheus = Prometheus::start(&targets, &rules, &stack.admin_key)?;
    let http = reqwest::Client::new();

    // Every metric the dashboard and the rules name.
    let (exprs, variable_metrics) = dashboard_queries(&dashboard);
    assert!(exprs.len() >= 20, "the dashboard's queries: {exprs:?}");
    eventually("Prometheus to load the rules", || async {
        let groups = prometheus.api(&http, "rules", &[]).await?["groups"].clone();
        Ok(groups.as_array().is_some_and(|g| !g.is_empty()))
    })
    .await
    .map_err(|e| e.context(prometheus.log()))?;
    let groups = prometheus.api(&http, "rules", &[]).await?["groups"].clone();
    let rules_exprs: Vec<(String, String)> = groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (r["name"].as_str().unwrap_or_default().to_owned(), r["query"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert!(rules_exprs.len() >= 10, "alert rules: {rules_exprs:?}");
    let mut wanted: BTreeSet<String> = variable_metrics;
    for expr in exprs.iter().chain(rules_exprs.iter().map(|(_, e)| e)) {
        wanted.extend(metric_names(expr));
    }
    assert!(wanted.contains("up") && wanted.len() >= 15, "metric names found: {wanted:?}");

    // Wait for scrapes to bring them all in.
    let missing = std::sync::Mutex::new(wanted.clone());
    let found = eventually("every metric in Prometheus", || async {
        let names = prometheus.api(&http, "label/__name__/values", &[]).await?;
        let have: BTreeSet<String> =
            names.as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)).collect();
        let now_missing: BTreeSet<String> = wanted.difference(&have).cloned().collect();
        let done = now_missing.is_empty();
        if let Ok(mut m) = missing.lock() {
            *m = now_missing;
        }
        Ok(done)
    })
    .await;
    if let Err(e) = found {
        let targets = prometheus.api(&http, "targets", &[]).await.unwrap_or_default();
        let missing = missing.lock().map(|m| m.clone()).unwrap_or_default();
        anyhow::bail!(
            "metrics the dashboard or the rules use and no service exports: {missing:?} ({e}); targets: {targets}"
        );
    }
    // Every service scraped (they share this process's registry, so the names above
    // may all have come from the first scrape of one of them).
    let services = BTreeSet::from(["gateway", "message-store", "notification", "presence"].map(str::to_owned));
    eventually("every service scraped and up", || async {
        let up = prometheus.api(&http, "query", &[("query", "up == 1")]).await?;
        let jobs: BTreeSet<String> = up["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["metric"]["job"].as_str().map(str::to_owned))
            .collect();
        Ok(jobs == services)
    })
    .await?;
    // The per-tenant series carry this test's tenant.
    let connections = prometheus
        .api(&http, "query", &[("query", &format!("chat_gateway_connections{{tenant=\"{}\"}}", t.id))])
        .await?;
    assert_eq!(connections["result"][0]["metric"]["dialect"], "ws-rooms", "{connections}");
    assert_eq!(connections["result"][0]["value"][1], "1", "{connections}");

    // Every dashboard expression evaluates.
    for expr in &exprs {
        prometheus
            .api(&http, "query", &[("query", expr)])
            .await
            .map_err(|e| e.context(format!("dashboard: {expr}")))?;
    }
    // Every rule has been evaluated without error.
    eventually("every rule evaluated", || async {
        let groups = prometheus.api(&http, "rules", &[]).await?["groups"].clone();
        let rules: Vec<Value> = groups
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        for r in &rules {
            anyhow::ensure!(r["health"] != "err", "rule {} fails: {}", r["name"], r["lastError"]);
        }
        Ok(rules.iter().all(|r| r["health"] == "ok"))
    })
    .await?;

    drop(prometheus);
    bob.close().await?;
    stack.stop().await
}
