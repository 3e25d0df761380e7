//! `riposte run` as a child process on a [`TestNats`]: its stderr collected, the addresses it prints read back,
//! killed when dropped.

use super::nats::TestNats;
use super::wait_until;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `riposte run`.
pub struct Run {
    pub child: Child,
    /// Everything it wrote to stderr so far.
    pub stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    /// `riposte run --nats … --name NAME EXTRA…` with the shared state dir and `RUST_LOG=warn`.
    pub fn start(nats: &TestNats, name: &str, extra: &[&str]) -> Run {
        let mut command = super::riposte_bin(&super::shared_state());
        command.env("RUST_LOG", "warn").args(["run", "--nats", &nats.url(), "--name", name]).args(extra);
        Run::spawn(command)
    }

    /// Starts `command` (a `riposte` of [`super::riposte_bin`]) with its stderr collected.
    pub fn spawn(mut command: Command) -> Run {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, pipe) = (stderr.clone(), child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        Run { child, stderr, reader: Some(reader) }
    }

    /// Waits for the process to exit; returns its status and everything it wrote to stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.stderr.lock().unwrap().clone())
    }

    /// The address after `marker` on stderr (`HTTP alert input on http://`, `metrics and probes on http://`),
    /// once printed.
    pub async fn addr(&self, marker: &str) -> String {
        let mut found = None;
        wait_until(&format!("{marker} on stderr"), Duration::from_secs(60), || {
            let text = self.stderr.lock().unwrap().clone();
            found = text
                .lines()
                .find_map(|l| l.split(marker).nth(1).map(|r| r.split([' ', '/']).next().unwrap().to_owned()));
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap()
    }
}
