//! The "Simple Chat Client" page of `ws-rooms.md`, exactly as that document writes it
//! (`docs/demo/ws-rooms-demo.html`), loaded from the gateway's own origin
//! (`GATEWAY_STATIC_DIR`) in headless Chromium: two people see each other's typing
//! and messages. Only the page's constants (room, key, user id and name) and its
//! `ws://localhost:8000` are replaced by this test's. One person's page holds the API
//! key, the other's a user token, as a browser app would. Needs Chromium
//! (`scripts/ensure-deps.sh browser`) and the machine's PostgreSQL, Redis and NATS.

use std::path::{Path, PathBuf};

use chat_test_support::browser::{Browser, Page};
use chat_test_support::{TestStack, TestTenant, unique};
use reqwest::StatusCode;
use serde_json::json;

/// The page as the document has it.
fn demo_page() -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/demo/ws-rooms-demo.html");
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The page with this test's values in place of the document's.
fn personalized(page: &str, ws_base: &str, room: &str, key: &str, user: &str, name: &str) -> anyhow::Result<String> {
    let mut out = page.to_owned();
    for (from, to) in [
        ("ws://localhost:8000", ws_base),
        ("\"550e8400-e29b-41d4-a716-446655440001\"", &format!("\"{room}\"")),
        ("\"sk_test_1234567890abcdef\"", &format!("\"{key}\"")),
        ("\"demo_user\"", &format!("\"{user}\"")),
        ("\"Demo User\"", &format!("\"{name}\"")),
    ] {
        anyhow::ensure!(out.contains(from), "the demo page no longer has {from}");
        out = out.replace(from, to);
    }
    Ok(out)
}

/// A fresh directory for the pages, removed when dropped.
struct PageDir(PathBuf);

impl Drop for PageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn opened(browser: &Browser, url: &str) -> anyhow::Result<Page> {
    let page = browser.page(url).await?;
    page.wait_for("the page to connect", "document.getElementById('status').textContent === 'Connected'").await?;
    // Keep every text the typing line shows (it is cleared again after a while).
    page.eval(
        "window.typingSeen = [];
         new MutationObserver(() => window.typingSeen.push(document.getElementById('typing').textContent))
           .observe(document.getElementById('typing'), {childList: true, characterData: true, subtree: true});
         true",
    )
    .await?;
    Ok(page)
}

async fn type_and_send(page: &Page, text: &str) -> anyhow::Result<()> {
    let text = serde_json::to_string(text)?;
    page.eval(&format!(
        "const input = document.getElementById('messageInput');
         input.value = {text};
         input.dispatchEvent(new Event('input'));
         true"
    ))
    .await?;
    Ok(())
}

async fn click_send(page: &Page) -> anyhow::Result<()> {
    page.eval("document.querySelector('button').click(); true").await?;
    Ok(())
}

async fn sees_message(page: &Page, line: &str) -> anyhow::Result<()> {
    let line = serde_json::to_string(line)?;
    page.wait_for(
        &format!("the message {line}"),
        &format!("document.getElementById('messages').innerText.includes({line})"),
    )
    .await?;
    Ok(())
}

async fn token(t: &TestTenant, user: &str) -> anyhow::Result<String> {
    let res = t.user(user).post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    Ok(res.str("token")?.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_page_chats_between_two_people() -> anyhow::Result<()> {
    let dir = PageDir(std::env::temp_dir().join(unique("demo-pages-")));
    std::fs::create_dir_all(&dir.0)?;
    let stack = TestStack::builder().static_dir(&dir.0).start().await?;
    let t = stack.tenant_with(json!({"name": "demo", "rate_limit_per_sec": 100_000})).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let page = demo_page()?;
    let ws = stack.ws_url(0);
    std::fs::write(dir.0.join("alice.html"), personalized(&page, &ws, &room, &t.api_key, "alice", "Alice A")?)?;
    // With a user token the name shown is the user directory's, never the page's
    // `user_name` (issue 25): Bob's is registered as his server would.
    let named =
        t.user("bob").request(reqwest::Method::PUT, "/users/bob").json(&json!({"name": "Bob B"})).send().await?;
    anyhow::ensure!(named.status().is_success(), "PUT /users/bob: {}", named.status());
    let bob_token = token(&t, "bob").await?;
    std::fs::write(dir.0.join("bob.html"), personalized(&page, &ws, &room, &bob_token, "bob", "Bob B")?)?;

    let browser = Browser::launch().await?;
    let alice = opened(&browser, &stack.url("/static/alice.html")).await?;
    let bob = opened(&browser, &stack.url("/static/bob.html")).await?;

    // Alice types: Bob sees it. She sends: both see her message.
    type_and_send(&alice, "hello from Alice").await?;
    bob.wait_for("Bob to see Alice typing", "window.typingSeen.includes('Alice A is typing...')").await?;
    click_send(&alice).await?;
    sees_message(&alice, "Alice A: hello from Alice").await?;
    sees_message(&bob, "Alice A: hello from Alice").await?;
    assert_eq!(alice.eval("document.getElementById('messageInput').value").await?, json!(""));

    // And the other way round, with Bob's page holding a user token.
    type_and_send(&bob, "hi Alice").await?;
    alice.wait_for("Alice to see Bob typing", "window.typingSeen.includes('Bob B is typing...')").await?;
    click_send(&bob).await?;
    sees_message(&alice, "Bob B: hi Alice").await?;
    sees_message(&bob, "Bob B: hi Alice").await?;
    assert!(
        !bob.eval("window.typingSeen").await?.as_array().into_iter().flatten().any(|t| t == "Bob B is typing..."),
        "nobody sees their own typing"
    );

    // Stored once each, by the right senders.
    let list = t.user("alice").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    let senders: Vec<_> = list.body.as_array().into_iter().flatten().map(|m| m["sender_id"].clone()).collect();
    assert_eq!(senders, vec![json!("alice"), json!("bob")]);
    drop(browser);
    stack.stop().await
}
