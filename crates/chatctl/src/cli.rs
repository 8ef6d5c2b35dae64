//! The command line: global flags, subcommands, and parsers that validate ids and
//! limits the way the gateway's admin API does, so a bad value is a usage error
//! (exit code 2) before anything is sent.

use chat_bus::Subjects;
use chat_domain::ids::TenantId;
use chat_domain::model::validate_rate_limit;
use clap::{ArgGroup, Args, Parser, Subcommand};

/// Default page size of `tenants list`, as on `GET /admin/tenants`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page `tenants list` asks for, as on `GET /admin/tenants`.
pub const MAX_LIMIT: u32 = 100;

/// Operate the chat backend over NATS: tenants, their API keys, service health.
///
/// Sends the same commands the gateway's admin API sends, straight to the services,
/// so it works with the gateway down and needs no admin key: access to NATS is the
/// credential.
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
    /// Tenants and their API keys.
    #[command(subcommand)]
    Tenants(Tenants),
    /// Ask message-store, presence and notification how they are (exit code 1 unless
    /// all are ok).
    Health,
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
    /// Issue a new API key and revoke the tenant's previous ones.
    RotateKey {
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
    },
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

fn parse_tenant_id(s: &str) -> Result<TenantId, String> {
    TenantId::parse(s).map_err(|e| format!("invalid tenant id: {e}"))
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
            Command::Tenants(Tenants::Create { name, id, rate_limit }) => {
                assert_eq!(name, "Acme");
                assert_eq!(id.as_ref().map(TenantId::as_str), Some("acme"));
                assert_eq!(rate_limit, Some(10));
            }
            other => panic!("parsed as {other:?}"),
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
    fn the_command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
