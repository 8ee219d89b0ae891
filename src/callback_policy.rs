//! Where callbacks may go (the SSRF policy for `callback_url`): public unicast addresses only,
//! unless the operator's allow-list (`serve --callback-allow 10.0.0.0/8,hooks.internal`) names
//! the network or the host.
//!
//! A callback URL is checked twice. At submit time, as written (http or https, no userinfo, a
//! host) and, for a host name, on the addresses it resolves to then: a refusal is a 422 and
//! writes nothing. And at every attempt, when it connects: an IP-literal host before the request
//! is made, a host name through [`PolicyResolver`], the callback client's DNS resolver, which
//! drops every refused address it resolves and fails the attempt when none is left. The second
//! check is the one that holds: a name can resolve elsewhere later (DNS rebinding), and the
//! allow-list can change between submit and delivery.
//!
//! Hosts are parsed by the `url` crate (the WHATWG URL standard), the parser reqwest connects
//! with, so every spelling of an address (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) is
//! checked as the address it is, and IPv6 forms that carry an IPv4 address (IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4) are checked as that IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Why a callback destination is refused: a stable rule name (`loopback`, `private`, …) and a
/// sentence that names the address and the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct CallbackRefused {
    /// A stable kebab-case name of the rule that refused it.
    pub rule: &'static str,
    pub detail: String,
}

impl CallbackRefused {
    fn new(rule: &'static str, detail: impl Into<String>) -> CallbackRefused {
        CallbackRefused {
            rule,
            detail: detail.into(),
        }
    }

    /// The same refusal, saying how an operator lets such a destination through.
    fn with_hint(mut self) -> CallbackRefused {
        self.detail
            .push_str("; an operator may allow it with --callback-allow");
        self
    }
}

/// An IP network: an address and a prefix length, as in `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    const fn v4(address: Ipv4Addr, prefix: u8) -> Network {
        Network {
            address: IpAddr::V4(address),
            prefix,
        }
    }

    const fn v6(address: Ipv6Addr, prefix: u8) -> Network {
        Network {
            address: IpAddr::V6(address),
            prefix,
        }
    }

    /// Whether `address` is in this network (an IPv4 network holds no IPv6 address, and back).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }

    /// `10.0.0.0/8`, `fd00::/8`, or a single address (`/32`, `/128`). Host bits set after the
    /// prefix (`10.1.2.3/8`) are refused: that is a typo more often than not.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address_text
            .parse()
            .map_err(|_| format!("{address_text:?} is not an IP address"))?;
        let maximum = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => maximum,
            Some(prefix_text) => prefix_text
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= maximum)
                .ok_or_else(|| {
                    format!("{prefix_text:?} is not a prefix length from 0 to {maximum}")
                })?,
        };
        let network = Network { address, prefix };
        let first = Network::first_address(address, prefix);
        if first != address {
            return Err(format!(
                "{text} has bits set after its /{prefix} prefix; the network is {first}/{prefix}"
            ));
        }
        Ok(network)
    }

    fn first_address(address: IpAddr, prefix: u8) -> IpAddr {
        match address {
            IpAddr::V4(address) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(address) & mask))
            }
            IpAddr::V6(address) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(address) & mask))
            }
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.address, self.prefix)
    }
}

/// A range no callback goes to unless allowed: the network, the rule, and what the range is.
struct RefusedRange {
    network: Network,
    rule: &'static str,
    what: &'static str,
}

const fn refused(network: Network, rule: &'static str, what: &'static str) -> RefusedRange {
    RefusedRange {
        network,
        rule,
        what,
    }
}

