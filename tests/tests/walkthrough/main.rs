//! The newcomer's walkthrough, as README tells it and as a person who has never seen
//! the project does it: `make run` (here `scripts/run.sh` with the debug binaries
//! already built, `SKIP_BUILD=1`), the web-chat URL and the admin key taken from the
//! banner it prints, two browser pages that sign in as alice and bob by name, make a
//! room through the page and chat both ways; the API reference at `/docs` rendered
//! from the gateway alone; the admin console showing the dev tenant with its live
//! connections; then Ctrl-C, after which run.sh exits 0 and nothing it started is
//! left listening.
//!
//! Needs the four service binaries in `target/debug` (`cargo build -p gateway -p
//! message-store -p presence -p notification --bins`), Chromium
//! (`scripts/ensure-deps.sh browser`) and PostgreSQL's server programs, `nats-server`
//! and `redis-server`, of which it starts private instances on free ports, so it
//! never touches the machine's own or a developer's `make run`. Ignored by a plain
//! `cargo test`; `scripts/test.sh` runs it after building the binaries:
//! `cargo test -p chat-e2e --test walkthrough -- --ignored --nocapture`.

mod deps;
mod run;

use std::path::{Path, PathBuf};

use chat_test_support::browser::{Browser, Page, count_of, js, online, text_of};
use serde_json::json;

use crate::deps::{Deps, port_open, tail};
use crate::run::{Banner, Run};

/// The checkout: `scripts/run.sh` is run from it, with its `target/debug` binaries.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Opens the web chat at `url` and signs in by name, through the page's own form.
async fn sign_in(browser: &Browser, url: &str, who: &str) -> anyhow::Result<Page> {
    let page = browser.page(url).await?;
    page.wait_for("the chat app to load", "document.readyState === 'complete' && !!window.chatApp").await?;
    page.fill("dev-user", who).await?;
    page.click("#dev-signin").await?;
    page.wait_for(&format!("{who} to be signed in"), &format!("{} === {}", text_of("#me"), js(who))).await?;
    Ok(page)
}

/// Writes `content` in the composer and sends it; the other page must show it once.
async fn say(from: &Page, to: &Page, who: &str, content: &str) -> anyhow::Result<()> {
    from.fill("composer", content).await?;
    from.click("#send").await?;
    to.wait_for(&format!("{who} to see {content:?}"), &format!("{} === 1", count_of(content))).await?;
    Ok(())
}

/// Two people chat in the app the banner points at; returns their pages, which stay
/// open (their sockets are the live connections the console shows).
async fn chat(browser: &Browser, banner: &Banner) -> anyhow::Result<[Page; 2]> {
    let alice = sign_in(browser, &banner.web_chat, "alice").await?;
    let bob = sign_in(browser, &banner.web_chat, "bob").await?;

    alice.fill("new-members", "bob").await?;
    alice.fill("new-name", "First steps").await?;
    alice.click("#new-create").await?;
    alice.wait_for("Alice's new room to open", &format!("{} === 'First steps'", text_of("#room-title"))).await?;
    online(&alice, "Alice").await?;
    let room = alice.eval("window.chatApp.room.room_id").await?;
    let room = room.as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(room.starts_with("room_"), "no room id in the page: {room:?}");

    let row = format!("li.room[data-room=\"{room}\"]");
    bob.click(&row).await?;
    bob.wait_for("Bob to open the room", &format!("{} === 'First steps'", text_of("#room-title"))).await?;
    online(&bob, "Bob").await?;

    say(&alice, &bob, "Bob", "Hi Bob, this is my first message").await?;
    say(&bob, &alice, "Alice", "Hi Alice, it works").await?;
    for (page, who) in [(&alice, "Alice"), (&bob, "Bob")] {
        for content in ["Hi Bob, this is my first message", "Hi Alice, it works"] {
            let shown = page.eval(&count_of(content)).await?;
            anyhow::ensure!(shown == json!(1), "{who} shows {content:?} {shown} times");
        }
    }
    Ok([alice, bob])
}

