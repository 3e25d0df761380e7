//! A local nats-server with JetStream, started as a child process: what `riposte run` uses when no `--nats`
//! is given (data in `<state>/nats`, listening on 127.0.0.1, its URL recorded in `<state>/nats/url` so the
//! other commands find it), and what the tests start. Killed when dropped.

use crate::state_dir::StateDir;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server child.
pub struct NatsServer {
    child: Child,
    port: u16,
    url_file: Option<PathBuf>,
}

/// Why the local server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("nats-server is not installed: install it with `apt-get install nats-server` (or put it on PATH, or set RIPOSTE_NATS_SERVER), or pass --nats URL to use a running server")]
    NotInstalled,
    #[error("cannot start nats-server: {0}")]
    Start(String),
    #[error("nats-server did not accept connections on 127.0.0.1:{port} within 10 s; see {log}")]
    NotReady { port: u16, log: String },
}

impl NatsServer {
    /// Starts nats-server with JetStream storing in `store_dir`, on `port` (0: a port the server picks itself and
    /// reports in a ports file, so two servers started at once can never race for the same free port), 127.0.0.1 only.
    pub fn start(store_dir: &Path, port: u16) -> Result<NatsServer, EmbeddedError> {
        std::fs::create_dir_all(store_dir)
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", store_dir.display())))?;
        let log = store_dir.join("nats-server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", log.display())))?;
        // A fresh folder for this start's ports file: the one file in it is this server's.
        let ports_dir = store_dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", ports_dir.display())))?;
        let binary = std::env::var_os("RIPOSTE_NATS_SERVER").map(PathBuf::from).unwrap_or_else(|| "nats-server".into());
        let port_arg = if port == 0 { "-1".to_owned() } else { port.to_string() };
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
            .arg(store_dir)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => EmbeddedError::NotInstalled,
                _ => EmbeddedError::Start(e.to_string()),
            })?;
        let mut server = NatsServer { child, port, url_file: None };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server writes its ports file once it listens; a connection there confirms it is this server.
        loop {
            if let Some(p) = reported_port(&ports_dir) {
                if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], p)), Duration::from_millis(200))
                    .is_ok()
                {
                    server.port = p;
                    break;
                }
            }
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                return Err(EmbeddedError::NotReady { port, log: log.display().to_string() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// Starts the state directory's server and records its URL for the other commands.
    pub fn start_for_state(state: &StateDir) -> Result<NatsServer, EmbeddedError> {
        let dir = state.root().join("nats");
        let mut server = NatsServer::start(&dir, 0)?;
        let url_file = dir.join("url");
        std::fs::write(&url_file, server.url())
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", url_file.display())))?;
        server.url_file = Some(url_file);
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(f) = &self.url_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The URL of the local server `riposte run` recorded, when there is one.
pub fn recorded_url(state: &StateDir) -> Option<String> {
    let text = std::fs::read_to_string(state.root().join("nats").join("url")).ok()?;
    Some(text.trim().to_owned()).filter(|u| !u.is_empty())
}

/// The client port in the one ports file nats-server wrote in `dir` (`{"nats":["nats://127.0.0.1:PORT"]}`).
fn reported_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = ports.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}
