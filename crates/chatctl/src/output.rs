//! How replies look on a terminal: aligned tables for lists, `key: value` lines for
//! one record. Pure functions from replies to text, so they are tested without NATS.

use chat_domain::model::Tenant;
use chat_domain::proto::Service;
use chat_domain::proto::health::ServiceHealth;
use chat_domain::proto::notify::DeadLetters;
use chat_domain::proto::store::{ClusterInfo, TenantMoved};
use chat_domain::{ApiError, time};

/// Columns separated by two spaces, padded to the widest cell; the last column is
/// not padded, so lines carry no trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:"))).collect()
}

/// A value from the wire made safe for one terminal cell: control characters (a
/// newline in a tenant's name) are escaped instead of breaking the layout.
pub fn cell(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn key_prefixes(t: &Tenant) -> String {
    if t.api_key_prefixes.is_empty() { "-".to_owned() } else { t.api_key_prefixes.join(",") }
}

pub fn tenant_table(tenants: &[Tenant]) -> String {
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.tenant_id.to_string(),
                cell(&t.name),
                t.rate_limit_per_sec.to_string(),
                key_prefixes(t),
                cell(&t.cluster),
                time::format(&t.created_at),
            ]
        })
        .collect();
    table(&["TENANT_ID", "NAME", "RATE/S", "KEYS", "CLUSTER", "CREATED_AT"], &rows)
}

pub fn tenant(t: &Tenant) -> String {
    fields(&[
        ("tenant_id", t.tenant_id.to_string()),
        ("name", cell(&t.name)),
        ("rate_limit_per_sec", t.rate_limit_per_sec.to_string()),
        ("api_key_prefixes", key_prefixes(t)),
        ("webhook_url", t.webhook_url.as_deref().map_or_else(|| "-".to_owned(), cell)),
        ("webhook_secret_set", t.webhook_secret_set.to_string()),
        ("retry", format!("{} attempts, backoff {} ms", t.retry.max_attempts, t.retry.backoff_ms)),
        ("cluster", cell(&t.cluster)),
        ("created_at", time::format(&t.created_at)),
    ])
}

/// The PostgreSQL clusters, the home one first.
pub fn cluster_table(clusters: &[ClusterInfo]) -> String {
    let yes = |b: bool| if b { "yes" } else { "-" }.to_owned();
    let rows: Vec<Vec<String>> = clusters
        .iter()
        .map(|c| {
            vec![
                cell(&c.name),
                yes(c.home),
                c.tenants.to_string(),
                yes(c.standby_reads),
                yes(c.default_for_new_tenants),
            ]
        })
        .collect();
    table(&["CLUSTER", "HOME", "TENANTS", "STANDBY_READS", "NEW_TENANTS"], &rows)
}

/// What a tenant move copied.
pub fn moved(m: &TenantMoved) -> String {
    fields(&[
        ("tenant_id", m.tenant_id.to_string()),
        ("from", cell(&m.from)),
        ("to", cell(&m.to)),
        ("rooms", m.rooms.to_string()),
        ("members", m.members.to_string()),
        ("messages", m.messages.to_string()),
        ("cursors", m.cursors.to_string()),
        ("users", m.users.to_string()),
        ("unavailable_ms", m.unavailable_ms.to_string()),
    ])
}

fn or_dash(s: Option<&str>) -> String {
    s.map_or_else(|| "-".to_owned(), cell)
}

/// Dead letters, missed messages first then notifications, each newest first: the
/// id to replay, what was being delivered to whom, and why it failed.
pub fn dead_letter_table(letters: &DeadLetters) -> String {
    let when = |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map_or_else(|| "-".to_owned(), time::format);
    let messages = letters.failed_messages.iter().map(|m| {
        vec![
            cell(&m.id),
            "message".to_owned(),
            cell(&m.message_id),
            cell(&m.user_id),
            or_dash(m.room_id.as_deref()),
            m.attempts.to_string(),
            when(&m.last_attempt_at),
            or_dash(m.error.as_deref()),
        ]
    });
    let notifications = letters.failed_notifications.iter().map(|n| {
        vec![
            cell(&n.id),
            "notification".to_owned(),
            cell(&n.notification_id),
            cell(&n.user_id),
            or_dash(n.topic.as_deref()),
            n.attempts.to_string(),
            when(&n.last_attempt_at),
            or_dash(n.error.as_deref()),
        ]
    });
    let rows: Vec<Vec<String>> = messages.chain(notifications).collect();
    table(&["ID", "KIND", "REF", "USER", "ROOM/TOPIC", "ATTEMPTS", "LAST_ATTEMPT_AT", "ERROR"], &rows)
}