/// The API reference at the printed `/docs` URL renders from the gateway alone: the title and the
/// operations (Redoc 2 draws every tag on one page), with no request outside the
/// gateway's origin, made or refused by the page's Content-Security-Policy.
async fn docs(browser: &Browser, banner: &Banner) -> anyhow::Result<()> {
    let origin = banner.web_chat.trim_end_matches('/');
    let page = browser.page("about:blank").await?;
    page.record_requests().await?;
    // A request the policy refuses may never reach the network: note those too.
    page.call("Page.enable", json!({})).await?;
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.refused = []; \
            document.addEventListener('securitypolicyviolation', e => window.refused.push(e.blockedURI));"}),
    )
    .await?;
    anyhow::ensure!(banner.docs == format!("{origin}/docs"), "the banner's API docs URL is {}", banner.docs);
    page.navigate(&banner.docs).await?;
    page.wait_for("Redoc to draw the title", "document.body?.textContent.includes('chat-backend gateway (')").await?;
    page.wait_for(
        "the operations",
        "document.body.textContent.includes('Send a message') && document.body.textContent.includes('Create a tenant')",
    )
    .await?;

    let requests = page.requests();
    anyhow::ensure!(
        requests.iter().any(|u| u == &format!("{origin}/openapi.json")),
        "the page did not load {origin}/openapi.json: {requests:?}"
    );
    let refused: Vec<String> = serde_json::from_value(page.eval("window.refused").await?)?;
    let inside = |u: &str| u.starts_with(&format!("{origin}/")) || u.starts_with("data:") || u.starts_with("blob:");
    // `blockedURI` is a URL for a refused load, a keyword (`eval`, `inline`) otherwise.
    let mut outside: Vec<&String> =
        requests.iter().chain(refused.iter().filter(|u| u.contains("://"))).filter(|u| !inside(u)).collect();
    outside.sort();
    outside.dedup();
    anyhow::ensure!(outside.is_empty(), "/docs asked for something outside {origin}: {outside:?}");
    Ok(())
}

/// The console, opened with the printed key, lists the dev tenant and its live sockets.
async fn console(browser: &Browser, banner: &Banner) -> anyhow::Result<()> {
    let page = browser.page(&banner.admin).await?;
    page.wait_for("the console to load", "document.readyState === 'complete' && !!window.adminConsole").await?;
    page.fill("admin-key", &banner.admin_key).await?;
    page.click("#admin-signin").await?;
    page.wait_for(
        "the dev tenant with a live connection",
        &format!("Number({}) >= 1", text_of("#tenants tr[data-tenant=\"dev\"] .conns")),
    )
    .await?;
    Ok(())
}

async fn walkthrough(run: &mut Run) -> anyhow::Result<()> {
    let banner = run.banner().await?;
    println!("walkthrough: the banner says {banner:?}");
    let gateway = run.ports["gateway"];
    anyhow::ensure!(
        banner.web_chat == format!("http://127.0.0.1:{gateway}/"),
        "the banner's web chat URL is not the gateway's address (port {gateway})"
    );
    let browser = Browser::launch().await?;
    let _people = chat(&browser, &banner).await?;
    println!("walkthrough: alice and bob chatted");
    docs(&browser, &banner).await?;
    println!("walkthrough: /docs rendered from the gateway alone");
    console(&browser, &banner).await?;
    println!("walkthrough: the console lists the dev tenant with its live connections");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs scripts/run.sh on the debug binaries: scripts/test.sh runs it after `cargo build --bins`"]
async fn a_newcomer_runs_the_stack_chats_reads_the_docs_and_opens_the_console() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(chat_test_support::unique("walkthrough-"));
    std::fs::create_dir_all(&dir)?;
    let start = dir.clone();
    let deps = tokio::task::spawn_blocking(move || Deps::start(&start)).await??;
    chat_test_support::eventually("PostgreSQL to take connections", || {
        let url = deps.database_url.clone();
        async move { chat_test_support::ensure_database(&url).await.map(|()| true) }
    })
    .await?;
    let mut run = Run::start(&root(), &dir, &deps)?;

    let walked = walkthrough(&mut run).await;
    // Ctrl-C, as the banner says: run.sh stops every service and exits 0.
    let stopped = run.interrupt().await;
    let logs = dir.join("dev/logs");
    let report = || {
        let services: Vec<String> = ["message-store", "presence", "notification", "gateway"]
            .iter()
            .map(|s| format!("--- {s}.log ---\n{}", tail(&logs.join(format!("{s}.log")), 20)))
            .collect();
        format!(
            "--- run.sh, last lines ---\n{}\n{}\n(kept in {})",
            run.last_lines(),
            services.join("\n"),
            dir.display()
        )
    };
    if let Err(e) = walked {
        anyhow::bail!("{e:#}\n{}", report());
    }
    let status = stopped.map_err(|e| anyhow::anyhow!("{e:#}\n{}", report()))?;
    anyhow::ensure!(status.code() == Some(0), "run.sh exited with {status} after Ctrl-C\n{}", report());
    anyhow::ensure!(run.printed("run: stopped").await, "run.sh did not say it stopped\n{}", report());
    let listening: Vec<_> = run.ports.iter().filter(|(_, port)| port_open(**port)).collect();
    anyhow::ensure!(listening.is_empty(), "still listening after Ctrl-C: {listening:?}\n{}", report());
    println!("walkthrough: Ctrl-C stopped everything; run.sh exited 0");

    drop(run);
    drop(deps);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
