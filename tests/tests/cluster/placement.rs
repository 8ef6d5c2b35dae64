//! Tenants on two PostgreSQL clusters: one placed by default on the home cluster,
//! one created on the second by name, work side by side (their rows on their own
//! servers); then the first is moved to the second cluster and back while its users
//! keep sending (503s during the copy are retried) and a socket keeps reading: every
//! acknowledged message is there afterwards with the same id and seq, once, and the
//! room goes on from the next seq.

use std::time::Duration;

use chat_domain::ids::TenantId;
use chat_domain::proto::store::{CreateTenant, CreateTenantOn, ListClusters, MoveTenant};
use chat_test_support::Endpoints;
use chat_test_support::cluster::postgres::{PgServer, count};
use chat_test_support::{Client, TestStack, tenant_prefix, unique};
use message_store::{ClusterSettings, Clusters, Placement};
use reqwest::StatusCode;

use super::{Reader, check_history, history, send_acked};

async fn rows(server: &PgServer, table: &str, tenant: &str) -> anyhow::Result<i64> {
    let sql = match table {
        "rooms" => format!("SELECT count(*) AS n FROM rooms WHERE tenant_id = '{tenant}'"),
        "messages" => format!(
            "SELECT count(*) AS n FROM messages m JOIN rooms r ON r.id = m.room_id WHERE r.tenant_id = '{tenant}'"
        ),
        // Messages with the search vector and keys of their text, as the insert trigger
        // computes them on arrival (a move copies them without; migration 0100).
        "searchable messages" => format!(
            "SELECT count(*) AS n FROM messages m JOIN rooms r ON r.id = m.room_id
              JOIN tenant_residency tr ON tr.tenant_id = r.tenant_id
             WHERE r.tenant_id = '{tenant}' AND m.tsv = to_tsvector(tr.search_lang, m.content)
               AND m.search_keys = chat_search_keys(m.room_id, m.tsv)"
        ),
        "user_blocks" => format!("SELECT count(*) AS n FROM user_blocks WHERE tenant_id = '{tenant}'"),
        "message_reactions" => format!("SELECT count(*) AS n FROM message_reactions WHERE tenant_id = '{tenant}'"),
        "message_pins" => format!("SELECT count(*) AS n FROM message_pins WHERE tenant_id = '{tenant}'"),
        "room_mutes" | "moderation_log" => format!("SELECT count(*) AS n FROM {table} WHERE tenant_id = '{tenant}'"),
        other => anyhow::bail!("no count for {other}"),
    };
    count(server.node.port, &sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_live_on_two_clusters_and_one_moves_there_and_back_losing_nothing() -> anyhow::Result<()> {
    let (pg1, pg2) = tokio::try_join!(PgServer::start(), PgServer::start())?;
    let clusters = Clusters {
        read_url: None,
        more: vec![ClusterSettings { name: "pg2".to_owned(), url: pg2.url(), read_url: None }],
        placement: Placement::Cluster("main".to_owned()),
    };
    let ends = Endpoints { database: pg1.url(), clusters, ..Endpoints::local() };
    let stack = TestStack::builder().gateways(2).message_stores(2).on(ends).start().await?;
    let bus = stack.bus.with_timeout(Duration::from_secs(300));

    // One tenant where TENANT_PLACEMENT puts it (main), one on pg2 by name.
    let a = stack.tenant().await?;
    let b_id = TenantId::parse(unique(&tenant_prefix(&stack.prefix)))?;
    let create = CreateTenant { name: "on pg2".to_owned(), tenant_id: Some(b_id.clone()), rate_limit_per_sec: None };
    let b = bus.request(&CreateTenantOn { tenant: create, cluster: "pg2".to_owned() }).await?;
    assert_eq!((a.id.as_str(), b.tenant.cluster.as_str()), (a.id.as_str(), "pg2"));
    let listed = bus.request(&ListClusters {}).await?;
    let names: Vec<(&str, bool)> = listed.iter().map(|c| (c.name.as_str(), c.home)).collect();
    assert_eq!(names, [("main", true), ("pg2", false)]);

    let b_user =
        |u: &str| Client::raw(&stack.base_url(0)).with_header("X-API-Key", &b.api_key).with_header("X-User-Id", u);
    let alice = [a.user_on(0, "alice"), a.user_on(1, "alice")];
    let room_a = alice[0].create_room("group", &["bob"]).await?;
    // A block, which must move with the tenant: carol's DM sends to alice stay refused.
    let block = alice[0].request(reqwest::Method::PUT, "/blocks/carol").send().await?;
    chat_test_support::Response::from(block).await?.expect(StatusCode::OK)?;
    // A mute (and its moderation log row), which must move too.
    let mute = alice[0].post(&format!("/rooms/{room_a}/mutes"), serde_json::json!({"user_id": "bob"})).await?;
    mute.expect(StatusCode::CREATED)?;
    let room_b = b_user("zoe").create_room("group", &["yann"]).await?;
    let (mut acked_a, mut acked_b) = (Vec::new(), Vec::new());
    for i in 0..10 {
        acked_a.push(send_acked(&alice, &room_a, &format!("a-{i}"), &format!("a {i}")).await?.0);
        acked_b.push(send_acked(&[b_user("zoe")], &room_b, &format!("b-{i}"), &format!("b {i}")).await?.0);
    }
    assert_eq!((rows(&pg1, "rooms", &a.id).await?, rows(&pg2, "rooms", &a.id).await?), (1, 0));
    assert_eq!((rows(&pg1, "rooms", b_id.as_str()).await?, rows(&pg2, "rooms", b_id.as_str()).await?), (0, 1));
    assert_eq!(rows(&pg2, "messages", b_id.as_str()).await?, 10);
    // A reaction and a pin on alice's first message, which must move with it.
    let first = alice[0].get(&format!("/rooms/{room_a}/messages?limit=1")).await?.expect(StatusCode::OK)?.body;
    let first = first[0]["message_id"].as_str().unwrap_or_default().to_owned();
    for path in
        [format!("/rooms/{room_a}/messages/{first}/reactions/%F0%9F%91%8D"), format!("/rooms/{room_a}/pins/{first}")]
    {
        let res = alice[0].request(reqwest::Method::PUT, &path).send().await?;
        anyhow::ensure!(res.status().is_success(), "PUT {path}: {}", res.status());
    }

    // Move a to pg2 and back, while alice keeps sending and bob's socket reads.
    let ws = |i: usize| format!("{}/ws/{room_a}?token={}&user_id=bob", stack.ws_url(i), a.api_key);
    let mut reader = Reader::new(vec![ws(1), ws(0)]);
    reader.read_until(10).await?;
    for (to, there, away) in [("pg2", &pg2, &pg1), ("main", &pg1, &pg2)] {
        let sending = tokio::spawn({
            let (alice, room, to) = (alice.clone(), room_a.clone(), to.to_owned());
            async move {
                let mut out = Vec::new();
                for i in 0..15 {
                    out.push(send_acked(&alice, &room, &format!("to-{to}-{i}"), &format!("to {to} {i}")).await?);
                }
                anyhow::Ok(out)
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tenant = TenantId::parse(a.id.clone())?;
        let moved = bus.request(&MoveTenant { tenant_id: tenant, to: to.to_owned() }).await?;
        assert_eq!((moved.to.as_str(), moved.rooms), (to, 1), "{moved:?}");
        let during = sending.await??;
        let retried: u32 = during.iter().map(|(_, f)| f).sum();
        acked_a.extend(during.into_iter().map(|(m, _)| m));
        check_history(&history(&alice[1], &room_a).await?, &acked_a)?;
        assert_eq!(rows(there, "rooms", &a.id).await?, 1, "the room is on {to}");
        assert_eq!(rows(away, "rooms", &a.id).await?, 0, "nothing is left behind");
        assert_eq!(rows(there, "messages", &a.id).await?, acked_a.len() as i64);
        assert_eq!(
            rows(there, "searchable messages", &a.id).await?,
            acked_a.len() as i64,
            "moved messages are searchable"
        );
        assert_eq!((rows(there, "user_blocks", &a.id).await?, rows(away, "user_blocks", &a.id).await?), (1, 0));
        let blocks = alice[1].get("/blocks").await?.expect(StatusCode::OK)?.body;
        assert_eq!(blocks["blocks"][0]["user_id"], "carol", "alice's block moved with her: {blocks}");
        for table in ["message_reactions", "message_pins"] {
            assert_eq!((rows(there, table, &a.id).await?, rows(away, table, &a.id).await?), (1, 0), "{table}");
        }
        let page = alice[1].get(&format!("/rooms/{room_a}/messages?limit=1")).await?.expect(StatusCode::OK)?.body;
        assert_eq!(page[0]["reactions"][0]["count"], 1, "the reaction moved: {page}");
        assert_eq!(page[0]["pinned_by"], "alice", "the pin moved: {page}");
        assert_eq!((rows(there, "room_mutes", &a.id).await?, rows(away, "room_mutes", &a.id).await?), (1, 0));
        assert_eq!((rows(there, "moderation_log", &a.id).await?, rows(away, "moderation_log", &a.id).await?), (1, 0));
        let mutes = alice[1].get(&format!("/rooms/{room_a}/mutes")).await?.expect(StatusCode::OK)?.body;
        assert_eq!(mutes["items"][0]["user_id"], "bob", "the mute moved with the room: {mutes}");
        // The member count moved as it was (alice and bob), not counted again on arrival.
        let room = alice[1].get(&format!("/rooms/{room_a}")).await?.expect(StatusCode::OK)?.body;
        assert_eq!(room["member_count"], 2, "the member count moved: {room}");
        let shown = stack.admin(reqwest::Method::GET, &format!("/admin/tenants/{}", a.id), None).await?;
        assert_eq!(shown.expect(StatusCode::OK)?.body["cluster"], to);
        println!(
            "moved to {to}: {} rooms, {} messages, {} members, {} cursors; unavailable {} ms; {retried} sends retried",
            moved.rooms, moved.messages, moved.members, moved.cursors, moved.unavailable_ms
        );
    }
    // The room goes on from the next seq; the socket saw every one exactly once.
    let next = send_acked(&alice, &room_a, "last", "last").await?.0;
    assert_eq!(next.seq, acked_a.len() as i64 + 1);
    acked_a.push(next);
    reader.read_until(acked_a.len() as i64).await?;
    check_history(&history(&alice[0], &room_a).await?, &acked_a)?;
    // The other tenant was never disturbed.
    check_history(&history(&b_user("yann"), &room_b).await?, &acked_b)?;
    stack.stop().await
}
