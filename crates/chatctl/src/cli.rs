//! The command line: global flags, subcommands, and parsers that validate ids and
//! limits the way the gateway's admin API does, so a bad value is a usage error
//! (exit code 2) before anything is sent.

use chat_bus::Subjects;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::model::{validate_rate_limit, validate_webhook_secret, validate_webhook_url};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Default page size of `tenants list`, as on `GET /admin/tenants`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page `tenants list` asks for, as on `GET /admin/tenants`.
pub const MAX_LIMIT: u32 = 100;
/// Default number of dead letters listed, as on `GET /admin/dead-letters`.
pub const DEFAULT_DEAD_LETTERS: u32 = 50;
/// Most dead letters one listing reads, as on `GET /admin/dead-letters`.
pub const MAX_DEAD_LETTERS: u32 = 1000;
/// Longest user token `POST /tokens` mints, in seconds.
pub const MAX_TOKEN_TTL: u32 = 86_400;

/// Operate the chat backend over NATS: tenants, their API keys and webhooks, dead
/// letters, service health; and mint user tokens for trying the WebSocket.
///
/// Sends the same commands the gateway's admin API sends, straight to the services,
/// so it works with the gateway down and needs no admin key: access to NATS is the
/// credential. `chatctl token` is the exception: it asks a gateway (`POST /tokens`)
/// with a tenant's API key, as a tenant's own server would.
#[derive(Debug, Parser)]
#[command(name = "chatctl", version)]
pub struct Cli {
    /// NATS server to connect to.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222", global = true)]
    pub nats_url: String,

    /// First subject token, as the services were started with.
    #[arg(
        long,
        env = "CHAT_BUS_PREFIX",
        default_value = chat_bus::subjects::DEFAULT_PREFIX,
        value_parser = parse_prefix,
        global = true,
    )]
    pub bus_prefix: Subjects,

    /// Print the reply as JSON instead of lines or a table.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenants, their API keys, limits and webhooks.
    #[command(subcommand)]
    Tenants(Tenants),
    /// Webhook deliveries that ran out of attempts: list them, replay one.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
    /// Mint a user token with a tenant's API key (`POST /tokens` on a gateway) and
    /// print it, e.g. to open a WebSocket from a shell.
    Token(Token),
    /// Ask message-store, presence and notification how they are (exit code 1 unless
    /// all are ok).
    Health,
    /// The PostgreSQL clusters tenants can live on, with how many tenants each holds.
    Clusters,
}

