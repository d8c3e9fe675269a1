//! Unit tests of server discovery with fake DNS and `.well-known` answers.

use std::sync::atomic::{AtomicUsize, Ordering};

use ruma::server_name;

use super::*;
use crate::dns::SrvRecord;

#[derive(Default)]
struct FakeDns {
    srv: HashMap<String, Vec<SrvRecord>>,
    failing_srv: Vec<String>,
    srv_queries: Mutex<Vec<String>>,
}

impl Dns for FakeDns {
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BoxError>> {
        self.srv_queries.lock().unwrap().push(name.to_owned());
        let result = if self.failing_srv.iter().any(|n| n == name) {
            Err("SERVFAIL".into())
        } else {
            Ok(self.srv.get(name).cloned().unwrap_or_default())
        };
        Box::pin(async move { result })
    }

    fn lookup_ip<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BoxError>> {
        Box::pin(async { Err("discovery must not resolve addresses".into()) })
    }
}

/// Status, headers and body of a canned `.well-known` answer.
type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct FakeWellKnown {
    answers: HashMap<String, Answer>,
    calls: AtomicUsize,
}

impl FakeWellKnown {
    fn with(mut self, host: &str, status: u16, body: &str) -> Self {
        self.answers
            .insert(host.to_owned(), (status, Vec::new(), body.to_owned()));
        self
    }

    fn with_header(mut self, host: &str, name: &'static str, value: String) -> Self {
        self.answers.get_mut(host).unwrap().1.push((name, value));
        self
    }
}

impl WellKnownFetcher for FakeWellKnown {
    fn fetch<'a>(
        &'a self,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<WellKnownResponse, BoxError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let result = match self.answers.get(hostname) {
            None => Err("connection refused".into()),
            Some((status, headers, body)) => Ok(WellKnownResponse {
                status: *status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (http::HeaderName::from_static(n), v.parse().unwrap()))
                    .collect(),
                body: body.clone().into_bytes(),
            }),
        };
        Box::pin(async move { result })
    }
}

fn srv(target: &str, port: u16, priority: u16) -> SrvRecord {
    SrvRecord {
        priority,
        weight: 0,
        port,
        target: target.to_owned(),
    }
}

fn name(host: &str) -> Host {
    Host::Name(host.to_owned())
}

fn ip(addr: &str) -> Host {
    Host::Ip(addr.parse().unwrap())
}

fn dest(connect: Host, port: u16, host_header: &str, tls: Host) -> Destination {
    Destination {
        connect_host: connect,
        port,
        host_header: host_header.to_owned(),
        tls_name: tls,
    }
}

fn resolver(
    dns: FakeDns,
    well_known: FakeWellKnown,
) -> (Resolver, Arc<FakeDns>, Arc<FakeWellKnown>) {
    let (dns, well_known) = (Arc::new(dns), Arc::new(well_known));
    (
        Resolver::new(dns.clone(), well_known.clone()),
        dns,
        well_known,
    )
}

#[tokio::test]
async fn ip_literals_and_explicit_ports_skip_lookups() {
    let (r, dns, wk) = resolver(FakeDns::default(), FakeWellKnown::default());
    let cases = [
        (
            "1.2.3.4",
            dest(ip("1.2.3.4"), 8448, "1.2.3.4", ip("1.2.3.4")),
        ),
        (
            "1.2.3.4:8000",
            dest(ip("1.2.3.4"), 8000, "1.2.3.4:8000", ip("1.2.3.4")),
        ),
        (
            "[2001:db8::1]",
            dest(ip("2001:db8::1"), 8448, "[2001:db8::1]", ip("2001:db8::1")),
        ),
        (
            "[2001:db8::1]:9",
            dest(ip("2001:db8::1"), 9, "[2001:db8::1]:9", ip("2001:db8::1")),
        ),
        (
            "example.org:1234",
            dest(
                name("example.org"),
                1234,
                "example.org:1234",
                name("example.org"),
            ),
        ),
    ];
    for (server, expected) in cases {
        let got = r
            .resolve(<&ServerName>::try_from(server).unwrap())
            .await
            .unwrap();
        assert_eq!(got, expected, "{server}");
    }
    assert_eq!(wk.calls.load(Ordering::SeqCst), 0);
    assert!(dns.srv_queries.lock().unwrap().is_empty());
    let v6 = dest(ip("2001:db8::1"), 9, "", ip("2001:db8::1"));
    assert_eq!(v6.base_url(), "https://[2001:db8::1]:9");
}