/// The IPv4 special-purpose ranges (IANA's registry) that are not public unicast. The more
/// specific entries come first: the first match names the rule.
const REFUSED_IPV4: &[RefusedRange] = &[
    refused(
        Network::v4(Ipv4Addr::new(0, 0, 0, 0), 8),
        "unspecified",
        "\"this network\" (connecting to it reaches this host)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(10, 0, 0, 0), 8),
        "private",
        "a private network (RFC 1918)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(100, 64, 0, 0), 10),
        "shared-address-space",
        "carrier-grade NAT shared address space (RFC 6598)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(127, 0, 0, 0), 8),
        "loopback",
        "loopback",
    ),
    refused(
        Network::v4(Ipv4Addr::new(169, 254, 169, 254), 32),
        "link-local",
        "link-local: the cloud metadata service",
    ),
    refused(
        Network::v4(Ipv4Addr::new(169, 254, 0, 0), 16),
        "link-local",
        "link-local",
    ),
    refused(
        Network::v4(Ipv4Addr::new(172, 16, 0, 0), 12),
        "private",
        "a private network (RFC 1918)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(192, 0, 0, 0), 24),
        "reserved",
        "IETF protocol assignments",
    ),
    refused(
        Network::v4(Ipv4Addr::new(192, 0, 2, 0), 24),
        "documentation",
        "documentation (TEST-NET-1)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(192, 88, 99, 0), 24),
        "reserved",
        "the deprecated 6to4 relay anycast",
    ),
    refused(
        Network::v4(Ipv4Addr::new(192, 168, 0, 0), 16),
        "private",
        "a private network (RFC 1918)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(198, 18, 0, 0), 15),
        "benchmarking",
        "benchmarking (RFC 2544)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(198, 51, 100, 0), 24),
        "documentation",
        "documentation (TEST-NET-2)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(203, 0, 113, 0), 24),
        "documentation",
        "documentation (TEST-NET-3)",
    ),
    refused(
        Network::v4(Ipv4Addr::new(224, 0, 0, 0), 4),
        "multicast",
        "multicast",
    ),
    refused(
        Network::v4(Ipv4Addr::new(255, 255, 255, 255), 32),
        "broadcast",
        "the limited broadcast address",
    ),
    refused(
        Network::v4(Ipv4Addr::new(240, 0, 0, 0), 4),
        "reserved",
        "reserved for future use",
    ),
];

/// The IPv6 ranges refused outright. Forms that carry an IPv4 address are unwrapped first (see
/// [`embedded_ipv4`]); anything outside global unicast (`2000::/3`) is refused as well.
const REFUSED_IPV6: &[RefusedRange] = &[
    refused(
        Network::v6(Ipv6Addr::UNSPECIFIED, 128),
        "unspecified",
        "the unspecified address",
    ),
    refused(
        Network::v6(Ipv6Addr::LOCALHOST, 128),
        "loopback",
        "loopback",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
        "private",
        "local-use NAT64 (RFC 8215)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
        "reserved",
        "discard-only (RFC 6666)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48),
        "benchmarking",
        "benchmarking (RFC 5180)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
        "documentation",
        "documentation (RFC 3849)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
        "reserved",
        "IETF protocol assignments (Teredo, ORCHID, …)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
        "documentation",
        "documentation (RFC 9637)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
        "unique-local",
        "unique-local (RFC 4193)",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        "link-local",
        "link-local",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
        "unique-local",
        "the deprecated site-local range",
    ),
    refused(
        Network::v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
        "multicast",
        "multicast",
    ),
];

const GLOBAL_UNICAST_IPV6: Network = Network::v6(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// The IPv4 address an IPv6 address stands for, and the name of that form: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated, but still routed by some
/// stacks), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_ipv4(address: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let bits = u128::from(address);
    let low = Ipv4Addr::from(bits as u32);
    if bits >> 32 == 0xffff {
        return Some((low, "IPv4-mapped"));
    }
    // `::` and `::1` are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    if bits >> 32 == 0 && bits > 1 {
        return Some((low, "IPv4-compatible"));
    }
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some((low, "NAT64"));
    }
    if bits >> 112 == 0x2002 {
        return Some((Ipv4Addr::from((bits >> 80) as u32), "6to4"));
    }
    None
}