#[derive(Debug, Subcommand)]
pub enum Tenants {
    /// Create a tenant and its first API key (shown only this once).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Tenant id (letters, digits, '_', '-'); generated when absent.
        #[arg(long, value_parser = parse_tenant_id)]
        id: Option<TenantId>,
        /// Requests per second (1 to 1000000); the service default when absent.
        #[arg(long, value_parser = parse_rate_limit)]
        rate_limit: Option<u32>,
        /// The PostgreSQL cluster for its rooms and messages (see `chatctl clusters`);
        /// message-store's TENANT_PLACEMENT decides when absent.
        #[arg(long, value_parser = parse_cluster)]
        cluster: Option<String>,
    },
    /// Move a tenant's rooms, members, messages, cursors and users to another
    /// PostgreSQL cluster. Nothing is lost and ids and seqs stay the same; the tenant's
    /// requests are refused with 503 (clients retry) while it runs. A move that fails
    /// leaves the tenant where it was, or, if the old cluster could not confirm the
    /// end, unavailable until the same move is run again (which finishes it).
    Move {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// The cluster to move it to.
        #[arg(long, value_parser = parse_cluster)]
        to: String,
    },
    /// List tenants, oldest first.
    List(Page),
    /// Show one tenant.
    Show {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
    },
    /// Change a tenant's name or rate limit.
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["name", "rate_limit"])))]
    Update {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New requests per second (1 to 1000000).
        #[arg(long, value_parser = parse_rate_limit)]
        rate_limit: Option<u32>,
    },
    /// Set or remove the tenant's webhook (where offline notifications are POSTed),
    /// its signing secret and its retry policy.
    #[command(group(ArgGroup::new("target").required(true).args(["url", "clear"])))]
    SetWebhook {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// The webhook URL (http:// or https://).
        #[arg(long, value_parser = parse_webhook_url)]
        url: Option<String>,
        /// Remove the webhook: offline items then stay in inboxes only.
        #[arg(long)]
        clear: bool,
        /// HMAC-SHA256 signing secret (16 to 256 characters); unchanged when absent.
        #[arg(long, env = "CHATCTL_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_webhook_secret)]
        secret: Option<String>,
        /// Tries per delivery before it becomes a dead letter (1 to 20).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
        max_attempts: Option<u32>,
        /// Wait before the first retry in ms, doubled each time (10 to 3600000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
        backoff_ms: Option<u64>,
    },
    /// Issue a new API key and revoke the tenant's previous ones.
    RotateKey {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
    },
    /// Delete a tenant and everything of it in every store (PostgreSQL, Redis, NATS,
    /// the attachments store); its sockets close. Asks a gateway
    /// (`DELETE /admin/tenants/{id}`), which owns the attachments store.
    Delete {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        #[command(flatten)]
        admin: AdminApi,
    },
    /// Erase one user's personal data: directory entry, memberships, cursors, inbox,
    /// subscriptions, deliveries, presence, attachments; their messages stay as empty
    /// tombstones from `~deleted`. Asks a gateway
    /// (`DELETE /admin/tenants/{id}/users/{user}`).
    EraseUser {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// The user to erase.
        #[arg(long, value_parser = parse_user_id)]
        user: UserId,
        #[command(flatten)]
        admin: AdminApi,
    },
}

/// The gateway's operator API, for the verbs that need a gateway.
#[derive(Debug, Args)]
pub struct AdminApi {
    /// The operator (admin) key.
    #[arg(long, env = "CHAT_ADMIN_API_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// The gateway to ask.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8000", value_parser = parse_gateway_url)]
    pub gateway_url: String,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// A tenant's dead letters, newest first.
    List {
        /// Whose dead letters.
        #[arg(long, value_parser = parse_tenant_id)]
        tenant: TenantId,
        /// How many of the newest to read (1 to 1000).
        #[arg(long, default_value_t = DEFAULT_DEAD_LETTERS, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEAD_LETTERS)))]
        limit: u32,
        /// Only this kind: missed messages or notifications.
        #[arg(long, value_enum)]
        kind: Option<DeadLetterKind>,
        /// Only deliveries to this user.
        #[arg(long, value_parser = parse_user_id)]
        user: Option<UserId>,
    },
    /// Deliver a dead letter again, with a fresh attempt budget.
    Replay {
        /// The dead letter's id (the ID column of `dead-letters list`).
        id: String,
    },
}

/// What a dead letter was delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeadLetterKind {
    /// Messages a member missed while offline.
    Message,
    /// A `POST /notify` notification.
    Notification,
}

/// `chatctl token`.
#[derive(Debug, Args)]
pub struct Token {
    /// The tenant's API key (sk_...).
    #[arg(long, env = "CHAT_API_KEY", hide_env_values = true)]
    pub tenant_key: String,
    /// The user the token is for.
    #[arg(long, value_parser = parse_user_id)]
    pub user: UserId,
    /// Lifetime in seconds (1 to 86400); the gateway's default (3600) when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TOKEN_TTL)))]
    pub ttl: Option<u32>,
    /// The gateway to ask.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8000", value_parser = parse_gateway_url)]
    pub gateway_url: String,
}

/// A page of a list.
#[derive(Debug, Args)]
pub struct Page {
    /// How many to show (1 to 100).
    #[arg(long, default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: u32,
    /// How many to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
}