#[tokio::test]
async fn well_known_delegation_forms() {
    let dns = FakeDns {
        srv: HashMap::from([
            (
                "_matrix-fed._tcp.fed.example".to_owned(),
                vec![srv("t1.example", 443, 10)],
            ),
            (
                "_matrix._tcp.old.example".to_owned(),
                vec![srv("t2.example", 8008, 10)],
            ),
            // Ignored: well-known delegation wins over the name's own SRV.
            (
                "_matrix-fed._tcp.d.example".to_owned(),
                vec![srv("wrong.example", 1, 0)],
            ),
        ]),
        ..FakeDns::default()
    };
    let wk = FakeWellKnown::default()
        .with("a.example", 200, r#"{"m.server": "5.6.7.8"}"#)
        .with("b.example", 200, r#"{"m.server": "[2001:db8::2]:8443"}"#)
        .with("c.example", 200, r#"{"m.server": "matrix.c.example:443"}"#)
        .with("d.example", 200, r#"{"m.server": "fed.example"}"#)
        .with("e.example", 200, r#"{"m.server": "old.example"}"#)
        .with(
            "f.example",
            200,
            r#"{"m.server": "plain.example", "other": 1}"#,
        );
    let (r, _, _) = resolver(dns, wk);
    let cases = [
        (
            "a.example",
            dest(ip("5.6.7.8"), 8448, "5.6.7.8", ip("5.6.7.8")),
        ),
        (
            "b.example",
            dest(
                ip("2001:db8::2"),
                8443,
                "[2001:db8::2]:8443",
                ip("2001:db8::2"),
            ),
        ),
        (
            "c.example",
            dest(
                name("matrix.c.example"),
                443,
                "matrix.c.example:443",
                name("matrix.c.example"),
            ),
        ),
        (
            "d.example",
            dest(name("t1.example"), 443, "fed.example", name("fed.example")),
        ),
        (
            "e.example",
            dest(name("t2.example"), 8008, "old.example", name("old.example")),
        ),
        (
            "f.example",
            dest(
                name("plain.example"),
                8448,
                "plain.example",
                name("plain.example"),
            ),
        ),
    ];
    for (server, expected) in cases {
        let got = r
            .resolve(<&ServerName>::try_from(server).unwrap())
            .await
            .unwrap();
        assert_eq!(got, expected, "{server}");
    }
}

#[tokio::test]
async fn invalid_well_known_falls_through_to_srv_then_8448() {
    let dns = FakeDns {
        srv: HashMap::from([
            (
                "_matrix-fed._tcp.s.example".to_owned(),
                vec![srv("backup.example", 2, 20), srv("primary.example", 1, 10)],
            ),
            (
                "_matrix._tcp.s.example".to_owned(),
                vec![srv("deprecated.example", 3, 0)],
            ),
            (
                "_matrix._tcp.t.example".to_owned(),
                vec![srv("legacy.example", 4, 0)],
            ),
        ]),
        ..FakeDns::default()
    };
    let wk = FakeWellKnown::default()
        .with("s.example", 404, r#"{"m.server": "ignored.example"}"#)
        .with("t.example", 200, "not json")
        .with("u.example", 200, r#"{"server": "missing.example"}"#)
        .with("v.example", 200, r#"{"m.server": "bad name!"}"#);
    let (r, dns, _) = resolver(dns, wk);
    let cases = [
        (
            "s.example",
            dest(name("primary.example"), 1, "s.example", name("s.example")),
        ),
        (
            "t.example",
            dest(name("legacy.example"), 4, "t.example", name("t.example")),
        ),
        (
            "u.example",
            dest(name("u.example"), 8448, "u.example", name("u.example")),
        ),
        (
            "v.example",
            dest(name("v.example"), 8448, "v.example", name("v.example")),
        ),
        // No answer at all (connection refused).
        (
            "w.example",
            dest(name("w.example"), 8448, "w.example", name("w.example")),
        ),
    ];
    for (server, expected) in cases {
        let got = r
            .resolve(<&ServerName>::try_from(server).unwrap())
            .await
            .unwrap();
        assert_eq!(got, expected, "{server}");
    }
    let queries = dns.srv_queries.lock().unwrap();
    assert_eq!(queries[0], "_matrix-fed._tcp.s.example");
    assert!(!queries.contains(&"_matrix._tcp.s.example".to_owned()));
    assert_eq!(
        &queries[1..3],
        ["_matrix-fed._tcp.t.example", "_matrix._tcp.t.example"]
    );
}

#[tokio::test]
async fn srv_failure_is_an_error_not_a_guess() {
    let dns = FakeDns {
        failing_srv: vec!["_matrix-fed._tcp.x.example".to_owned()],
        ..FakeDns::default()
    };
    let (r, _, _) = resolver(dns, FakeWellKnown::default());
    assert!(matches!(
        r.resolve(server_name!("x.example")).await,
        Err(DiscoveryError::Srv { .. })
    ));
}

async fn fetches_after(
    r: &Resolver,
    wk: &FakeWellKnown,
    server: &ServerName,
    after: Duration,
    t0: Instant,
) -> usize {
    let before = wk.calls.load(Ordering::SeqCst);
    r.resolve_at(server, t0 + after, SystemTime::now())
        .await
        .unwrap();
    wk.calls.load(Ordering::SeqCst) - before
}

#[tokio::test]
async fn well_known_cache_lifetimes() {
    let hour = Duration::from_secs(3600);
    let wk = FakeWellKnown::default()
        .with("default.example", 200, r#"{"m.server": "x.example:1"}"#)
        .with("short.example", 200, r#"{"m.server": "x.example:1"}"#)
        .with_header(
            "short.example",
            "cache-control",
            "public, max-age=600".into(),
        )
        .with("long.example", 200, r#"{"m.server": "x.example:1"}"#)
        .with_header("long.example", "cache-control", "max-age=31536000".into())
        .with("nostore.example", 200, r#"{"m.server": "x.example:1"}"#)
        .with_header("nostore.example", "cache-control", "no-store".into())
        .with("expires.example", 200, r#"{"m.server": "x.example:1"}"#)
        .with_header(
            "expires.example",
            "expires",
            httpdate::fmt_http_date(SystemTime::now() + 2 * hour),
        )
        .with("gone.example", 404, "");
    let (r, _, wk) = resolver(FakeDns::default(), wk);
    let t0 = Instant::now();
    let s = |n: &'static str| <&ServerName>::try_from(n).unwrap();
    let min = Duration::from_secs(60);

    // Default 24 h.
    assert_eq!(
        fetches_after(&r, &wk, s("default.example"), Duration::ZERO, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("default.example"), 23 * hour, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("default.example"), 24 * hour + min, t0).await,
        1
    );
    // max-age honoured.
    assert_eq!(
        fetches_after(&r, &wk, s("short.example"), Duration::ZERO, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("short.example"), 9 * min, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("short.example"), 11 * min, t0).await,
        1
    );
    // Capped at 48 h.
    assert_eq!(
        fetches_after(&r, &wk, s("long.example"), Duration::ZERO, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("long.example"), 47 * hour, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("long.example"), 48 * hour + min, t0).await,
        1
    );
    // no-store still kept for the 5 min floor.
    assert_eq!(
        fetches_after(&r, &wk, s("nostore.example"), Duration::ZERO, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("nostore.example"), 4 * min, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("nostore.example"), 6 * min, t0).await,
        1
    );
    // Expires honoured.
    assert_eq!(
        fetches_after(&r, &wk, s("expires.example"), Duration::ZERO, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("expires.example"), hour, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("expires.example"), 2 * hour + min, t0).await,
        1
    );
    // Errors: 5 min, then 10 min, then 20 min …
    assert_eq!(
        fetches_after(&r, &wk, s("gone.example"), Duration::ZERO, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("gone.example"), 4 * min, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("gone.example"), 5 * min, t0).await,
        1
    );
    assert_eq!(
        fetches_after(&r, &wk, s("gone.example"), 14 * min, t0).await,
        0
    );
    assert_eq!(
        fetches_after(&r, &wk, s("gone.example"), 15 * min, t0).await,
        1
    );
}

#[test]
fn error_backoff_is_capped_at_an_hour() {
    assert_eq!(error_ttl(1), Duration::from_secs(300));
    assert_eq!(error_ttl(2), Duration::from_secs(600));
    assert_eq!(error_ttl(4), Duration::from_secs(2400));
    assert_eq!(error_ttl(5), Duration::from_secs(3600));
    assert_eq!(error_ttl(u32::MAX), Duration::from_secs(3600));
}