/// Why `address` is no public unicast address, if it is not. Ignores any allow-list.
pub fn refused_address(address: IpAddr) -> Option<CallbackRefused> {
    match address {
        IpAddr::V4(address) => REFUSED_IPV4
            .iter()
            .find(|range| range.network.contains(IpAddr::V4(address)))
            .map(|range| {
                CallbackRefused::new(
                    range.rule,
                    format!(
                        "{address} is {} ({}): {}",
                        range.rule, range.network, range.what
                    ),
                )
            }),
        IpAddr::V6(address) => {
            if let Some((ipv4, form)) = embedded_ipv4(address) {
                return refused_address(IpAddr::V4(ipv4)).map(|refusal| {
                    CallbackRefused::new(
                        refusal.rule,
                        format!("{address} is the {form} IPv6 form of {refusal}"),
                    )
                });
            }
            let refusal = match REFUSED_IPV6
                .iter()
                .find(|range| range.network.contains(IpAddr::V6(address)))
            {
                Some(range) => CallbackRefused::new(
                    range.rule,
                    format!(
                        "{address} is {} ({}): {}",
                        range.rule, range.network, range.what
                    ),
                ),
                None if GLOBAL_UNICAST_IPV6.contains(IpAddr::V6(address)) => return None,
                None => CallbackRefused::new(
                    "reserved",
                    format!(
                        "{address} is reserved: outside global unicast ({GLOBAL_UNICAST_IPV6})"
                    ),
                ),
            };
            Some(refusal)
        }
    }
}

/// A callback URL's host, as the `url` crate (and so reqwest) understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An IP address, already checked.
    Address(IpAddr),
    /// A host name on the allow-list: whatever it resolves to is allowed.
    AllowedName(String),
    /// A host name whose addresses are checked when resolved.
    Name(String),
}

/// How long the submit-time check waits for a host name to resolve. A name that does not resolve
/// in time is accepted then: the check at each attempt still holds.
const SUBMIT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where callbacks may go: public unicast addresses, plus the operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    allowed_networks: Vec<Network>,
    /// Lowercase ASCII (punycode) host names, without a trailing dot.
    allowed_hosts: Vec<String>,
}

impl CallbackPolicy {
    /// Public unicast addresses only: the default.
    pub fn public_only() -> CallbackPolicy {
        CallbackPolicy::default()
    }

