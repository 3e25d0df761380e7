//! How a container action's exit code, stdout and stderr become an [`Execution`].
//!
//! Exit codes (the `sysexits.h` names, so shell scripts can `exit 65`):
//!
//! | code | status | retried |
//! | --- | --- | --- |
//! | 0 | `ok` | – |
//! | 65 (`EX_DATAERR`) | `invalid-alert`: the alert cannot be handled | no |
//! | 77 (`EX_NOPERM`) | `rejected`: a remote API refused | no |
//! | 78 (`EX_CONFIG`) | `missing-setting`: a setting is missing or malformed | no |
//! | 126, 127 | `trap`: the command cannot run or is not found in the image | no |
//! | 137 (SIGKILL) not sent by riposte | `memory`: killed by the kernel at the memory limit | no |
//! | anything else | `failed` | yes |
//!
//! stdout is the output: when it is JSON it becomes the execution's `detail` (and its `message` field, if
//! any, the message); otherwise its last line is the message. stderr lines become the execution's logs.
//! Both are cut to their bounds (the first `CONTAINER_STDOUT_BYTES` of stdout, the last `GUEST_OUTPUT_BYTES` of
//! stderr) here, after redaction: captured with a margin, a secret the cut splits is recognised and left out.

use crate::model::execution::LogLine;
use crate::model::execution::{Execution, Status};
use crate::model::limits::{CONTAINER_STDOUT_BYTES, GUEST_OUTPUT_BYTES, MAX_LOG_LINES};
use crate::secrets::redact::Secrets;

/// `EX_DATAERR`: the alert cannot be handled.
pub const EXIT_INVALID_ALERT: i64 = 65;
/// `EX_NOPERM`: a remote API refused.
pub const EXIT_REJECTED: i64 = 77;
/// `EX_CONFIG`: a setting is missing or malformed.
pub const EXIT_MISSING_SETTING: i64 = 78;

/// How the container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub exit_code: i64,
    /// The engine says the kernel killed it for memory (Docker does; Podman with cgroup v1 does not, hence
    /// also the SIGKILL rule).
    pub oom_killed: bool,
    /// Its stdout, up to `CONTAINER_STDOUT_BYTES` and a margin after them (the cut is made after redaction).
    pub stdout: Vec<u8>,
    /// The end of its stderr: `GUEST_OUTPUT_BYTES` and a margin before them.
    pub stderr: Vec<u8>,
    /// Whether stdout went over `CONTAINER_STDOUT_BYTES` and is cut.
    pub truncated: bool,
}

