//! Where webhooks may go: a tenant's `webhook_url` is an address the tenant chose, and
//! the notification service POSTs to it from inside the operator's network. Unless the
//! operator allows it (`WEBHOOK_ALLOW_PRIVATE=true`, for receivers on the same host or
//! network, as in tests), a delivery refuses every destination that resolves to a
//! loopback, private, link-local, shared (CGNAT), unspecified, multicast or broadcast
//! address — checked on the addresses the connection will use (a resolver that drops
//! them, so a name that resolves to `127.0.0.1` is refused too), and on literal IPs in
//! the URL. Redirects are never followed (a `3xx` is a failed attempt), so a public
//! receiver cannot bounce a delivery inward.
//!
//! What a failed attempt records (and a dead letter shows) is one of a few fixed
//! phrases and the HTTP status, never text from the receiver or the resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The phrase recorded when a destination is refused.
pub const REFUSED: &str = "destination not allowed (loopback, private or link-local address)";

/// Whether `ip` is an address webhooks may reach without the operator's leave.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 198.18.0.0/15, benchmarking; 240.0.0.0/4, reserved.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // ::/96 (IPv4-compatible), 64:ff9b::/96 (NAT64 can reach anything).
        || ip.segments()[..6] == [0; 6]
        || (first == 0x64 && ip.segments()[1] == 0xff9b))
}

/// Whether `url` may be requested: an `http`/`https` URL whose host, when it is an IP
/// literal, is public (names are checked when they resolve, by [`PublicOnly`]).
pub fn url_allowed(url: &str, allow_private: bool) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    if allow_private {
        return true;
    }
    let Some(host) = url.host_str() else { return false };
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match literal.parse::<IpAddr>() {
        Ok(ip) => is_public(ip),
        Err(_) => {
            let host = host.to_ascii_lowercase();
            host != "localhost" && !host.ends_with(".localhost")
        }
    }
}

/// A resolver that keeps only public addresses (an error when none is left).
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            let found: Vec<SocketAddr> = tokio::net::lookup_host(host).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::<dyn std::error::Error + Send + Sync>::from(REFUSED));
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The webhook client: no redirects, and (unless `allow_private`) public addresses only.
pub fn client(timeout: std::time::Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if allow_private { builder.build() } else { builder.dns_resolver(Arc::new(PublicOnly)).build() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_public(ip), "{bad} is not public");
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"] {
            let ip: IpAddr = good.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(is_public(ip), "{good} is public");
        }
    }

    #[test]
    fn urls_are_checked_by_scheme_and_literal_host() {
        assert!(url_allowed("https://hooks.example.com/x", false));
        assert!(!url_allowed("http://127.0.0.1:8080/x", false));
        assert!(!url_allowed("http://[::1]/x", false));
        assert!(!url_allowed("http://localhost/x", false));
        assert!(!url_allowed("http://2130706433/x", false), "127.0.0.1 written as a number");
        assert!(!url_allowed("ftp://hooks.example.com/x", false));
        assert!(url_allowed("http://127.0.0.1:8080/x", true));
    }
}
