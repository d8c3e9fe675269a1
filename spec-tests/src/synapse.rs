//! A real Synapse as a federation peer on loopback: installed from PyPI into
//! a virtual environment (`.ci/run` does it and sets `FEATHUR_TEST_SYNAPSE`
//! to its Python), configured for a test network (self-signed TLS, peer
//! certificates not checked, loopback allowed, rate limits raised).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::HttpClient;
use crate::server::PeerName;
use crate::util::{free_port, tail};

/// How long Synapse may take to answer `/_matrix/client/versions`.
const STARTUP: Duration = Duration::from_secs(90);

/// A running Synapse; killed when dropped.
pub struct SynapseServer {
    dir: tempfile::TempDir,
    child: Child,
    server_name: String,
    http: HttpClient,
}

impl std::ops::Deref for SynapseServer {
    type Target = HttpClient;
    fn deref(&self) -> &HttpClient {
        &self.http
    }
}

/// The Python with Synapse installed: `$FEATHUR_TEST_SYNAPSE`, if it can
/// import `synapse`.
/// [`synapse_python`], reporting through [`crate::missing_program`] when
/// there is none.
pub fn synapse_python_or_report() -> Option<String> {
    let python = synapse_python();
    if python.is_none() {
        crate::missing_program(
            "Synapse is missing: set FEATHUR_TEST_SYNAPSE to a Python with \
             matrix-synapse installed (.ci/run does this)",
        );
    }
    python
}

pub fn synapse_python() -> Option<String> {
    let python = std::env::var("FEATHUR_TEST_SYNAPSE").ok()?;
    let ok = Command::new(&python)
        .args(["-c", "import synapse"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

/// Writes a self-signed certificate for 127.0.0.1 and localhost with the
/// `cryptography` package Synapse depends on.
fn write_certificate(python: &str, dir: &Path) {
    let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=30))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    .sign(key, hashes.SHA256()))
open(sys.argv[1] + "/tls.crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[1] + "/tls.key", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
"#;
    let status = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .status()
        .expect("running Python to make a certificate");
    assert!(status.success(), "could not write Synapse's certificate");
}

impl SynapseServer {
    /// Starts Synapse named `127.0.0.1:PORT` or `localhost:PORT` (PORT its
    /// federation listener) creating rooms of `room_version` by default.
    pub async fn start(python: &str, name: PeerName, room_version: &str) -> SynapseServer {
        let dir = tempfile::Builder::new()
            .prefix("synapse-test-")
            .tempdir()
            .expect("creating a temp dir");
        let path = dir.path();
        let client_port = free_port();
        let mut federation_port = free_port();
        while federation_port == client_port {
            federation_port = free_port();
        }
        let server_name = match name {
            PeerName::Ip => format!("127.0.0.1:{federation_port}"),
            PeerName::Localhost => format!("localhost:{federation_port}"),
        };
        write_certificate(python, path);
        let d = path.display();
        let limit = "{per_second: 10000, burst_count: 10000}";
        let config = format!(
            r#"server_name: "{server_name}"
pid_file: {d}/homeserver.pid
listeners:
  - {{port: {client_port}, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false, resources: [{{names: [client], compress: false}}]}}
  - {{port: {federation_port}, bind_addresses: ['127.0.0.1'], type: http, tls: true, resources: [{{names: [federation, keys], compress: false}}]}}
tls_certificate_path: {d}/tls.crt
tls_private_key_path: {d}/tls.key
federation_verify_certificates: false
trusted_key_servers: []
suppress_key_server_warning: true
ip_range_whitelist: ['127.0.0.0/8', '::1/128']
federation_ip_range_blacklist: []
database: {{name: sqlite3, args: {{database: {d}/homeserver.db}}}}
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: "feathur-test-shared-secret"
macaroon_secret_key: "feathur-test-macaroon-secret"
form_secret: "feathur-test-form-secret"
enable_registration: true
enable_registration_without_verification: true
report_stats: false
default_room_version: "{room_version}"
presence: {{enabled: false}}
rc_message: {limit}
rc_registration: {limit}
rc_login: {{address: {limit}, account: {limit}, failed_attempts: {limit}}}
rc_joins: {{local: {limit}, remote: {limit}}}
rc_invites: {{per_room: {limit}, per_user: {limit}, per_issuer: {limit}}}
rc_room_creation: {limit}
rc_federation: {{window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}}
federation:
  client_timeout: 20s
  destination_min_retry_interval: 1s
  destination_retry_multiplier: 1
  destination_max_retry_interval: 2s
"#
        );
        fs::write(path.join("homeserver.yaml"), config).expect("writing homeserver.yaml");
        let status = Command::new(python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(path.join("homeserver.yaml"))
            .arg("--generate-keys")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running Synapse to make its signing key");
        assert!(status.success(), "Synapse could not generate its keys");
        let log = fs::File::create(path.join("server.log")).expect("creating the log");
        let child = Command::new(python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(path.join("homeserver.yaml"))
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting Synapse");
        let server = SynapseServer {
            http: HttpClient::new(&format!("http://127.0.0.1:{client_port}")),
            dir,
            child,
            server_name,
        };
        let deadline = Instant::now() + STARTUP;
        let probe = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client");
        let versions = format!("http://127.0.0.1:{client_port}/_matrix/client/versions");
        loop {
            let ready = probe
                .get(&versions)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Synapse did not start within {STARTUP:?}; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The last lines Synapse logged.
    pub fn log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        tail(&text, 60)
    }
}

impl Drop for SynapseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