/// The execution for a container that ended (`memory_mb` for the message), with secrets redacted.
pub fn execution(ended: &Ended, memory_mb: u64, secrets: &Secrets) -> Execution {
    let stdout = secrets.redact_head(&ended.stdout, CONTAINER_STDOUT_BYTES);
    let stdout = stdout.trim().to_owned();
    let (stderr, _) = secrets.redact_tail(&ended.stderr, GUEST_OUTPUT_BYTES);
    let detail = serde_json::from_str::<serde_json::Value>(&stdout).ok();
    let last = |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_owned());
    let json_message = detail.as_ref().and_then(|d| d.get("message")).and_then(|m| m.as_str()).map(str::to_owned);
    let status = match ended.exit_code {
        0 => Status::Ok,
        EXIT_INVALID_ALERT => Status::InvalidAlert,
        EXIT_REJECTED => Status::Rejected,
        EXIT_MISSING_SETTING => Status::MissingSetting,
        126 | 127 => Status::Trap,
        _ if ended.oom_killed || ended.exit_code == 137 => Status::Memory,
        _ => Status::Failed,
    };
    let message = match status {
        Status::Ok => json_message
            .or_else(|| if detail.is_none() { last(&stdout) } else { None })
            .unwrap_or_else(|| "exited 0".into()),
        Status::Memory => format!("killed over its memory limit of {memory_mb} MiB (limits.memory_mb)"),
        _ => {
            let why =
                json_message.or_else(|| last(&stderr)).or_else(|| if detail.is_none() { last(&stdout) } else { None });
            match why {
                Some(why) => format!("exited with code {}: {why}", ended.exit_code),
                None => format!("exited with code {}", ended.exit_code),
            }
        }
    };
    let mut logs: Vec<LogLine> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| LogLine { level: "stderr".into(), message: l.to_owned() })
        .collect();
    if logs.len() > MAX_LOG_LINES {
        logs.drain(..logs.len() - MAX_LOG_LINES);
    }
    if ended.truncated {
        logs.push(LogLine { level: "warn".into(), message: "stdout was cut at the output limit".into() });
    }
    let detail = detail.or_else(|| {
        (!stdout.is_empty() && stdout.lines().count() > 1).then(|| serde_json::Value::String(stdout.clone()))
    });
    Execution { detail, logs, ..Execution::refused(status, message) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(code: i64, stdout: &str, stderr: &str) -> Ended {
        Ended { exit_code: code, oom_killed: false, stdout: stdout.into(), stderr: stderr.into(), truncated: false }
    }

    #[test]
    fn json_stdout_is_detail_and_message() {
        let e = execution(&ended(0, "{\"message\":\"posted\",\"status\":200}\n", ""), 64, &Secrets::default());
        assert_eq!(e.status, Status::Ok);
        assert_eq!(e.message, "posted");
        assert_eq!(e.detail.unwrap()["status"], 200);
    }

    #[test]
    fn exit_codes_map_to_statuses() {
        assert_eq!(execution(&ended(65, "", "bad alert\n"), 64, &Secrets::default()).status, Status::InvalidAlert);
        assert_eq!(execution(&ended(77, "", ""), 64, &Secrets::default()).status, Status::Rejected);
        assert_eq!(execution(&ended(78, "", ""), 64, &Secrets::default()).status, Status::MissingSetting);
        assert_eq!(execution(&ended(127, "", ""), 64, &Secrets::default()).status, Status::Trap);
        assert_eq!(execution(&ended(137, "", ""), 64, &Secrets::default()).status, Status::Memory);
        let failed = execution(&ended(1, "", "wget: server returned error: HTTP/1.1 500\n"), 64, &Secrets::default());
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.message, "exited with code 1: wget: server returned error: HTTP/1.1 500");
        assert_eq!(failed.logs.len(), 1);
    }

    #[test]
    fn secrets_are_redacted() {
        let e =
            execution(&ended(1, "", "POST https://hook/s3cr3t-token failed\n"), 64, &Secrets::new(["s3cr3t-token"]));
        assert_eq!(e.message, "exited with code 1: POST https://hook/*** failed");
        assert!(!format!("{e:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_secret_straddling_the_cut_of_stdout_or_stderr_leaves_no_part_of_itself() {
        let secret = "Canary-Tok3n-Straddling";
        let secrets = Secrets::new([secret]);
        for at in [1, 7, secret.len() - 1] {
            // stdout's first CONTAINER_STDOUT_BYTES end `at` bytes into the secret; stderr's last GUEST_OUTPUT_BYTES
            // begin `at` bytes into it. Both were captured with a margin beyond.
            let stdout = format!("{}{secret}{}", "o".repeat(CONTAINER_STDOUT_BYTES - at), "o".repeat(40));
            let stderr = format!("{}{secret}{}", "e".repeat(40), "e".repeat(GUEST_OUTPUT_BYTES - (secret.len() - at)));
            let ended = Ended { stdout: stdout.into(), stderr: stderr.into(), truncated: true, ..ended(0, "", "") };
            let e = execution(&ended, 64, &secrets);
            assert!(e.message.len() <= CONTAINER_STDOUT_BYTES && e.message.starts_with("ooo"), "{}", e.message.len());
            assert!(e.logs[0].message.len() <= GUEST_OUTPUT_BYTES, "{}", e.logs[0].message.len());
            let text = serde_json::to_string(&e).unwrap();
            let chars: Vec<char> = secret.chars().collect();
            for part in chars.windows(4).map(|w| w.iter().collect::<String>()) {
                assert!(!text.contains(&part), "{part:?} of the secret left, cut at {at}");
            }
        }
    }
}
