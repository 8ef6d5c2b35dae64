//! PostgreSQL with a streaming standby. With synchronous replication, killing the
//! primary and promoting the standby loses no acknowledged message, and the services
//! (whose `DATABASE_URL` lists both hosts with `target_session_attrs=read-write`) find
//! the new primary without a restart. Reads that a standby may serve go there only
//! when it has replayed everything the caller may have seen: with replay paused, a
//! read right after a write still shows the write (from the primary).

use std::time::Instant;

use chat_test_support::Endpoints;
use chat_test_support::TestStack;
use chat_test_support::cluster::postgres::PgPair;
use chat_test_support::eventually_within;

use super::{check_history, history, metric, send_acked};

fn on(pg: &PgPair, standby_reads: bool) -> Endpoints {
    let clusters = message_store::Clusters {
        read_url: standby_reads.then(|| pg.read_url()),
        ..message_store::Clusters::default()
    };
    Endpoints { database: pg.url(), clusters, ..Endpoints::local() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promoted_synchronous_standby_has_every_acknowledged_message() -> anyhow::Result<()> {
    let mut pg = PgPair::start(true).await?;
    let stack = TestStack::builder().message_stores(2).on(on(&pg, true)).start().await?;
    let t = stack.tenant().await?;
    let alice = [t.user("alice")];
    let room = alice[0].create_room("group", &["bob"]).await?;
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(send_acked(&alice, &room, &format!("before-{i}"), &format!("before {i}")).await?.0);
    }

    // Sends keep going while the primary dies and the standby is promoted, and for a
    // second after.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sending = tokio::spawn({
        let (alice, room) = (alice.clone(), room.clone());
        async move {
            let mut out = Vec::new();
            for i in 0.. {
                if *stopped.borrow() {
                    break;
                }
                out.push(send_acked(&alice, &room, &format!("during-{i}"), &format!("during {i}")).await?);
            }
            anyhow::Ok(out)
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let killed = Instant::now();
    pg.kill_primary();
    pg.promote().await?;
    let promoted = killed.elapsed();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let during = sending.await??;
    let failed: u32 = during.iter().map(|(_, f)| f).sum();
    let sent_during = during.len();
    acked.extend(during.into_iter().map(|(a, _)| a));
    // And after, on the new primary, through the same services.
    for i in 0..5 {
        acked.push(send_acked(&alice, &room, &format!("after-{i}"), &format!("after {i}")).await?.0);
    }
    let found = history(&alice[0], &room).await?;
    check_history(&found, &acked)?;
    assert_eq!(found.len(), acked.len(), "history has exactly the acknowledged sends");
    println!(
        "primary killed; standby promoted {promoted:?} later; {sent_during} sends acknowledged meanwhile, \
         {failed} attempts failed and were retried"
    );
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_read_never_shows_less_than_the_caller_has_seen() -> anyhow::Result<()> {
    let pg = PgPair::start(false).await?;
    let stack = TestStack::builder().without_notification().without_presence().on(on(&pg, true)).start().await?;
    let store_ops = stack.ops_ports.iter().find(|(s, _)| *s == "message-store").map(|(_, p)| *p);
    let store_ops = store_ops.ok_or_else(|| anyhow::anyhow!("message-store has no ops port"))?;
    let reads = |outcome: &'static str| async move {
        metric(store_ops, "chat_pg_standby_reads_total", &format!("outcome=\"{outcome}\"")).await
    };
    let t = stack.tenant().await?;
    let alice = [t.user("alice")];
    let room = alice[0].create_room("group", &["bob"]).await?;
    let mut acked = vec![send_acked(&alice, &room, "m1", "one").await?.0];

    // The standby stops applying WAL: everything written from now on is missing there.
    pg.pause_replay().await?;
    let behind_before = reads("behind").await?;
    for i in 2..=6 {
        acked.push(send_acked(&alice, &room, &format!("m{i}"), &format!("message {i}")).await?.0);
        // Read right after each acknowledged write: it must be there.
        let h = history(&alice[0], &room).await?;
        check_history(&h, &acked)?;
        assert_eq!(h.len(), acked.len(), "a read after a write shows it");
        // Bob, who was told of it (or could have been), sees it too.
        let bob = t.user("bob").get(&format!("/rooms/{room}/messages?after_seq=0")).await?;
        assert_eq!(bob.body.as_array().map(Vec::len), Some(acked.len()), "{bob:?}");
    }
    assert!(reads("behind").await? > behind_before, "reads went to the primary while the standby was behind");

    // Replay again: reads go to the standby once it has caught up, still complete.
    pg.resume_replay().await?;
    let standby_before = reads("standby").await?;
    eventually_within("a read served by the standby", 60, || async {
        let h = history(&alice[0], &room).await?;
        check_history(&h, &acked)?;
        Ok(reads("standby").await? > standby_before)
    })
    .await?;
    stack.stop().await
}