    /// Public addresses plus the allow-list's entries: networks (`10.0.0.0/8`, `fd00::/8`),
    /// single addresses (`127.0.0.1`), and host names (`hooks.internal`), allowed whatever they
    /// resolve to. An error names the first entry that is none of these.
    pub fn allowing<I, S>(entries: I) -> Result<CallbackPolicy, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut policy = CallbackPolicy::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let looks_like_address =
                entry.contains('/') || entry.contains(':') || entry.parse::<IpAddr>().is_ok();
            if looks_like_address {
                let network = Network::parse(entry)
                    .map_err(|error| format!("callback allow-list entry {entry:?}: {error}"))?;
                policy.allowed_networks.push(network);
                continue;
            }
            match url::Host::parse(entry) {
                Ok(url::Host::Domain(name)) => policy
                    .allowed_hosts
                    .push(name.trim_end_matches('.').to_owned()),
                // A spelling of an address (`0x7f.1`): the address it is.
                Ok(url::Host::Ipv4(address)) => {
                    policy.allowed_networks.push(Network::v4(address, 32))
                }
                Ok(url::Host::Ipv6(address)) => {
                    policy.allowed_networks.push(Network::v6(address, 128))
                }
                Err(error) => {
                    return Err(format!(
                        "callback allow-list entry {entry:?} is neither a network (10.0.0.0/8) nor a host name: {error}"
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// The allow-list, for the start-up log line: networks, then host names.
    pub fn allow_list(&self) -> Vec<String> {
        self.allowed_networks
            .iter()
            .map(ToString::to_string)
            .chain(self.allowed_hosts.iter().cloned())
            .collect()
    }

    fn host_is_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }

    /// Whether a connection to `address` is allowed: on the allow-list (an IPv6 form of an IPv4
    /// address counts as that address), or a public unicast address.
    pub fn check_address(&self, address: IpAddr) -> Result<(), CallbackRefused> {
        let unwrapped = match address {
            IpAddr::V6(ipv6) => embedded_ipv4(ipv6).map(|(ipv4, _)| IpAddr::V4(ipv4)),
            IpAddr::V4(_) => None,
        };
        let allowed = self.allowed_networks.iter().any(|network| {
            network.contains(address) || unwrapped.is_some_and(|ipv4| network.contains(ipv4))
        });
        match refused_address(address) {
            Some(refusal) if !allowed => Err(refusal),
            _ => Ok(()),
        }
    }

    /// The URL as written, without resolving anything: http or https, no userinfo, a host; an
    /// IP-literal host is checked here. What is left to check is a name's addresses.
    pub fn check_url_as_written(&self, url: &str) -> Result<Destination, CallbackRefused> {
        let parsed = url::Url::parse(url).map_err(|error| {
            CallbackRefused::new("malformed", format!("callback_url is not a URL: {error}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CallbackRefused::new(
                "scheme",
                format!(
                    "callback_url must be http:// or https://, not {}://",
                    parsed.scheme()
                ),
            ));
        }
        // Credentials in a URL end up in logs and events, and `http://trusted@evil/` misleads.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(CallbackRefused::new(
                "userinfo",
                "callback_url must not carry a user name or password (user@host)",
            ));
        }
        match parsed.host() {
            None => Err(CallbackRefused::new(
                "malformed",
                "callback_url has no host",
            )),
            Some(url::Host::Ipv4(address)) => self
                .check_address(IpAddr::V4(address))
                .map(|()| Destination::Address(IpAddr::V4(address)))
                .map_err(|refusal| refusal.with_hint()),
            Some(url::Host::Ipv6(address)) => self
                .check_address(IpAddr::V6(address))
                .map(|()| Destination::Address(IpAddr::V6(address)))
                .map_err(|refusal| refusal.with_hint()),
            Some(url::Host::Domain(name)) if self.host_is_allowed(name) => {
                Ok(Destination::AllowedName(name.to_owned()))
            }
            Some(url::Host::Domain(name)) => Ok(Destination::Name(name.to_owned())),
        }
    }

    /// The submit-time check: the URL as written and, for a host name, the addresses it
    /// resolves to now, refused when none of them is allowed. A name that does not resolve (or
    /// not within 2 s) is let through: each attempt checks again when it connects.
    pub async fn check_url(&self, url: &str) -> Result<(), CallbackRefused> {
        let Destination::Name(name) = self.check_url_as_written(url)? else {
            return Ok(());
        };
        let lookup = tokio::net::lookup_host((lookup_name(&name), 0));
        let addresses: Vec<SocketAddr> = match tokio::time::timeout(SUBMIT_RESOLVE_TIMEOUT, lookup)
            .await
        {
            Ok(Ok(addresses)) => addresses.collect(),
            Ok(Err(error)) => {
                tracing::debug!(%name, %error, "a callback host does not resolve at submit time");
                return Ok(());
            }
            Err(_) => {
                tracing::debug!(%name, "a callback host did not resolve in time at submit");
                return Ok(());
            }
        };
        self.filter_resolved(&name, addresses).map(|_| ())
    }

    /// The resolved addresses of `name` that are allowed; an error naming every refused one when
    /// none is.
    pub fn filter_resolved(
        &self,
        name: &str,
        addresses: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, CallbackRefused> {
        if self.host_is_allowed(name) {
            return Ok(addresses);
        }
        let mut allowed = Vec::new();
        let mut refusals = Vec::new();
        for address in addresses {
            match self.check_address(address.ip()) {
                Ok(()) => allowed.push(address),
                Err(refusal) => refusals.push(refusal),
            }
        }
        if !allowed.is_empty() {
            if !refusals.is_empty() {
                tracing::warn!(%name, refused = refusals.len(), "a callback host resolves to refused addresses too; using the allowed ones");
            }
            return Ok(allowed);
        }
        let Some(first) = refusals.first() else {
            return Err(CallbackRefused::new(
                "unresolved",
                format!("callback host {name} resolves to no address"),
            ));
        };
        let reasons: Vec<&str> = refusals
            .iter()
            .map(|refusal| refusal.detail.as_str())
            .collect();
        Err(CallbackRefused::new(
            first.rule,
            format!(
                "callback host {name} resolves only to refused addresses: {}",
                reasons.join("; ")
            ),
        )
        .with_hint())
    }

    /// The DNS resolver for the callback client: resolves with the system's resolver, then
    /// keeps only the allowed addresses.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver {
            policy: self.clone(),
        }
    }
}

