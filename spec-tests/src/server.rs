//! Starting, stopping and restarting real `feathur` processes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::http::{HttpClient, StatusCode};
use crate::util::{feathur_bin, free_port, merge_toml, tail};

/// How long a server may take to answer `GET /_matrix/client/versions`.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a CLI subcommand may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the server log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// Why a server did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status, if the process exited (None: it timed out and was killed).
    pub status: Option<ExitStatus>,
    /// Everything the process wrote to stdout and stderr.
    pub log: String,
    /// Time from spawn until the exit (or the timeout).
    pub elapsed: Duration,
}

/// Configures a [`TestServer`] before it starts.
pub struct ServerBuilder {
    overrides: Vec<toml::Table>,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    startup_timeout: Duration,
    federation: bool,
    peer_name: Option<PeerName>,
}

/// How a federating test server names itself: the server name must lead
/// other servers to its federation port (an explicit port skips
/// `.well-known` and SRV lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerName {
    /// `127.0.0.1:PORT`: an IP literal (no SNI from peers).
    Ip,
    /// `localhost:PORT`: a hostname with an explicit port.
    Localhost,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            overrides: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            federation: false,
            peer_name: None,
        }
    }
}

impl ServerBuilder {
    /// Merges a TOML snippet into the generated config, e.g.
    /// `"[registration]\nopen = false\ntokens = [\"abc\"]"`.
    pub fn toml(mut self, extra: &str) -> Self {
        let t: toml::Table = extra
            .parse()
            .unwrap_or_else(|e| panic!("bad TOML override in test: {e}\n{extra}"));
        self.overrides.push(t);
        self
    }

    /// Edits the generated config table directly (runs after `toml` merges).
    pub fn config(mut self, f: impl FnOnce(&mut toml::Table)) -> Self {
        let mut t = toml::Table::new();
        f(&mut t);
        self.overrides.push(t);
        self
    }

    /// Sets an environment variable for the server process (and its CLI runs).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Uses an existing data directory instead of a fresh one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    pub fn startup_timeout(mut self, t: Duration) -> Self {
        self.startup_timeout = t;
        self
    }

    /// Runs the federation listener too, with a generated self-signed
    /// certificate on a free loopback port: [`TestServer::federation_port`].
    pub fn federation(mut self) -> Self {
        self.federation = true;
        self
    }

    /// A server other servers can federate with: the federation listener
    /// on, the server name `HOST:FEDERATION_PORT`, certificates not checked
    /// and loopback peers allowed (a test network).
    pub fn peer(mut self, name: PeerName) -> Self {
        self.federation = true;
        self.peer_name = Some(name);
        self
    }

    /// Writes the config and data directory without starting a process; use
    /// [`TestServer::run_cli`] and then [`TestServer::restart`] to start it.
    pub fn prepare(self) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("feathur-test-")
            .tempdir()
            .expect("creating a temp dir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let port = free_port();
        let base_url = format!("http://127.0.0.1:{port}");
        let server = TestServer {
            federation_port: self.federation.then(|| free_port_besides(port)),
            peer_name: self.peer_name,
            config_path: dir.path().join("feathur.toml"),
            log_path: dir.path().join("server.log"),
            http: HttpClient::new(&base_url),
            dir,
            data_dir,
            port,
            overrides: self.overrides,
            env: self.env,
            startup_timeout: self.startup_timeout,
            child: None,
        };
        server.write_config();
        server
    }

    /// Starts the server and waits until it answers; panics with the log if
    /// it does not.
    pub async fn start(self) -> TestServer {
        match self.try_start().await {
            Ok(s) => s,
            Err(f) => panic!(
                "feathur did not start (exit status {:?} after {:?}); log tail:\n{}",
                f.status,
                f.elapsed,
                tail(&f.log, LOG_TAIL_LINES)
            ),
        }
    }

    /// Starts the server; `Err` if it exits or does not answer in time. A
    /// start that fails because the chosen port was taken is retried.
    pub async fn try_start(self) -> Result<TestServer, StartFailure> {
        let mut server = self.prepare();
        for _ in 0..3 {
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(f) if f.status.is_some() && mentions_addr_in_use(&f.log) => {
                    server.port = free_port();
                    server.federation_port = server
                        .federation_port
                        .map(|_| free_port_besides(server.port));
                    server.http = HttpClient::new(&format!("http://127.0.0.1:{}", server.port));
                    server.write_config();
                }
                Err(f) => return Err(f),
            }
        }
        server.spawn_and_wait().await.map(|()| server)
    }
}

