//! A real Podman for the container tests: `podman system service` on a socket in a temp dir, configured by the
//! project's `.ci/containers.conf` (through `CONTAINERS_CONF`, never the machine's own file), stopped on drop.
//! Also the small test image every container test runs, built once from busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The image the container tests run: busybox, entrypoint `sh -c`.
pub const TEST_IMAGE: &str = "localhost/riposte-test:1";

/// The project's podman configuration.
pub fn containers_conf() -> PathBuf {
    super::root().join(".ci/containers.conf")
}

/// `podman` with the project's configuration.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf());
    cmd
}

/// A running `podman system service`, one per test process: every container test shares it (each names its
/// functions apart), so the service starts once.
pub struct Podman {
    socket: PathBuf,
    /// The service runs under a shell that kills it and removes its directory when this pipe closes: when the
    /// test process ends, however it ends (a static is never dropped).
    _alive: std::sync::Mutex<std::process::ChildStdin>,
    _shell: std::sync::Mutex<std::process::Child>,
}

impl Podman {
    /// The process's service, started on first use; waits until it answers `_ping` (30 s at most).
    pub fn start() -> &'static Podman {
        super::init();
        static SHARED: std::sync::OnceLock<Podman> = std::sync::OnceLock::new();
        SHARED.get_or_init(Podman::spawn)
    }

    fn spawn() -> Podman {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("podman-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("podman.sock");
        // conmon writes a file `oom` into its working directory when a container is OOM-killed (the memory test
        // does that): keep it in the service's directory, not the repository. Its log (a line per container that
        // exits without reading stdin, and such) is there too.
        let script = r#"podman system service --time=0 "unix://$1/podman.sock" 2>"$1/podman.log" & pid=$!
cat >/dev/null; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$1""#;
        let mut child = Command::new("sh")
            .args(["-c", script, "podman-service"])
            .arg(&dir)
            .env("CONTAINERS_CONF", containers_conf())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run sh for podman: install podman (scripts/setup)");
        let alive = child.stdin.take().unwrap();
        let podman = Podman { socket, _alive: std::sync::Mutex::new(alive), _shell: std::sync::Mutex::new(child) };
        podman.wait_ready(Duration::from_secs(30));
        podman
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if ping(&self.socket) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "podman system service did not answer on {} in {timeout:?}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The engine address, `unix:///…/podman.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Names of the containers carrying `label` (key or key=value), running or not.
    pub fn containers_with(&self, label: &str) -> Vec<String> {
        let out = podman()
            .args(["ps", "-a", "--format", "{{.Names}}", "--filter", &format!("label={label}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
    }
}

/// Whether something answers the Docker API's `_ping` on `socket`.
fn ping(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.") && reply.contains(" 200 ")
}

/// Builds [`TEST_IMAGE`] unless it exists (once per test binary; podman's own lock covers other binaries).
pub fn test_image() -> &'static str {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        if podman().args(["image", "exists", TEST_IMAGE]).status().unwrap().success() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("no /bin/busybox: apt-get install busybox-static");
        std::fs::write(
            dir.path().join("Containerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
        )
        .unwrap();
        let out = podman().args(["build", "-q", "-t", TEST_IMAGE]).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "building {TEST_IMAGE}: {}", String::from_utf8_lossy(&out.stderr));
    });
    TEST_IMAGE
}
