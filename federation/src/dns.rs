//! The DNS lookups server discovery and the federation client need, behind
//! a small trait so tests can answer them without a network.
//!
//! [`SystemDns`] answers them with hickory-resolver, configured from the
//! system (`/etc/resolv.conf`, the hosts file), caching by record TTL.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// A boxed error, as DNS and HTTP failures carry no Matrix meaning here.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, sendable future, so the lookup traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, higher is preferred.
    pub weight: u16,
    /// The port to connect to.
    pub port: u16,
    /// The host to connect to, without a trailing dot.
    pub target: String,
}

/// The lookups server discovery makes.
pub trait Dns: Send + Sync {
    /// SRV records for `name` (e.g. `_matrix-fed._tcp.example.org`), empty
    /// when there are none. A target of `.` ("service not available",
    /// RFC 2782) counts as none.
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BoxError>>;

    /// Addresses of `host` from AAAA and A records, following CNAMEs.
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BoxError>>;
}

/// [`Dns`] through hickory-resolver with the system's configuration.
#[derive(Clone)]
pub struct SystemDns {
    resolver: TokioResolver,
}

impl SystemDns {
    /// Reads the system resolver configuration. Needs a Tokio runtime.
    pub fn from_system_conf() -> Result<SystemDns, BoxError> {
        Ok(SystemDns {
            resolver: TokioResolver::builder_tokio()?.build()?,
        })
    }
}

impl Dns for SystemDns {
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BoxError>> {
        Box::pin(async move {
            // A trailing dot makes the name absolute: no search domains.
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            let lookup = match self.resolver.srv_lookup(fqdn).await {
                Ok(lookup) => lookup,
                Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(SrvRecord {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_utf8().trim_end_matches('.').to_owned(),
                    }),
                    _ => None,
                })
                .filter(|srv| !srv.target.is_empty())
                .collect())
        })
    }

    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BoxError>> {
        Box::pin(async move {
            match self.resolver.lookup_ip(host).await {
                Ok(lookup) => Ok(lookup.iter().collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// Orders SRV records for use: lowest priority first, then highest weight
/// (a deterministic stand-in for RFC 2782's weighted random choice).
pub fn sort_srv(records: &mut [SrvRecord]) {
    records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 8448,
            target: target.to_owned(),
        }
    }

    #[test]
    fn srv_order() {
        let mut records = vec![srv(20, 100, "c"), srv(10, 1, "b"), srv(10, 5, "a")];
        sort_srv(&mut records);
        let targets: Vec<_> = records.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn system_dns_resolves_localhost_without_network() {
        // The hosts file answers `localhost`; no query leaves the machine.
        let dns = SystemDns::from_system_conf().unwrap();
        let ips = dns.lookup_ip("localhost").await.unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()), "{ips:?}");
    }
}