/// A free port other than `taken` (which was free a moment ago too).
fn free_port_besides(taken: u16) -> u16 {
    loop {
        let port = free_port();
        if port != taken {
            return port;
        }
    }
}

fn mentions_addr_in_use(log: &str) -> bool {
    let l = log.to_lowercase();
    l.contains("address already in use") || l.contains("addrinuse")
}

/// A running (or stopped) `feathur serve` process with its own temp dir,
/// config file and loopback port. Dereferences to its [`HttpClient`].
/// Dropping it kills the process and deletes the temp dir.
pub struct TestServer {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    port: u16,
    /// Port of the TLS federation listener, when enabled.
    federation_port: Option<u16>,
    peer_name: Option<PeerName>,
    overrides: Vec<toml::Table>,
    env: Vec<(String, String)>,
    startup_timeout: Duration,
    http: HttpClient,
    child: Option<Child>,
}

impl Deref for TestServer {
    type Target = HttpClient;
    fn deref(&self) -> &HttpClient {
        &self.http
    }
}

impl TestServer {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with the default test config.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    /// Starts a server after `f` edits the config table.
    pub async fn start_with(f: impl FnOnce(&mut toml::Table)) -> TestServer {
        Self::builder().config(f).start().await
    }

    /// Starts a server with a TOML snippet merged into the config.
    pub async fn start_with_toml(extra: &str) -> TestServer {
        Self::builder().toml(extra).start().await
    }

    /// The config this harness writes, before test overrides.
    fn base_config(&self) -> toml::Table {
        let federation = match self.federation_port {
            Some(port) => format!(
                "enabled = true\nself_signed = true\nlisten = \"127.0.0.1:{port}\"\n\
                 max_backoff = \"5s\""
            ),
            None => "enabled = false".to_owned(),
        };
        let federation = if self.peer_name.is_some() {
            format!("{federation}\nverify_certificates = false\nallow_private_ranges = true")
        } else {
            federation
        };
        let text = format!(
            r#"
server_name = "{server_name}"
data_dir = {data}
[client]
listen = "127.0.0.1:{port}"
max_request_bytes = 1048576
[registration]
open = true
tokens = []
[federation]
{federation}
[log]
level = "info"
format = "text"
"#,
            port = self.port,
            server_name = self.server_name(),
            data = toml::Value::String(self.data_dir.to_str().expect("utf-8 temp path").to_owned()),
        );
        text.parse().expect("base config is valid TOML")
    }

    fn write_config(&self) {
        let mut cfg = self.base_config();
        for o in &self.overrides {
            merge_toml(&mut cfg, o.clone());
        }
        let text = toml::to_string(&cfg).expect("serialising the config");
        fs::write(&self.config_path, text).expect("writing the config file");
    }

    /// The `server_name`: `localhost:PORT` (the client port), or for a
    /// [`ServerBuilder::peer`] `127.0.0.1:` / `localhost:` + the federation port.
    pub fn server_name(&self) -> String {
        match (self.peer_name, self.federation_port) {
            (Some(PeerName::Ip), Some(port)) => format!("127.0.0.1:{port}"),
            (Some(PeerName::Localhost), Some(port)) => format!("localhost:{port}"),
            _ => format!("localhost:{}", self.port),
        }
    }