fn parse_prefix(s: &str) -> Result<Subjects, String> {
    Subjects::new(s).map_err(|e| e.to_string())
}

fn parse_cluster(s: &str) -> Result<String, String> {
    chat_domain::model::validate_cluster_name("cluster", s).map(|()| s.to_owned()).map_err(|e| e.message)
}

fn parse_tenant_id(s: &str) -> Result<TenantId, String> {
    TenantId::parse(s).map_err(|e| format!("invalid tenant id: {e}"))
}

fn parse_user_id(s: &str) -> Result<UserId, String> {
    UserId::parse(s).map_err(|e| format!("invalid user id: {e}"))
}

fn parse_webhook_url(s: &str) -> Result<String, String> {
    validate_webhook_url(s).map(|()| s.to_owned()).map_err(|e| e.message)
}

fn parse_webhook_secret(s: &str) -> Result<String, String> {
    validate_webhook_secret(s).map(|()| s.to_owned()).map_err(|e| e.message)
}

fn parse_gateway_url(s: &str) -> Result<String, String> {
    let ok = s.strip_prefix("http://").is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if ok { Ok(s.trim_end_matches('/').to_owned()) } else { Err("the gateway URL must be http://host:port".to_owned()) }
}

fn parse_rate_limit(s: &str) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| "rate limit must be a whole number".to_owned())?;
    validate_rate_limit(n).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chatctl").chain(args.iter().copied()))
    }

    #[test]
    fn create_takes_name_id_and_rate_limit() -> Result<(), clap::Error> {
        let cli = parse(&["tenants", "create", "--name", "Acme", "--id", "acme", "--rate-limit", "10", "--json"])?;
        assert!(cli.json, "--json is global, so it may follow the subcommand");
        match cli.command {
            Command::Tenants(Tenants::Create { name, id, rate_limit, cluster }) => {
                assert_eq!(name, "Acme");
                assert_eq!(id.as_ref().map(TenantId::as_str), Some("acme"));
                assert_eq!(rate_limit, Some(10));
                assert_eq!(cluster, None);
            }
            other => panic!("parsed as {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn tenants_go_to_and_move_between_named_clusters() -> Result<(), clap::Error> {
        match parse(&["tenants", "create", "--name", "Acme", "--cluster", "pg2"])?.command {
            Command::Tenants(Tenants::Create { cluster, .. }) => assert_eq!(cluster.as_deref(), Some("pg2")),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["tenants", "move", "acme", "--to", "eu-west"])?.command {
            Command::Tenants(Tenants::Move { id, to }) => assert_eq!((id.as_str(), to.as_str()), ("acme", "eu-west")),
            other => panic!("parsed as {other:?}"),
        }
        for bad in [
            vec!["tenants", "move", "acme", "--to", "PG2"],
            vec!["tenants", "move", "acme"],
            vec!["tenants", "create", "--name", "x", "--cluster", "a b"],
        ] {
            let err = parse(&bad).err().map(|e| e.kind());
            assert!(
                matches!(err, Some(ErrorKind::ValueValidation | ErrorKind::MissingRequiredArgument)),
                "{bad:?}: {err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn global_flags_and_list_defaults() -> Result<(), clap::Error> {
        let cli = parse(&["--nats-url", "nats://10.0.0.1:4222", "--bus-prefix", "staging", "tenants", "list"])?;
        assert_eq!(cli.nats_url, "nats://10.0.0.1:4222");
        assert_eq!(cli.bus_prefix.prefix(), "staging");
        match cli.command {
            Command::Tenants(Tenants::List(page)) => assert_eq!((page.limit, page.offset), (DEFAULT_LIMIT, 0)),
            other => panic!("parsed as {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["tenants", "show", "a.b"][..],
            &["tenants", "create", "--name", "x", "--rate-limit", "0"],
            &["tenants", "create", "--name", "x", "--rate-limit", "lots"],
            &["tenants", "list", "--limit", "101"],
            &["--bus-prefix", "a.b", "health"],
            &["tenants", "update", "acme"],
            &["tenants", "create"],
            &["tenants"],
            &["tenants", "set-webhook", "acme"],
            &["tenants", "set-webhook", "acme", "--url", "ftp://x"],
            &["tenants", "set-webhook", "acme", "--url", "http://x", "--clear"],
            &["tenants", "set-webhook", "acme", "--url", "http://x", "--secret", "short"],
            &["tenants", "set-webhook", "acme", "--url", "http://x", "--max-attempts", "21"],
            &["tenants", "set-webhook", "acme", "--url", "http://x", "--backoff-ms", "9"],
            &["dead-letters", "list"],
            &["dead-letters", "list", "--tenant", "acme", "--limit", "1001"],
            &["dead-letters", "list", "--tenant", "acme", "--kind", "email"],
            &["dead-letters", "list", "--tenant", "acme", "--user", "a:b"],
            &["dead-letters", "replay"],
            &["token", "--tenant-key", "sk_x"],
            &["token", "--tenant-key", "sk_x", "--user", "a.b"],
            &["token", "--tenant-key", "sk_x", "--user", "alice", "--ttl", "86401"],
            &["token", "--tenant-key", "sk_x", "--user", "alice", "--gateway-url", "https://x"],
        ] {
            match parse(args) {
                Ok(cli) => panic!("{args:?} parsed as {cli:?}"),
                Err(e) => {
                    assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                    assert_ne!(e.kind(), ErrorKind::DisplayHelp);
                }
            }
        }
    }

    #[test]
    fn update_needs_one_change() -> Result<(), clap::Error> {
        let cli = parse(&["tenants", "update", "acme", "--rate-limit", "5"])?;
        match cli.command {
            Command::Tenants(Tenants::Update { id, name, rate_limit }) => {
                assert_eq!(id.as_str(), "acme");
                assert_eq!((name, rate_limit), (None, Some(5)));
            }
            other => panic!("parsed as {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn webhook_dead_letter_and_token_verbs_parse() -> Result<(), clap::Error> {
        let cli = parse(&[
            "tenants",
            "set-webhook",
            "acme",
            "--url",
            "https://hooks.example.com/chat",
            "--secret",
            "0123456789abcdef",
            "--max-attempts",
            "3",
        ])?;
        match cli.command {
            Command::Tenants(Tenants::SetWebhook { id, url, clear, secret, max_attempts, backoff_ms }) => {
                assert_eq!(id.as_str(), "acme");
                assert_eq!(url.as_deref(), Some("https://hooks.example.com/chat"));
                assert!(!clear);
                assert_eq!(secret.as_deref(), Some("0123456789abcdef"));
                assert_eq!((max_attempts, backoff_ms), (Some(3), None));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(&["dead-letters", "list", "--tenant", "acme", "--kind", "notification", "--user", "bob"])?;
        match cli.command {
            Command::DeadLetters(DeadLetters::List { tenant, limit, kind, user }) => {
                assert_eq!(tenant.as_str(), "acme");
                assert_eq!(limit, DEFAULT_DEAD_LETTERS);
                assert_eq!(kind, Some(DeadLetterKind::Notification));
                assert_eq!(user.as_ref().map(UserId::as_str), Some("bob"));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli =
            parse(&["token", "--tenant-key", "sk_x", "--user", "alice", "--gateway-url", "http://10.0.0.2:8000/"])?;
        match cli.command {
            Command::Token(t) => {
                assert_eq!((t.tenant_key.as_str(), t.user.as_str(), t.ttl), ("sk_x", "alice", None));
                assert_eq!(t.gateway_url, "http://10.0.0.2:8000");
            }
            other => panic!("parsed as {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn the_command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