/// One line per service: its status, which instance answered, and its checks, or why
/// it did not answer.
pub fn health_table(answers: &[(Service, Result<ServiceHealth, ApiError>)]) -> String {
    let rows: Vec<Vec<String>> = answers
        .iter()
        .map(|(service, answer)| match answer {
            Ok(h) => {
                let checks: Vec<String> =
                    h.checks.iter().map(|(k, ok)| format!("{}={}", cell(k), if *ok { "ok" } else { "FAIL" })).collect();
                vec![
                    service.name().to_owned(),
                    cell(&h.status),
                    cell(&h.instance),
                    time::human_duration(std::time::Duration::from_secs(h.uptime_secs)),
                    if checks.is_empty() { "-".to_owned() } else { checks.join(" ") },
                ]
            }
            Err(e) => vec![
                service.name().to_owned(),
                "down".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                format!("{}: {}", e.code, cell(&e.message)),
            ],
        })
        .collect();
    table(&["SERVICE", "STATUS", "INSTANCE", "UPTIME", "CHECKS"], &rows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chat_domain::ids::TenantId;

    use super::*;

    fn acme() -> Result<Tenant, Box<dyn std::error::Error>> {
        Ok(Tenant {
            tenant_id: TenantId::parse("acme")?,
            name: "Acme\nCorp".to_owned(),
            rate_limit_per_sec: 100,
            api_key_prefixes: vec!["sk_0123456".to_owned(), "sk_abcdef0".to_owned()],
            webhook_url: None,
            webhook_secret_set: false,
            retry: chat_domain::model::RetryPolicy::default(),
            settings: Default::default(),
            cluster: "main".to_owned(),
            created_at: chrono::DateTime::from_timestamp_micros(1_765_627_200_123_456).unwrap_or_default(),
        })
    }

    #[test]
    fn tenants_are_an_aligned_table() -> Result<(), Box<dyn std::error::Error>> {
        let text = tenant_table(&[acme()?]);
        assert_eq!(
            text,
            "TENANT_ID  NAME        RATE/S  KEYS                   CLUSTER  CREATED_AT\n\
             acme       Acme\\nCorp  100     sk_0123456,sk_abcdef0  main     2025-12-13T12:00:00.123456Z\n"
        );
        Ok(())
    }

    #[test]
    fn clusters_are_a_table_with_the_home_one_marked() {
        let info = |name: &str, home: bool, tenants: u64| ClusterInfo {
            name: name.to_owned(),
            home,
            tenants,
            standby_reads: home,
            default_for_new_tenants: home,
        };
        assert_eq!(
            cluster_table(&[info("main", true, 12), info("pg2", false, 3)]),
            "CLUSTER  HOME  TENANTS  STANDBY_READS  NEW_TENANTS\n\
             main     yes   12       yes            yes\n\
             pg2      -     3        -              -\n"
        );
    }

    #[test]
    fn one_tenant_is_aligned_lines() -> Result<(), Box<dyn std::error::Error>> {
        let text = tenant(&acme()?);
        assert!(text.starts_with("tenant_id:          acme\nname:               Acme\\nCorp\n"), "{text}");
        Ok(())
    }

    #[test]
    fn dead_letters_are_one_table_of_both_kinds() {
        use chat_domain::proto::notify::{FailedMessage, FailedNotification};
        let at = chrono::DateTime::from_timestamp_micros(1_765_627_200_123_456);
        let letters = DeadLetters {
            failed_messages: vec![FailedMessage {
                id: "dlv_1".to_owned(),
                message_id: "msg_1".to_owned(),
                user_id: "bob".to_owned(),
                room_id: Some("room_1".to_owned()),
                attempts: 3,
                last_attempt_at: at,
                error: Some("HTTP 500".to_owned()),
            }],
            failed_notifications: vec![FailedNotification {
                id: "dlv_2".to_owned(),
                notification_id: "ntf_1".to_owned(),
                topic: None,
                user_id: "carol".to_owned(),
                attempts: 1,
                last_attempt_at: None,
                error: Some("connection\nrefused".to_owned()),
            }],
        };
        let text = dead_letter_table(&letters);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines.get(1).copied(),
            Some("dlv_1  message       msg_1  bob    room_1      3         2025-12-13T12:00:00.123456Z  HTTP 500")
        );
        assert_eq!(
            lines.get(2).copied(),
            Some(
                "dlv_2  notification  ntf_1  carol  -           1         -                            connection\\nrefused"
            )
        );
    }

    #[test]
    fn health_shows_down_services_with_their_error() {
        let up =
            ServiceHealth::new("message-store", "host-1/7", 61, BTreeMap::from([("db_writable".to_owned(), true)]));
        let text = health_table(&[
            (Service::MessageStore, Ok(up)),
            (Service::Presence, Err(ApiError::unavailable("presence is not running"))),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.get(1).copied(), Some("message-store  ok      host-1/7  1m1s    db_writable=ok"));
        assert_eq!(
            lines.get(2).copied(),
            Some("presence       down    -         -       SERVICE_UNAVAILABLE: presence is not running")
        );
    }
}