    /// `@localpart:localhost:PORT`
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The federation listener's port; panics unless the server was built
    /// with [`ServerBuilder::federation`].
    pub fn federation_port(&self) -> u16 {
        self.federation_port
            .expect("the server was started without ServerBuilder::federation")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temp dir holding the config, the log and (by default) the data.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server process(es) wrote so far (stdout and stderr,
    /// across restarts).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A command running the feathur binary with this server's environment
    /// (inherited `FEATHUR_*` variables removed, the builder's added).
    fn command(&self) -> Command {
        let mut cmd = Command::new(feathur_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FEATHUR_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        // Do not outlive the test process if it dies without dropping us.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd
    }

    fn spawn(&mut self) -> Child {
        assert!(self.child.is_none(), "the server is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the log file");
        writeln!(
            log,
            "===== feathur serve (harness: port {}) =====",
            self.port
        )
        .ok();
        let mut cmd = self.command();
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        cmd.spawn().expect("spawning feathur serve")
    }

    /// Spawns `feathur serve` and polls `/versions` until 200, the process
    /// exits or the startup timeout passes (then it is killed).
    async fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        let started = Instant::now();
        let mut child = self.spawn();
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("probe client");
        let versions_url = self.url("/_matrix/client/versions");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartFailure {
                    status: Some(status),
                    log: self.log(),
                    elapsed: started.elapsed(),
                });
            }
            if started.elapsed() > self.startup_timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure {
                    status: None,
                    log: self.log(),
                    elapsed: started.elapsed(),
                });
            }
            if matches!(probe.get(&versions_url).send().await, Ok(r) if r.status() == StatusCode::OK)
            {
                self.child = Some(child);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the server again on the same data dir, config and port (or for
    /// the first time after [`ServerBuilder::prepare`]). If it is running it
    /// is first stopped with SIGTERM, which must exit with status 0. Panics
    /// with the log if it does not come up.
    pub async fn restart(&mut self) {
        if let Err(f) = self.try_restart().await {
            panic!(
                "feathur did not (re)start (exit status {:?} after {:?}); log tail:\n{}",
                f.status,
                f.elapsed,
                tail(&f.log, LOG_TAIL_LINES)
            );
        }
    }

    /// Like [`restart`](Self::restart), but returns why the server did not
    /// come up instead of panicking.
    pub async fn try_restart(&mut self) -> Result<(), StartFailure> {
        if self.child.is_some() {
            let status = self.stop();
            assert!(
                status.success(),
                "server exited with {status} on SIGTERM; log tail:\n{}",
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
        self.spawn_and_wait().await
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status (a clean
    /// shutdown is `status.success()`). Panics if it takes over 30 s.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("stop(): the server is not running");
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waiting for feathur") {
                return status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "feathur did not exit within {STOP_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    tail(&self.log(), LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL (no chance to flush) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("kill9(): the server is not running");
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = child.wait();
    }

    /// Runs `feathur ARGS… --config FILE` with this server's config and
    /// environment, feeding `stdin` if given; waits up to 60 s.
    pub fn run_cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let out_path = self.dir.path().join("cli.stdout");
        let err_path = self.dir.path().join("cli.stderr");
        let mut cmd = self.command();
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_path)
            .stdout(File::create(&out_path).expect("cli stdout file"))
            .stderr(File::create(&err_path).expect("cli stderr file"));
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawning a feathur CLI command");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("cli stdin");
            // The command may exit without reading; ignore a broken pipe.
            let _ = pipe.write_all(input.as_bytes());
        }
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for the CLI") {
                break s;
            }
            if started.elapsed() > CLI_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`feathur {}` did not finish within {CLI_TIMEOUT:?}; output:\n{}{}",
                    args.join(" "),
                    fs::read_to_string(&out_path).unwrap_or_default(),
                    fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read(&err_path).unwrap_or_default(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- feathur log tail ({}) -----\n{}\n----- end of feathur log -----",
                self.log_path.display(),
                tail(&self.log(), LOG_TAIL_LINES)
            );
            if std::env::var_os("FEATHUR_TEST_KEEP").is_some() {
                let kept = std::mem::replace(
                    &mut self.dir,
                    tempfile::tempdir().expect("placeholder temp dir"),
                );
                eprintln!("kept test dir: {}", kept.keep().display());
            }
        }
    }
}