/// The name to ask the system's resolver for: without the trailing dot of a fully qualified
/// name, which some resolvers do not look up in `/etc/hosts` (`localhost.` would then fail to
/// resolve at submit, and might resolve to 127.0.0.1 through another resolver later).
fn lookup_name(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Resolves callback hosts for reqwest, dropping the addresses the policy refuses; fails the
/// connection, with the refusal as the reason, when none is left. reqwest asks it for host names
/// only: IP-literal hosts are checked before the request (`check_url_as_written`).
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: CallbackPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((lookup_name(&name), 0))
                .await?
                .collect();
            let allowed = policy.filter_resolved(&name, addresses)?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(address: &str) -> Option<&'static str> {
        refused_address(address.parse().unwrap()).map(|refusal| refusal.rule)
    }

    #[test]
    fn every_special_range_is_refused_and_public_addresses_are_not() {
        for (address, expected) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.255.0.1", "private"),
            ("100.64.0.1", "shared-address-space"),
            ("100.127.255.254", "shared-address-space"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("169.254.1.1", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.170", "reserved"),
            ("192.0.2.1", "documentation"),
            ("192.168.1.1", "private"),
            ("198.19.0.1", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::1", "private"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:c0a8:101::", "private"),
            ("100::1", "reserved"),
            ("2001::1", "reserved"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("fec0::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "reserved"),
        ] {
            assert_eq!(rule(address), Some(expected), "{address}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:93.184.215.14",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert_eq!(rule(public), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_takes_networks_addresses_and_names() {
        let policy =
            CallbackPolicy::allowing(["10.0.0.0/8", " hooks.Internal. ", "::1", ""]).unwrap();
        assert_eq!(
            policy.allow_list(),
            vec!["10.0.0.0/8", "::1/128", "hooks.internal"]
        );
        assert!(policy.check_address("10.9.8.7".parse().unwrap()).is_ok());
        assert!(
            policy
                .check_address("::ffff:10.9.8.7".parse().unwrap())
                .is_ok()
        );
        assert!(policy.check_address("::1".parse().unwrap()).is_ok());
        assert_eq!(
            policy
                .check_address("192.168.0.1".parse().unwrap())
                .unwrap_err()
                .rule,
            "private"
        );
        assert_eq!(
            policy.check_url_as_written("https://HOOKS.internal./x"),
            Ok(Destination::AllowedName("hooks.internal.".into()))
        );
        for (entry, complaint) in [
            ("10.1.2.3/8", "the network is 10.0.0.0/8"),
            ("10.0.0.0/33", "prefix length from 0 to 32"),
            ("not a host", "neither a network"),
            ("300.1.1.1/8", "not an IP address"),
        ] {
            let error = CallbackPolicy::allowing([entry]).unwrap_err();
            assert!(error.contains(complaint), "{entry}: {error}");
        }
    }

    #[test]
    fn a_resolved_name_keeps_only_its_allowed_addresses() {
        let policy = CallbackPolicy::public_only();
        let address = |text: &str| SocketAddr::new(text.parse().unwrap(), 0);
        assert_eq!(
            policy.filter_resolved(
                "mixed.example",
                vec![address("127.0.0.1"), address("1.1.1.1")]
            ),
            Ok(vec![address("1.1.1.1")])
        );
        let refusal = policy
            .filter_resolved(
                "rebound.example",
                vec![address("127.0.0.1"), address("::1")],
            )
            .unwrap_err();
        assert_eq!(refusal.rule, "loopback");
        assert!(
            refusal.detail.contains("127.0.0.1 is loopback"),
            "{refusal}"
        );
        assert!(refusal.detail.contains("::1 is loopback"), "{refusal}");
    }
}
