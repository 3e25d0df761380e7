//! A real 3-node nats-server cluster on 127.0.0.1 for tests: one process per node, each with its own written
//! config file (server name, cluster routes to every node, JetStream with its own store dir), killable one
//! by one with SIGKILL.
//!
//! Routes need each node's cluster port before the others start, so cluster ports are reserved by binding
//! port 0 and releasing it just before the servers start (a start that loses that race is retried with new
//! ports); client ports are picked by each server itself and read from its ports file.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node of a [`TestCluster`].
pub struct Node {
    /// Its server name (`n1`, `n2`, ...), as JetStream reports stream leaders.
    pub name: String,
    child: Option<Child>,
    client_port: u16,
    dir: PathBuf,
}

impl Node {
    /// `nats://127.0.0.1:<client port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// Kills it with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it was killed.
    pub fn is_dead(&self) -> bool {
        self.child.is_none()
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running cluster, killed on drop.
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes with JetStream, routed to each other; returns once every node accepts clients.
    pub fn start(n: usize) -> TestCluster {
        super::init();
        let dir = tempfile::tempdir().unwrap();
        for attempt in 1..=3 {
            match start_nodes(dir.path(), n, attempt) {
                Ok(nodes) => return TestCluster { nodes, dir },
                Err(why) if attempt < 3 => eprintln!("cluster start {attempt} failed ({why}); retrying"),
                Err(why) => panic!("the nats-server cluster did not start: {why}"),
            }
        }
        unreachable!()
    }

    /// Client URLs of the nodes still running, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes.iter().filter(|n| !n.is_dead()).map(Node::url).collect::<Vec<_>>().join(",")
    }

    /// The node with this server name.
    pub fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_nodes(root: &Path, n: usize, attempt: usize) -> Result<Vec<Node>, String> {
    let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let routes: Vec<String> = cluster_ports.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
    let mut nodes = Vec::new();
    for (i, port) in cluster_ports.iter().enumerate() {
        let name = format!("n{}", i + 1);
        let dir = root.join(format!("{name}-{attempt}"));
        let ports_dir = dir.join("ports");
        std::fs::create_dir_all(&ports_dir).unwrap();
        let config = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:-1\"\njetstream {{\n  store_dir: \"{store}\"\n}}\n\
             cluster {{\n  name: riposte-test\n  listen: \"127.0.0.1:{port}\"\n  routes: [{routes}]\n}}\n",
            store = dir.join("store").display(),
            routes = routes.join(", "),
        );
        let config_file = dir.join("nats.conf");
        std::fs::write(&config_file, config).unwrap();
        let log = std::fs::File::create(dir.join("nats-server.log")).unwrap();
        let binary = std::env::var_os("RIPOSTE_NATS_SERVER").unwrap_or_else(|| "nats-server".into());
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_file)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e} (apt-get install nats-server)"))?;
        nodes.push(Node { name, child: Some(child), client_port: 0, dir });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &mut nodes {
        loop {
            if let Some(p) = reported_port(&node.dir.join("ports")) {
                if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], p)), Duration::from_millis(200))
                    .is_ok()
                {
                    node.client_port = p;
                    break;
                }
            }
            let exited = node.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                return Err(format!("node {} did not start; see {}", node.name, node.log().display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(nodes)
}

/// The client port in the one ports file nats-server wrote in `dir`.
fn reported_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let ports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
    ports.get("nats")?.as_array()?.first()?.as_str()?.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}
