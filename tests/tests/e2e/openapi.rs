//! `/openapi.json` and `/docs` against a running gateway (every optional route on):
//! the document is valid OpenAPI 3.1 (`openapi-spec-validator` from PyPI, installed by
//! `scripts/ensure-deps.sh openapi-validator`); every operation it lists is served (the
//! request reaches a handler, not the router's "No such endpoint"), and every method it
//! does not list for a path, and a path it does not list, is not; the rate-limit headers
//! it promises come on a tenant's responses; and the reference renders in headless
//! Chromium from the gateway alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use chat_test_support::browser::Browser;
use chat_test_support::{TestStack, unique};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The router's answer for what no route serves (both dialects word it the same).
const NO_ROUTE: &str = "No such endpoint";

fn validator() -> PathBuf {
    std::env::var_os("OPENAPI_SPEC_VALIDATOR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/openapi-venv/bin/openapi-spec-validator")
    })
}

/// A folder removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A concrete path for a documented one: each `{param}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') && s.ends_with('}') { "probe1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a response is the router's own 404 rather than a handler's answer.
async fn routed_nowhere(res: reqwest::Response) -> anyhow::Result<bool> {
    if res.status() != StatusCode::NOT_FOUND {
        return Ok(false);
    }
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"].as_str().or(body["message"].as_str()).unwrap_or_default().to_owned();
    Ok(message == NO_ROUTE)
}

async fn fetch_document(stack: &TestStack) -> anyhow::Result<Value> {
    let res = reqwest::get(stack.url("/openapi.json")).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    Ok(res.json().await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_and_lists_exactly_what_is_served() -> anyhow::Result<()> {
    let dir = TempDir(std::env::temp_dir().join(unique("openapi-")));
    std::fs::create_dir_all(&dir.0)?;
    let stack = TestStack::builder().dev_login().static_dir(&dir.0).start().await?;
    let doc = fetch_document(&stack).await?;
    assert_eq!(doc["openapi"], "3.1.0");

    // Valid OpenAPI 3.1, by a validator that is not ours.
    let file = dir.0.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc)?)?;
    let program = validator();
    let out = Command::new(&program).arg(&file).output().map_err(|e| {
        anyhow::anyhow!(
            "could not run {} ({e}); scripts/ensure-deps.sh openapi-validator installs it",
            program.display()
        )
    })?;
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every documented operation reaches a handler; every other method of the path,
    // and an undocumented path, is the router's 404.
    let http = reqwest::Client::new();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() > 80, "only {} paths", paths.len());
    let mut unrouted = Vec::new();
    let mut undocumented = Vec::new();
    for (path, item) in &paths {
        let url = stack.url(&concrete(path));
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let listed = item.get(method.as_str().to_ascii_lowercase()).is_some();
            let res = http.request(method.clone(), &url).send().await?;
            let nowhere = routed_nowhere(res).await?;
            if listed && nowhere {
                unrouted.push(format!("{method} {path}"));
            }
            if !listed && !nowhere {
                undocumented.push(format!("{method} {path}"));
            }
        }
    }
    assert!(unrouted.is_empty(), "documented but not served: {unrouted:?}");
    assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");
    let res = http.get(stack.url(&format!("/{}", unique("nothing-here-")))).send().await?;
    assert!(routed_nowhere(res).await?);

    // The rate-limit headers the document promises for a tenant's request.
    let t = stack.tenant().await?;
    let res = http.get(stack.url("/rooms")).header("X-API-Key", &t.api_key).header("X-User-Id", "alice").send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    let promised =
        doc["paths"]["/rooms"]["get"]["responses"]["200"]["headers"].as_object().cloned().unwrap_or_default();
    assert!(promised.contains_key("X-RateLimit-Limit"), "{promised:?}");
    for name in promised.keys() {
        assert!(res.headers().contains_key(name.as_str()), "{name} promised, not sent");
    }
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_renders_offline_from_the_gateway() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let res = reqwest::get(stack.url("/docs")).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"].to_str()?.to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");

    let browser = Browser::launch().await?;
    let page = browser.page(&stack.url("/docs")).await?;
    // Redoc draws the title and every operation's summary.
    let summaries = ["Send a message", "Create a room", "Send a file", "Mint a user token", "Create a tenant"];
    let all = summaries.iter().map(|s| format!("document.body.innerText.includes({s:?})")).collect::<Vec<_>>();
    if let Err(e) = page
        .wait_for(
            "the reference to render",
            &format!("document.body.innerText.includes('chat-backend gateway') && {}", all.join(" && ")),
        )
        .await
    {
        let shown = page.eval("document.body.innerText.slice(0, 3000)").await?;
        return Err(e.context(format!("the page shows: {shown}")));
    }
    // Everything it loaded came from the gateway (the CSP would have blocked anything
    // else; this says nothing was even tried and failed).
    let origin = stack.url("");
    let loaded = page.eval("JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))").await?;
    let loaded: Vec<String> = serde_json::from_str(loaded.as_str().unwrap_or("[]"))?;
    assert!(loaded.iter().any(|u| u.ends_with("/openapi.json")), "{loaded:?}");
    for url in &loaded {
        assert!(
            url.starts_with(&origin) || url.starts_with("blob:") || url.starts_with("data:"),
            "{url} is not the gateway"
        );
    }
    drop(browser);
    stack.stop().await
}
