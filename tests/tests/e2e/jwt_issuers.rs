//! Tenants' own JWT issuers: tokens signed by a tenant's auth server (HS256, RS256 with
//! a PEM, ES256 with a JWKS picked by `kid`, a custom user-id claim) are user tokens on
//! REST (`Authorization: Bearer`, `X-API-Key`) and WebSocket connects; forged,
//! expired, not-yet-valid, wrong-audience, wrong-issuer and algorithm-confused tokens
//! are `401` (close `4001`); a settings change reaches every gateway at once. Keys are
//! generated at test time with the `openssl` CLI. Needs PostgreSQL, Redis and NATS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chat_test_support::{Client, Ended, TestStack, TestTenant, WsClient, eventually, unique};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A key pair made by `openssl` in a scratch directory: PKCS#8 private and SPKI public
/// PEM.
struct KeyPair {
    private: String,
    public: String,
}

/// Scratch directory for one test's keys, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique("jwt-keys-"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn openssl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("openssl").args(args).current_dir(&self.0).output()?;
        anyhow::ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// `kind`: `rsa` (2048 bits) or `ec` (P-256).
    fn pair(&self, kind: &str) -> anyhow::Result<KeyPair> {
        let name = unique(kind);
        let (private, public) = (format!("{name}.pem"), format!("{name}.pub.pem"));
        match kind {
            "rsa" => {
                self.openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &private])?
            }
            _ => {
                self.openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &private])?
            }
        }
        self.openssl(&["pkey", "-in", &private, "-pubout", "-out", &public])?;
        let read = |f: &str| std::fs::read_to_string(Path::new(&self.0).join(f));
        Ok(KeyPair { private: read(&private)?, public: read(&public)? })
    }

    /// An RSA public key as PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`).
    fn pkcs1(&self, pair: &KeyPair) -> anyhow::Result<String> {
        let name = unique("pkcs1");
        std::fs::write(self.0.join(format!("{name}.pub.pem")), &pair.public)?;
        self.openssl(&[
            "rsa",
            "-pubin",
            "-in",
            &format!("{name}.pub.pem"),
            "-RSAPublicKey_out",
            "-out",
            &format!("{name}.pem"),
        ])?;
        Ok(std::fs::read_to_string(self.0.join(format!("{name}.pem")))?)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl KeyPair {
    fn encoding(&self, alg: Algorithm) -> anyhow::Result<EncodingKey> {
        Ok(match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.private.as_bytes())?,
            _ => EncodingKey::from_ec_pem(self.private.as_bytes())?,
        })
    }

    /// The public key as a JWK with `kid`.
    fn jwk(&self, alg: Algorithm, kid: &str) -> anyhow::Result<Value> {
        let mut jwk = Jwk::from_encoding_key(&self.encoding(alg)?, alg)?;
        jwk.common.key_id = Some(kid.to_owned());
        Ok(serde_json::to_value(jwk)?)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token signed with `key`, `kid` in its header.
fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> anyhow::Result<String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    Ok(jsonwebtoken::encode(&header, claims, key)?)
}

fn hs(secret: &str) -> anyhow::Result<EncodingKey> {
    Ok(EncodingKey::from_secret(secret.as_bytes())?)
}

/// An issuer name no other test (or earlier run) registered: issuers are unique across
/// tenants, in a database every test shares.
fn issuer(label: &str) -> String {
    format!("https://{}.auth.example", unique(label))
}

async fn put_settings(t: &TestTenant, base: &str, settings: Value) -> anyhow::Result<chat_test_support::Response> {
    let c = Client::raw(base).with_header("X-API-Key", &t.api_key);
    chat_test_support::Response::from(c.request(Method::PUT, "/settings").json(&settings).send().await?).await
}

