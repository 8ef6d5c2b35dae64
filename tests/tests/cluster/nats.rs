//! A three-node NATS cluster loses the node that message-store's and a gateway's
//! connections are on: every service reconnects to another node by itself (one
//! `NATS_URL` listing the three), sends go on, the socket reading the room sees every
//! seq once, and the notification streams are kept on three nodes (R3).

use std::time::Instant;

use chat_test_support::Endpoints;
use chat_test_support::TestStack;
use chat_test_support::cluster::nats::{NatsCluster, stream_replicas};
use chat_test_support::eventually_within;

use super::{Reader, check_history, history, send_acked};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_ride_the_loss_of_a_nats_node() -> anyhow::Result<()> {
    let mut nats = NatsCluster::start(3).await?;
    let ends = Endpoints { nats: nats.url(), stream_replicas: 3, ..Endpoints::local() };
    let stack = TestStack::builder().gateways(2).message_stores(2).on(ends).start().await?;

    // The notification streams exist once notification runs: three copies, all current.
    let js_streams = [stack.bus.subjects().deliveries_stream(), stack.bus.subjects().dead_letter_stream()];
    for s in &js_streams {
        eventually_within(&format!("stream {s} on three nodes"), 120, || async {
            Ok(stream_replicas(stack.bus.client(), s).await? == (3, 3))
        })
        .await?;
    }

    let t = stack.tenant().await?;
    let senders = [t.user_on(0, "alice"), t.user_on(1, "alice")];
    let room = senders[0].create_room("group", &["bob"]).await?;
    let ws = |i: usize| format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(i), t.api_key);
    let mut reader = Reader::new(vec![ws(1), ws(0)]);
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(send_acked(&senders, &room, &format!("before-{i}"), &format!("before {i}")).await?.0);
    }
    reader.read_until(10).await?;

    // The node the most services are on: message-store's connections first.
    let mut victim = None;
    for name in ["message-store", "gateway", "presence", "notification"] {
        if let Some(i) = nats.node_of(name).await? {
            victim = Some(i);
            break;
        }
    }
    let victim = victim.ok_or_else(|| anyhow::anyhow!("no service connection found on any node"))?;
    let killed = Instant::now();
    nats.kill(victim);

    let mut failed_attempts = 0;
    let mut first_ok = None;
    for i in 0..30 {
        let (a, failed) = send_acked(&senders, &room, &format!("after-{i}"), &format!("after {i}")).await?;
        failed_attempts += failed;
        first_ok.get_or_insert(killed.elapsed());
        acked.push(a);
    }
    reader.read_until(40).await?;
    check_history(&history(&senders[1], &room).await?, &acked)?;
    // The streams keep working on the two nodes left (a quorum of three); their info
    // answers once a stream whose leader was on the lost node has elected another.
    for s in &js_streams {
        eventually_within(&format!("stream {s} to answer from two current copies"), 120, || async {
            let (configured, current) = stream_replicas(stack.bus.client(), s).await?;
            anyhow::ensure!(configured == 3, "{s} is configured with {configured} copies");
            Ok(current >= 2)
        })
        .await?;
    }
    println!(
        "NATS node {} killed: first send acknowledged {:?} later, {failed_attempts} failed attempts, socket reconnects {}",
        nats.nodes[victim].name,
        first_ok.unwrap_or_default(),
        reader.reconnects
    );
    stack.stop().await
}
