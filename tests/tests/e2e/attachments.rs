//! Attachments (`POST /api/chat/{id}/messages/file`, `GET /api/chat/{id}/files/{token}`):
//! a file round-trips through the object store — on local disk, and on a real
//! S3-compatible server (moto, started by the test) — as a message with a `seq` that
//! reaches sockets and history; only participants read it, with the right headers;
//! expired and tampered links are `403`; an over-limit or disallowed upload is `413` /
//! `415` and leaves nothing in the store or the history; a malformed form is `400`.
//! Needs the machine's PostgreSQL, Redis and NATS, and for the S3 test moto
//! (`scripts/ensure-deps.sh s3`, or `MOTO_SERVER` naming a `moto_server`).

use std::time::Duration;

use chat_test_support::{StackBuilder, TestStack, TestTenant, WsClient, unique};
use gateway::attachments::{AttachmentsConfig, LinkClaims, LinkSigner, S3Config, Store, StoreConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xff\xff?\0\x05\xfe\x02\xfe\xa7\x35\x81\x84\0\0\0\0IEND\xaeB`\x82";

/// One part of a multipart form.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    content_type: &'a str,
    bytes: Vec<u8>,
}

fn file<'a>(filename: &'a str, content_type: &'a str, bytes: impl Into<Vec<u8>>) -> Part<'a> {
    Part { name: "file", filename: Some(filename), content_type, bytes: bytes.into() }
}

fn text<'a>(name: &'a str, value: &str) -> Part<'a> {
    Part { name, filename: None, content_type: "text/plain", bytes: value.as_bytes().to_vec() }
}

/// A `multipart/form-data` body and its `Content-Type`.
fn form(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("----chat{}", unique("b"));
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", p.name).as_bytes(),
        );
        if let Some(f) = p.filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(format!("\r\nContent-Type: {}\r\n\r\n", p.content_type).as_bytes());
        body.extend_from_slice(&p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A user token for `user` of `t`.
async fn token(stack: &TestStack, t: &TestTenant, user: &str) -> anyhow::Result<String> {
    let res = stack
        .http
        .post(format!("{}/tokens", stack.base_url(0)))
        .header("X-API-Key", &t.api_key)
        .json(&json!({"user_id": user}))
        .send()
        .await?;
    anyhow::ensure!(res.status() == StatusCode::CREATED, "minting a token: {}", res.status());
    let body: Value = res.json().await?;
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no token in {body}"))
}

/// Uploads a form; returns the status and the JSON body.
async fn upload(stack: &TestStack, token: &str, chat: &str, parts: &[Part<'_>]) -> anyhow::Result<(StatusCode, Value)> {
    let (content_type, body) = form(parts);
    let res = stack
        .http
        .post(format!("{}/api/chat/{chat}/messages/file", stack.base_url(0)))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await?;
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

fn expect_error(got: &(StatusCode, Value), status: StatusCode, code: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        got.0 == status && got.1["success"] == false && got.1["code"] == code && got.1["message"].is_string(),
        "expected {status} {code}, got {} {}",
        got.0,
        got.1
    );
    Ok(())
}

/// Reads a link: status, headers and bytes.
async fn read(
    stack: &TestStack,
    url: &str,
    bearer: Option<&str>,
) -> anyhow::Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
    let url = if url.starts_with("http") { url.to_owned() } else { format!("{}{url}", stack.base_url(0)) };
    let mut req = stack.http.get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    let (status, headers) = (res.status(), res.headers().clone());
    Ok((status, headers, res.bytes().await?.to_vec()))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The objects stored for a chat.
async fn stored(stack: &TestStack, t: &TestTenant, chat: &str) -> anyhow::Result<Vec<String>> {
    Store::open(&stack.attachments.store)?.list(&format!("{}/{chat}", t.id)).await
}

/// The chat's history, oldest first.
async fn history(t: &TestTenant, chat: &str) -> anyhow::Result<Vec<Value>> {
    let res = t.user("alice").get(&format!("/rooms/{chat}/messages")).await?.expect(StatusCode::OK)?;
    Ok(res.body.as_array().cloned().unwrap_or_default())
}

/// Everything the attachment routes promise, against whatever store `stack` uses.
async fn round_trip(stack: &TestStack) -> anyhow::Result<()> {
    let t = stack.tenant_with(json!({"name": "files", "rate_limit_per_sec": 100_000})).await?;
    let chat = t.user("alice").create_room("group", &["bob"]).await?;
    let (alice, bob, carol) =
        (token(stack, &t, "alice").await?, token(stack, &t, "bob").await?, token(stack, &t, "carol").await?);
    let mut ws = WsClient::connect(&format!("{}/ws/{chat}?token={bob}", stack.ws_url(0))).await?;
    ws.expect("connection_status").await?;

    // The client's type and extension say PDF; the bytes say PNG.
    let sent =
        upload(stack, &alice, &chat, &[text("content", "look"), file("cät 1.pdf", "application/pdf", PNG)]).await?;
    anyhow::ensure!(sent.0 == StatusCode::CREATED && sent.1["success"] == true, "upload: {} {}", sent.0, sent.1);
    let message = &sent.1["data"]["message"];
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["filename"], "cät 1.pdf");
    assert_eq!(attachment["mimeType"], "image/png");
    assert_eq!(attachment["size"], PNG.len());
    assert_eq!(message["content"], "look");
    let url = attachment["url"].as_str().unwrap_or_default().to_owned();
    assert!(url.starts_with(&format!("/api/chat/{chat}/files/")), "{url}");

    // It is a message like any other: live on the other dialect, and in history.
    let frame = ws.expect("message").await?;
    assert_eq!(
        (frame["data"]["id"].clone(), frame["data"]["content"].clone()),
        (message["_id"].clone(), json!("look"))
    );
    // The `/ws` frame and `/rooms` history carry the file with a signed link too.
    let in_frame = &frame["data"]["attachments"][0];
    assert_eq!((in_frame["filename"].clone(), in_frame["mime_type"].clone()), (json!("cät 1.pdf"), json!("image/png")));
    assert_eq!(read(stack, in_frame["url"].as_str().unwrap_or_default(), Some(&bob)).await?.2, PNG);
    let listed = history(&t, &chat).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["attachments"][0]["mime_type"], "image/png");
    assert_eq!(read(stack, listed[0]["attachments"][0]["url"].as_str().unwrap_or_default(), Some(&bob)).await?.2, PNG);
    assert_eq!(stored(stack, &t, &chat).await?.len(), 1);
    // The dialect's own history renders it the same way, with a freshly signed link.
    let page = stack
        .http
        .get(format!("{}/api/chat/{chat}/messages", stack.base_url(0)))
        .bearer_auth(&bob)
        .send()
        .await?
        .json::<Value>()
        .await?;
    let listed = &page["data"]["messages"][0]["attachments"][0];
    assert_eq!((listed["filename"].clone(), listed["mimeType"].clone()), (json!("cät 1.pdf"), json!("image/png")));
    assert_eq!(read(stack, listed["url"].as_str().unwrap_or_default(), Some(&bob)).await?.2, PNG);

    // A participant reads it: the bytes, as what they are, safely named.
    let (status, headers, bytes) = read(stack, &url, Some(&bob)).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, PNG);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&headers, "content-disposition"),
        "inline; filename=\"c_t 1.pdf\"; filename*=UTF-8''c%C3%A4t%201.pdf"
    );
    // `?token=`, as an <img src> would carry it.
    let (status, _, bytes) = read(stack, &format!("{url}?token={alice}"), None).await?;
    assert_eq!((status, bytes.len()), (StatusCode::OK, PNG.len()));
    assert_eq!(read(stack, &format!("{url}?token=not-a-token"), None).await?.0, StatusCode::UNAUTHORIZED);
    // The tenant's server reads with its API key, acting for a participant.
    let with_key = stack.http.get(format!("{}{url}", stack.base_url(0))).header("X-API-Key", &t.api_key);
    let res = with_key.header("X-User-Id", "bob").send().await?;
    assert_eq!((res.status(), res.bytes().await?.len()), (StatusCode::OK, PNG.len()));
    // Not a participant: no such file. No credential: 401.
    assert_eq!(read(stack, &url, Some(&carol)).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(read(stack, &url, None).await?.0, StatusCode::UNAUTHORIZED);
    // Another tenant's participant of nothing: 404 as well.
    let other = stack.tenant().await?;
    assert_eq!(read(stack, &url, Some(&token(stack, &other, "bob").await?)).await?.0, StatusCode::NOT_FOUND);

    // Tampered and expired links: 403.
    let link = url.rsplit('/').next().unwrap_or_default();
    let (payload, signature) = link.split_once('.').unwrap_or_default();
    let flipped = if payload.ends_with('A') { "B" } else { "A" };
    let tampered = format!("/api/chat/{chat}/files/{}{flipped}.{signature}", &payload[..payload.len() - 1]);
    assert_eq!(read(stack, &tampered, Some(&bob)).await?.0, StatusCode::FORBIDDEN);
    let signer = LinkSigner::new(&stack.attachments.link_key, 60)?;
    let claims = LinkClaims {
        room: chat.parse_id()?,
        key: stored(stack, &t, &chat).await?.remove(0),
        filename: "x.png".into(),
        mime_type: "image/png".into(),
        exp: chrono::Utc::now().timestamp() - 1,
    };
    let expired = format!("/api/chat/{chat}/files/{}", signer.sign(&claims));
    let got = read(stack, &expired, Some(&bob)).await?;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&got.2));
    // The same claims, still valid: the signer and the gateway agree.
    let fresh =
        format!("/api/chat/{chat}/files/{}", signer.sign(&LinkClaims { exp: claims.exp + 120, ..claims.clone() }));
    assert_eq!(read(stack, &fresh, Some(&bob)).await?.0, StatusCode::OK);
    // A valid link used under another chat's path.
    let elsewhere = t.user("bob").create_room("group", &["alice"]).await?;
    assert_eq!(read(stack, &format!("/api/chat/{elsewhere}/files/{link}"), Some(&bob)).await?.0, StatusCode::FORBIDDEN);

    // Over the default limit (10 MiB): 413, nothing stored, nothing sent.
    let big = vec![b'a'; 10 * 1024 * 1024 + 1];
    expect_error(
        &upload(stack, &alice, &chat, &[file("big.txt", "text/plain", big)]).await?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )?;
    // Far over it: refused on its Content-Length, and the client still reads the answer.
    let huge = vec![b'a'; 24 * 1024 * 1024];
    expect_error(
        &upload(stack, &alice, &chat, &[file("huge.txt", "text/plain", huge)]).await?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )?;
    // A type the tenant does not allow, whatever the client calls it: 415.
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    let refused = upload(stack, &alice, &chat, &[file("photo.png", "image/png", exe)]).await?;
    expect_error(&refused, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")?;
    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec();
    expect_error(
        &upload(stack, &alice, &chat, &[file("a.txt", "text/plain", html)]).await?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )?;
    // Text that turns binary past the sniffed head.
    let mut turns = vec![b'a'; 20_000];
    turns.push(0);
    expect_error(
        &upload(stack, &alice, &chat, &[file("a.txt", "text/plain", turns)]).await?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )?;
    // Malformed forms: 400.
    let wrong_field = upload(
        stack,
        &alice,
        &chat,
        &[Part { name: "upload", filename: Some("a.png"), content_type: "image/png", bytes: PNG.to_vec() }],
    )
    .await?;
    expect_error(&wrong_field, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    assert_eq!(wrong_field.1["field"], "upload");
    expect_error(
        &upload(stack, &alice, &chat, &[text("content", "no file")]).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    expect_error(
        &upload(stack, &alice, &chat, &[file("empty.png", "image/png", Vec::new())]).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    let not_multipart = stack
        .http
        .post(format!("{}/api/chat/{chat}/messages/file", stack.base_url(0)))
        .bearer_auth(&alice)
        .json(&json!({"file": "x"}))
        .send()
        .await?;
    assert_eq!(not_multipart.status(), StatusCode::BAD_REQUEST);
    // A reply to a message of another chat: refused by the send, and the file removed.
    let foreign = t.user("bob").send(&elsewhere, "elsewhere").await?;
    let reply = upload(
        stack,
        &alice,
        &chat,
        &[
            file("a.png", "image/png", PNG),
            text("replyToMessageId", foreign["message_id"].as_str().unwrap_or_default()),
        ],
    )
    .await?;
    expect_error(&reply, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    // Not a participant, or no such chat.
    expect_error(
        &upload(stack, &carol, &chat, &[file("a.png", "image/png", PNG)]).await?,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )?;
    expect_error(
        &upload(stack, &alice, "room_nope", &[file("a.png", "image/png", PNG)]).await?,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )?;
    // None of that stored a file or a message.
    assert_eq!(stored(stack, &t, &chat).await?.len(), 1);
    assert_eq!(history(&t, &chat).await?.len(), 1);
    // A file larger than one part (5 MiB) goes up in parts and reads back whole.
    let large: Vec<u8> = (0..6 * 1024 * 1024 + 7).map(|i| b"abcdefghij\n"[i % 11]).collect();
    let sent = upload(stack, &bob, &chat, &[file("large.txt", "text/plain", large.clone())]).await?;
    assert_eq!(sent.0, StatusCode::CREATED, "{}", sent.1);
    let attachment = &sent.1["data"]["message"]["attachments"][0];
    assert_eq!(attachment["size"], large.len());
    let (status, headers, bytes) = read(stack, attachment["url"].as_str().unwrap_or_default(), Some(&alice)).await?;
    assert_eq!((status, header(&headers, "content-length")), (StatusCode::OK, large.len().to_string().as_str()));
    assert!(bytes == large, "a large file read back different bytes");
    assert_eq!(stored(stack, &t, &chat).await?.len(), 2);

    // A tenant's own limit and types (`PATCH /settings`), changed while in use.
    let t = stack.tenant_with(json!({"name": "strict", "rate_limit_per_sec": 100_000})).await?;
    let chat = t.user("alice").create_room("group", &["bob"]).await?;
    let (alice, bob) = (token(stack, &t, "alice").await?, token(stack, &t, "bob").await?);
    let sent = upload(stack, &alice, &chat, &[file("a.png", "image/png", PNG)]).await?;
    assert_eq!(sent.0, StatusCode::CREATED, "{}", sent.1);
    let settings = json!({"upload_max_bytes": 1_000, "upload_allowed_types": ["text/plain", "text/csv"]});
    let res = stack
        .http
        .patch(format!("{}/settings", stack.base_url(0)))
        .header("X-API-Key", &t.api_key)
        .json(&settings)
        .send()
        .await?;
    anyhow::ensure!(res.status() == StatusCode::OK, "PATCH /settings: {} {}", res.status(), res.text().await?);
    // The gateway drops its cached settings on the tenant-change event. Until then an
    // upload that replies to nothing valid is a 400 that stores nothing; after, a 413.
    let probe = [file("p.txt", "text/plain", vec![b'x'; 1_001]), text("replyToMessageId", "msg_none")];
    let mut changed = (StatusCode::OK, Value::Null);
    for _ in 0..50 {
        changed = upload(stack, &alice, &chat, &probe).await?;
        if changed.0 != StatusCode::BAD_REQUEST {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expect_error(&changed, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")?;
    let limited = upload(stack, &alice, &chat, &[file("n.txt", "text/plain", vec![b'x'; 1_001])]).await?;
    expect_error(&limited, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")?;
    let png = upload(stack, &alice, &chat, &[file("a.png", "image/png", PNG)]).await?;
    expect_error(&png, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")?;
    // Text is stored as text/plain (text/csv when named so), served as UTF-8.
    let notes = "naïve notes\n";
    let sent = upload(stack, &bob, &chat, &[file("notes.txt", "application/octet-stream", notes)]).await?;
    assert_eq!(sent.0, StatusCode::CREATED, "{}", sent.1);
    let attachment = &sent.1["data"]["message"]["attachments"][0];
    assert_eq!(
        (attachment["mimeType"].clone(), sent.1["data"]["message"]["content"].clone()),
        (json!("text/plain"), json!("notes.txt"))
    );
    let (status, headers, bytes) = read(stack, attachment["url"].as_str().unwrap_or_default(), Some(&alice)).await?;
    assert_eq!((status, bytes), (StatusCode::OK, notes.as_bytes().to_vec()));
    assert_eq!(header(&headers, "content-type"), "text/plain; charset=utf-8");
    let sent = upload(stack, &bob, &chat, &[file("t.csv", "text/plain", "a,b\n1,2\n")]).await?;
    let attachment = &sent.1["data"]["message"]["attachments"][0];
    assert_eq!(attachment["mimeType"], "text/csv");
    let (_, headers, _) = read(stack, attachment["url"].as_str().unwrap_or_default(), Some(&alice)).await?;
    assert!(header(&headers, "content-disposition").starts_with("attachment; filename=\"t.csv\""));
    assert_eq!(stored(stack, &t, &chat).await?.len(), 3);
    assert_eq!(history(&t, &chat).await?.len(), 3);

    // Deleting a file message takes its files out of the message on every path, and
    // out of the store: a link handed out before the delete finds nothing.
    let id = sent.1["data"]["message"]["_id"].as_str().unwrap_or_default().to_owned();
    let link = attachment["url"].as_str().unwrap_or_default().to_owned();
    let res = stack
        .http
        .delete(format!("{}/api/chat/{chat}/messages/{id}", stack.base_url(0)))
        .bearer_auth(&bob)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let deleted: Value = res.json().await?;
    assert_eq!(deleted["data"]["message"]["attachments"], json!([]), "{deleted}");
    let listed = history(&t, &chat).await?;
    let last = listed.last().cloned().unwrap_or_default();
    anyhow::ensure!(last["deleted_at"].is_string() && last.get("attachments").is_none(), "{last}");
    assert_eq!(stored(stack, &t, &chat).await?.len(), 2);
    assert_eq!(read(stack, &link, Some(&alice)).await?.0, StatusCode::NOT_FOUND);
    // The same through the canonical API, and a second delete removes nothing more.
    let sent = upload(stack, &bob, &chat, &[file("u.txt", "text/plain", "gone soon")]).await?;
    let id = sent.1["data"]["message"]["_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(stored(stack, &t, &chat).await?.len(), 3);
    for _ in 0..2 {
        let res = t.user("bob").delete(&format!("/rooms/{chat}/messages/{id}")).await?.expect(StatusCode::OK)?;
        assert_eq!(res.body.get("attachments"), None, "{}", res.body);
        assert_eq!(res.body.get("removed_attachments"), None, "{}", res.body);
    }
    assert_eq!(stored(stack, &t, &chat).await?.len(), 2);
    Ok(())
}

/// Something to parse ids with in the test.
trait ParseId {
    fn parse_id<T: TryFrom<String>>(&self) -> anyhow::Result<T>
    where
        T::Error: std::fmt::Display;
}

impl ParseId for String {
    fn parse_id<T: TryFrom<String>>(&self) -> anyhow::Result<T>
    where
        T::Error: std::fmt::Display,
    {
        T::try_from(self.clone()).map_err(|e| anyhow::anyhow!("{self}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_on_local_disk() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    round_trip(&stack).await?;
    stack.stop().await
}

/// moto's S3 server on a free port, stopped when dropped.
struct Moto {
    child: tokio::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> anyhow::Result<Self> {
        let program = std::env::var("MOTO_SERVER")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev/moto-venv/bin/moto_server").to_owned());
        anyhow::ensure!(
            std::path::Path::new(&program).exists(),
            "{program} is missing: run scripts/ensure-deps.sh s3 (or set MOTO_SERVER)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{}/moto-api/", moto.endpoint)).send().await.is_ok() {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("moto did not answer on {} within 20 s", moto.endpoint)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_on_s3() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let bucket = unique("chat-files-").to_lowercase().replace('_', "-");
    let created = reqwest::Client::new().put(format!("{}/{bucket}", moto.endpoint)).send().await?;
    anyhow::ensure!(created.status().is_success(), "creating bucket {bucket}: {}", created.status());
    let config = AttachmentsConfig {
        store: StoreConfig::S3(S3Config {
            bucket: bucket.clone(),
            prefix: "chat/attachments".into(),
            endpoint: Some(moto.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            session_token: None,
            path_style: true,
        }),
        link_key: b"a link key that every gateway of this test shares".to_vec(),
        link_ttl_secs: 3600,
        public_url: String::new(),
    };
    let stack = StackBuilder::default().attachments(config).start().await?;
    round_trip(&stack).await?;
    // The objects really are in the bucket, under the configured prefix: those of the
    // messages that stand (the two deleted messages' files are gone).
    let listing = reqwest::Client::new()
        .get(format!("{}/{bucket}?list-type=2&prefix=chat/attachments/", moto.endpoint))
        .send()
        .await?
        .text()
        .await?;
    anyhow::ensure!(listing.matches("<Key>chat/attachments/").count() == 4, "bucket listing: {listing}");
    stack.stop().await?;
    drop(moto);
    Ok(())
}