/// Sends `content` to `room` as the token's user through `base`, with `Authorization:
/// Bearer`; the response.
async fn send_as(base: &str, token: &str, room: &str, content: &str) -> anyhow::Result<chat_test_support::Response> {
    Client::raw(base)
        .with_header("Authorization", &format!("Bearer {token}"))
        .post(&format!("/api/v1/rooms/{room}/messages"), json!({"content": content}))
        .await
}

/// The messages of `room` on `/api/chat` (`rest-chat.md`), as the token's user.
async fn chat_messages(base: &str, token: &str, room: &str) -> anyhow::Result<chat_test_support::Response> {
    Client::raw(base)
        .with_header("Authorization", &format!("Bearer {token}"))
        .get(&format!("/api/chat/{room}/messages"))
        .await
}

/// Asserts that `token` is refused with `401` on REST (in each document's error shape:
/// `rest-rooms.md`'s and `rest-chat.md`'s) and `4001` on a WebSocket.
async fn refused(stack: &TestStack, room: &str, token: &str, why: &str) -> anyhow::Result<()> {
    let res = send_as(&stack.base_url(0), token, room, "x").await?;
    res.expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)
        .map_err(|e| anyhow::anyhow!("{why}: {e}"))?;
    let res = chat_messages(&stack.base_url(0), token, room).await?;
    anyhow::ensure!(
        res.status == StatusCode::UNAUTHORIZED && res.body["success"] == false && res.body["message"].is_string(),
        "{why}: /api/chat answered {} {}",
        res.status,
        res.body
    );
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token={token}", stack.ws_url(0))).await?;
    assert_eq!(ws.ended().await?, Ended::Closed(4001), "{why}: the socket is refused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn external_tokens_are_user_tokens() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "jwt", "rate_limit_per_sec": 100_000})).await?;
    let keys = KeyDir::new()?;
    let (rsa, ec_old, ec_new) = (keys.pair("rsa")?, keys.pair("ec")?, keys.pair("ec")?);
    let (iss_hs, iss_rs, iss_es, iss_pkcs1) = (issuer("hs"), issuer("rs"), issuer("es"), issuer("pkcs1"));
    let secret = "an-hs256-secret-of-at-least-32-bytes!";
    // A published set may hold keys for other algorithms and for encryption: skipped.
    let mut for_encryption = ec_new.jwk(Algorithm::ES256, "enc")?;
    for_encryption["use"] = json!("enc");
    let settings = json!({"jwt": {"issuers": [
        {"issuer": iss_hs, "algorithm": "HS256", "secret": secret, "audience": "chat"},
        {"issuer": iss_rs, "algorithm": "RS256", "public_key_pem": rsa.public, "user_id_claim": "uid"},
        {"issuer": iss_es, "algorithm": "ES256", "jwks": {"keys": [
            rsa.jwk(Algorithm::RS256, "rsa")?, for_encryption,
            ec_old.jwk(Algorithm::ES256, "old")?, ec_new.jwk(Algorithm::ES256, "new")?,
        ]}},
        {"issuer": iss_pkcs1, "algorithm": "RS256", "public_key_pem": keys.pkcs1(&rsa)?},
    ]}});
    put_settings(&t, &stack.base_url(0), settings).await?.expect(StatusCode::OK)?;
    let room = t.user("owner").create_room("group", &["hana", "rosa", "eve-2", "ella"]).await?;
    let exp = now() + 600;

    let hs_token =
        sign(Algorithm::HS256, &hs(secret)?, None, &json!({"iss": iss_hs, "sub": "hana", "aud": "chat", "exp": exp}))?;
    // The user id is the custom claim, not `sub`.
    let rs_token = sign(
        Algorithm::RS256,
        &rsa.encoding(Algorithm::RS256)?,
        None,
        &json!({"iss": iss_rs, "sub": "ignored", "uid": "rosa", "exp": exp}),
    )?;
    // The JWKS key is the one `kid` names.
    let es_token = sign(
        Algorithm::ES256,
        &ec_new.encoding(Algorithm::ES256)?,
        Some("new"),
        &json!({"iss": iss_es, "sub": "eve-2", "exp": exp}),
    )?;
    let pkcs1_token = sign(
        Algorithm::RS256,
        &rsa.encoding(Algorithm::RS256)?,
        None,
        &json!({"iss": iss_pkcs1, "sub": "rosa", "exp": exp}),
    )?;
    for (token, user) in [(&hs_token, "hana"), (&rs_token, "rosa"), (&es_token, "eve-2"), (&pkcs1_token, "rosa")] {
        let res = send_as(&stack.base_url(0), token, &room, "hello").await?.expect(StatusCode::CREATED)?;
        assert_eq!(res.body["data"]["sender_id"], user, "the token names the sender");
        // The same token in X-API-Key, as the ws-rooms demo page sends one.
        let res = Client::raw(&stack.base_url(0))
            .with_header("X-API-Key", token)
            .post(&format!("/api/v1/rooms/{room}/messages"), json!({"content": "again"}))
            .await?
            .expect(StatusCode::CREATED)?;
        assert_eq!(res.body["data"]["sender_id"], user);
    }

    // A WebSocket connect with the token: the socket is the token's user's.
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token={rs_token}", stack.ws_url(0))).await?;
    ws.expect("connection_status").await?;
    send_as(&stack.base_url(0), &hs_token, &room, "to the socket").await?.expect(StatusCode::CREATED)?;
    let frame = ws.expect_where("message", |f| f["data"]["content"] == "to the socket").await?;
    assert_eq!(frame["data"]["sender_id"], "hana");
    ws.close().await?;
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token={es_token}", stack.ws_url(0))).await?;
    ws.expect("connection_status").await?;
    ws.close().await?;
    // The conversations dialect admits the same way.
    let mut conv = WsClient::connect(&format!("{}/conversations/{room}/?token={hs_token}", stack.ws_url(0))).await?;
    conv.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    conv.expect("messages_fetched").await?;
    conv.close().await?;
    let forged = sign(
        Algorithm::HS256,
        &hs("a-different-secret-of-32-bytes-or-more")?,
        None,
        &json!({"iss": iss_hs, "sub": "hana", "aud": "chat", "exp": exp}),
    )?;
    let mut conv = WsClient::connect(&format!("{}/conversations/{room}/?token={forged}", stack.ws_url(0))).await?;
    assert_eq!(conv.ended().await?, Ended::Closed(4003), "a forged token is refused there too");

    // Without `kid` every key of the set is tried; an unknown `kid`, or one naming
    // another key than the signer's, is refused.
    let old = ec_old.encoding(Algorithm::ES256)?;
    let claims = json!({"iss": iss_es, "sub": "ella", "exp": exp});
    let no_kid = sign(Algorithm::ES256, &old, None, &claims)?;
    send_as(&stack.base_url(0), &no_kid, &room, "no kid").await?.expect(StatusCode::CREATED)?;
    refused(&stack, &room, &sign(Algorithm::ES256, &old, Some("new"), &claims)?, "kid of another key").await?;
    refused(&stack, &room, &sign(Algorithm::ES256, &old, Some("gone"), &claims)?, "unknown kid").await?;

    // A `tid` claim names the tenant directly (the issuer must be that tenant's).
    let with_tid = sign(
        Algorithm::HS256,
        &hs(secret)?,
        None,
        &json!({"iss": iss_hs, "tid": t.id, "sub": "hana", "aud": "chat", "exp": exp}),
    )?;
    send_as(&stack.base_url(0), &with_tid, &room, "tid").await?.expect(StatusCode::CREATED)?;

    // Tokens minted by POST /tokens still work beside them.
    let minted = t.user("hana").post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    send_as(&stack.base_url(0), minted.str("token")?, &room, "minted").await?.expect(StatusCode::CREATED)?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_expired_and_confused_tokens_are_refused() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "jwt", "rate_limit_per_sec": 100_000})).await?;
    let other = stack.tenant().await?;
    let keys = KeyDir::new()?;
    let (rsa, rsa_other, ec) = (keys.pair("rsa")?, keys.pair("rsa")?, keys.pair("ec")?);
    let (iss_hs, iss_rs, iss_es) = (issuer("hs"), issuer("rs"), issuer("es"));
    let secret = "an-hs256-secret-of-at-least-32-bytes!";
    let settings = json!({"jwt": {"issuers": [
        {"issuer": iss_hs, "algorithm": "HS256", "secret": secret, "audience": "chat"},
        {"issuer": iss_rs, "algorithm": "RS256", "public_key_pem": rsa.public},
        {"issuer": iss_es, "algorithm": "ES256", "public_key_pem": ec.public},
    ]}});
    put_settings(&t, &stack.base_url(0), settings).await?.expect(StatusCode::OK)?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let exp = now() + 600;
    let rs_key = rsa.encoding(Algorithm::RS256)?;
    let good = sign(Algorithm::RS256, &rs_key, None, &json!({"iss": iss_rs, "sub": "bob", "exp": exp}))?;
    send_as(&stack.base_url(0), &good, &room, "ok").await?.expect(StatusCode::CREATED)?;
    // The same token on rest-chat.md's routes: bob reads what he sent.
    let listed = chat_messages(&stack.base_url(0), &good, &room).await?.expect(StatusCode::OK)?;
    assert_eq!(listed.body["data"]["messages"][0]["content"], "ok", "{}", listed.body);

    let hs_claims = |extra: Value| {
        let mut c = json!({"iss": iss_hs, "sub": "bob", "aud": "chat", "exp": exp});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        c
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "forged HS256",
            sign(Algorithm::HS256, &hs("another-secret-also-of-32-bytes-or-more")?, None, &hs_claims(json!({})))?,
        ),
        (
            "forged RS256",
            sign(
                Algorithm::RS256,
                &rsa_other.encoding(Algorithm::RS256)?,
                None,
                &json!({"iss": iss_rs, "sub": "bob", "exp": exp}),
            )?,
        ),
        ("expired", sign(Algorithm::HS256, &hs(secret)?, None, &hs_claims(json!({"exp": now() - 600})))?),
        ("not yet valid", sign(Algorithm::HS256, &hs(secret)?, None, &hs_claims(json!({"nbf": now() + 600})))?),
        ("no exp", sign(Algorithm::RS256, &rs_key, None, &json!({"iss": iss_rs, "sub": "bob"}))?),
        ("wrong audience", sign(Algorithm::HS256, &hs(secret)?, None, &hs_claims(json!({"aud": "billing"})))?),
        ("no audience", {
            let mut c = hs_claims(json!({}));
            c.as_object_mut().map(|c| c.remove("aud"));
            sign(Algorithm::HS256, &hs(secret)?, None, &c)?
        }),
        (
            "unregistered issuer",
            sign(Algorithm::HS256, &hs(secret)?, None, &hs_claims(json!({"iss": issuer("nobody")})))?,
        ),
        (
            "issuer of another tenant than tid's",
            sign(Algorithm::HS256, &hs(secret)?, None, &hs_claims(json!({"tid": other.id})))?,
        ),
        ("user id claim missing", sign(Algorithm::RS256, &rs_key, None, &json!({"iss": iss_rs, "exp": exp}))?),
        (
            "user id not a valid id",
            sign(Algorithm::RS256, &rs_key, None, &json!({"iss": iss_rs, "sub": "a.b", "exp": exp}))?,
        ),
        // HS256 "signed" with the RS256 issuer's public key: the classic confusion.
        (
            "HS256 with the public key",
            sign(Algorithm::HS256, &hs(&rsa.public)?, None, &json!({"iss": iss_rs, "sub": "bob", "exp": exp}))?,
        ),
        (
            "RS256 for an ES256 issuer",
            sign(Algorithm::RS256, &rs_key, None, &json!({"iss": iss_es, "sub": "bob", "exp": exp}))?,
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (why, token) in &cases {
        refused(&stack, &room, token, why).await?;
    }
    // `alg: none`, unsigned.
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"iss": iss_rs, "sub": "bob", "exp": exp}))
    );
    refused(&stack, &room, &none, "alg none").await?;
    // A valid signature over a header that claims `none` is still refused.
    let none_signed = {
        let good_parts: Vec<&str> = good.split('.').collect();
        format!("{}.{}.{}", b64(&json!({"alg": "none"})), good_parts[1], good_parts[2])
    };
    refused(&stack, &room, &none_signed, "alg none with a signature").await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_round_trip_and_validation() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let base = stack.base_url(0);
    let tenant = Client::raw(&base).with_header("X-API-Key", &t.api_key);
    let keys = KeyDir::new()?;
    let rsa = keys.pair("rsa")?;

    // Defaults.
    let got = tenant.get("/settings").await?.expect(StatusCode::OK)?;
    assert_eq!(got.body["edit_window_secs"], 900);
    assert_eq!(got.body["upload_max_bytes"], 10_485_760);
    assert_eq!(got.body["jwt"], json!({"issuers": []}));
    let types = got.body["upload_allowed_types"].as_array().cloned().unwrap_or_default();
    for t in ["image/png", "image/jpeg", "application/pdf", "text/plain", "application/zip"] {
        assert!(types.contains(&json!(t)), "{t} allowed by default");
    }

    // A whole document, read back as written — without the secret.
    let (iss_hs, iss_rs) = (issuer("hs"), issuer("rs"));
    let secret = "an-hs256-secret-of-at-least-32-bytes!";
    let doc = json!({
        "jwt": {"issuers": [
            {"issuer": iss_hs, "algorithm": "HS256", "secret": secret, "audience": "chat"},
            {"issuer": iss_rs, "algorithm": "RS256", "public_key_pem": rsa.public, "user_id_claim": "uid"},
        ]},
        "edit_window_secs": 60,
        "upload_max_bytes": 2048,
        "upload_allowed_types": ["image/png", "Application/PDF"],
    });
    let put = put_settings(&t, &base, doc).await?.expect(StatusCode::OK)?;
    let shown = json!({
        "jwt": {"issuers": [
            {"issuer": iss_hs, "algorithm": "HS256", "audience": "chat", "user_id_claim": "sub", "secret_set": true},
            {"issuer": iss_rs, "algorithm": "RS256", "public_key_pem": rsa.public, "user_id_claim": "uid"},
        ]},
        "edit_window_secs": 60,
        "upload_max_bytes": 2048,
        "upload_allowed_types": ["image/png", "application/pdf"],
        "search_language": "simple",
    });
    assert_eq!(put.body, shown);
    assert_eq!(tenant.get("/settings").await?.expect(StatusCode::OK)?.body, shown);
    let admin_view =
        stack.admin(Method::GET, &format!("/admin/tenants/{}", t.id), None).await?.expect(StatusCode::OK)?;
    assert_eq!(admin_view.body["settings"], shown);
    assert!(!admin_view.body.to_string().contains(secret), "the secret is never shown");

    // PATCH changes only the keys given.
    let patched = Client::raw(&base)
        .with_header("X-API-Key", &t.api_key)
        .request(Method::PATCH, "/settings")
        .json(&json!({"edit_window_secs": 120}))
        .send()
        .await?;
    let patched = chat_test_support::Response::from(patched).await?.expect(StatusCode::OK)?;
    assert_eq!(patched.body["edit_window_secs"], 120);
    assert_eq!(patched.body["jwt"], shown["jwt"]);

    // The read document written back keeps the stored secret: its tokens still verify.
    put_settings(&t, &base, shown.clone()).await?.expect(StatusCode::OK)?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let token = sign(
        Algorithm::HS256,
        &hs(secret)?,
        None,
        &json!({"iss": iss_hs, "sub": "bob", "aud": "chat", "exp": now() + 600}),
    )?;
    send_as(&base, &token, &room, "still mine").await?.expect(StatusCode::CREATED)?;

    // The operator sets them too, as `settings` of PATCH /admin/tenants/{id}.
    let res = stack
        .admin(
            Method::PATCH,
            &format!("/admin/tenants/{}", t.id),
            Some(json!({"settings": {"upload_max_bytes": 4096}})),
        )
        .await?
        .expect(StatusCode::OK)?;
    assert_eq!(res.body["settings"]["upload_max_bytes"], 4096);
    assert_eq!(res.body["settings"]["edit_window_secs"], 60, "PUT above reset the PATCHed window");
    assert_eq!(tenant.get("/settings").await?.body["upload_max_bytes"], 4096);

    // Bad documents: 400 naming the field, and nothing changes.
    let before = tenant.get("/settings").await?.body;
    let pem_issuer =
        |pem: &str| json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "RS256", "public_key_pem": pem}]}});
    let bad: Vec<(Value, &str)> = vec![
        (
            pem_issuer("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"),
            "jwt.issuers[0].public_key_pem",
        ),
        (pem_issuer("hello"), "jwt.issuers[0].public_key_pem"),
        (
            json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "ES256", "public_key_pem": rsa.public}]}}),
            "jwt.issuers[0].public_key_pem",
        ),
        (
            json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "RS256", "jwks": {"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}}]}}),
            "jwt.issuers[0].jwks",
        ),
        (
            json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "RS256", "jwks": {"nope": 1}}]}}),
            "jwt.issuers[0].jwks",
        ),
        (
            json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "HS256", "secret": "short"}]}}),
            "jwt.issuers[0].secret",
        ),
        (json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "HS256"}]}}), "jwt.issuers[0].secret"),
        (
            json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "none", "secret": secret}]}}),
            "jwt.issuers[0].algorithm",
        ),
        (json!({"jwt": {"issuers": [{"algorithm": "HS256", "secret": secret}]}}), "jwt.issuers[0].issuer"),
        (json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "RS256"}]}}), "jwt.issuers[0].public_key_pem"),
        (
            json!({"jwt": {"issuers": [{"issuer": issuer("x"), "algorithm": "HS256", "secret": secret, "colour": 1}]}}),
            "jwt.issuers[0].colour",
        ),
        (json!({"edit_window_secs": -1}), "edit_window_secs"),
        (json!({"edit_window_secs": 100_000_000}), "edit_window_secs"),
        (json!({"upload_max_bytes": 0}), "upload_max_bytes"),
        (json!({"upload_allowed_types": ["image/png", "not a type"]}), "upload_allowed_types[1]"),
        (json!({"upload_allowed_types": "image/png"}), "upload_allowed_types"),
        (json!({"colour": "blue"}), "colour"),
    ];
    for (doc, field) in bad {
        put_settings(&t, &base, doc.clone())
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some(field))
            .map_err(|e| anyhow::anyhow!("{doc}: {e}"))?;
    }
    stack
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(json!({"settings": pem_issuer("hello")})))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("settings.jwt.issuers[0].public_key_pem"))?;
    stack
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(json!({"settings": {"upload_max_bytes": 0}})))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("settings.upload_max_bytes"))?;
    assert_eq!(tenant.get("/settings").await?.body, before, "refused writes change nothing");

    // An issuer belongs to one tenant.
    let other = stack.tenant().await?;
    put_settings(
        &other,
        &base,
        json!({"jwt": {"issuers": [{"issuer": iss_hs, "algorithm": "HS256", "secret": secret}]}}),
    )
    .await?
    .expect_error(StatusCode::CONFLICT, "CONFLICT", None)?;
    send_as(&base, &token, &room, "still t's").await?.expect(StatusCode::CREATED)?;
    // Two tenants racing for a new issuer: exactly one gets it.
    let (a, b) = (stack.tenant().await?, stack.tenant().await?);
    let contested = json!({"jwt": {"issuers": [{"issuer": issuer("race"), "algorithm": "HS256", "secret": secret}]}});
    let (ra, rb) = tokio::join!(put_settings(&a, &base, contested.clone()), put_settings(&b, &base, contested));
    let mut statuses = [ra?.status, rb?.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);

    // Settings take the API key: no key, or a user token, is 401.
    Client::raw(&base).get("/settings").await?.expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)?;
    Client::raw(&base).with_header("X-API-Key", &token).get("/settings").await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "AUTHENTICATION_ERROR",
        None,
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_changes_reach_every_gateway_at_once() -> anyhow::Result<()> {
    // Caches that would outlive the test: only invalidation can explain a change seen.
    let stack = TestStack::builder()
        .gateways(2)
        .gateway_config(|c| c.auth_cache_ttl = Duration::from_secs(3600))
        .start()
        .await?;
    let t = stack.tenant_with(json!({"name": "jwt", "rate_limit_per_sec": 100_000})).await?;
    let keys = KeyDir::new()?;
    let (first, second) = (keys.pair("rsa")?, keys.pair("rsa")?);
    let iss = issuer("rot");
    let register =
        |pem: &str| json!({"jwt": {"issuers": [{"issuer": iss, "algorithm": "RS256", "public_key_pem": pem}]}});
    put_settings(&t, &stack.base_url(0), register(&first.public)).await?.expect(StatusCode::OK)?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let claims = json!({"iss": iss, "sub": "bob", "exp": now() + 600});
    let old = sign(Algorithm::RS256, &first.encoding(Algorithm::RS256)?, None, &claims)?;
    let new = sign(Algorithm::RS256, &second.encoding(Algorithm::RS256)?, None, &claims)?;
    // Both gateways cache the issuer, its tenant and its key.
    for i in 0..2 {
        send_as(&stack.base_url(i), &old, &room, "before").await?.expect(StatusCode::CREATED)?;
        send_as(&stack.base_url(i), &new, &room, "x").await?.expect(StatusCode::UNAUTHORIZED)?;
    }

    // The tenant rotates its auth server's key through gateway 1.
    put_settings(&t, &stack.base_url(1), register(&second.public)).await?.expect(StatusCode::OK)?;
    send_as(&stack.base_url(1), &old, &room, "x").await?.expect(StatusCode::UNAUTHORIZED)?;
    send_as(&stack.base_url(1), &new, &room, "after").await?.expect(StatusCode::CREATED)?;
    let base0 = stack.base_url(0);
    eventually("gateway 0 to use the new key", || {
        let (base0, room, new) = (base0.clone(), room.clone(), new.clone());
        async move { Ok(send_as(&base0, &new, &room, "after").await?.status == StatusCode::CREATED) }
    })
    .await?;
    send_as(&base0, &old, &room, "x").await?.expect(StatusCode::UNAUTHORIZED)?;

    // The operator removes the issuer: its tokens stop working everywhere.
    stack
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(json!({"settings": {"jwt": null}})))
        .await?
        .expect(StatusCode::OK)?;
    for i in 0..2 {
        let base = stack.base_url(i);
        eventually("the removed issuer's tokens to be refused", || {
            let (base, room, new) = (base.clone(), room.clone(), new.clone());
            async move { Ok(send_as(&base, &new, &room, "x").await?.status == StatusCode::UNAUTHORIZED) }
        })
        .await?;
    }
    // And another tenant may now register it.
    let other = stack.tenant().await?;
    put_settings(&other, &stack.base_url(0), register(&second.public)).await?.expect(StatusCode::OK)?;
    stack.stop().await
}
