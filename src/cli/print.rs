//! What several commands print or read the same way: an execution, an alert file, a table cell.

use anyhow::{Context, Result};
use riposte::model::execution::Execution;
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// Prints an execution (status: message, detail, log lines; or JSON); exit code 0 only when it is ok.
pub fn execution(exec: &Execution, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(exec)?);
    } else {
        println!("{}: {}", exec.status.as_str(), cell(&exec.message));
        if let Some(detail) = &exec.detail {
            println!("detail: {}", cell(&detail.to_string()));
        }
        for line in &exec.logs {
            println!("[{}] {}", cell(&line.level), cell(&line.message));
        }
        for call in &exec.host_calls {
            println!("dry run, not made: {}", cell(&call.to_string()));
        }
    }
    Ok(if exec.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Text from an alert, a playbook or the registry, safe to print in a table: control characters and the
/// bidirectional overrides written as escapes (`\u{1b}`, see [`riposte::secrets::truncate::printable`]), so no cell can
/// move the cursor, recolour, retitle or rewrite the terminal. Every cell the CLI prints goes through here.
pub fn cell(text: &str) -> Cow<'_, str> {
    riposte::secrets::truncate::printable(text)
}

/// Reads an alert file, or stdin for `-`.
pub fn read_alert(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read alert file {}", path.display()))
}

/// An error as one line: each cause appended once (a cause whose text its parent already shows is skipped).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(super::cell("falco.error.x"), "falco.error.x");
        assert_eq!(super::cell("a\u{1b}[2Jb\r\n\u{9b}c\u{202e}"), "a\\u{1b}[2Jb\\u{d}\\u{a}\\u{9b}c\\u{202e}");
        assert_eq!(super::cell("é ✓"), "é ✓");
    }

    #[test]
    fn causes_already_shown_are_not_repeated() {
        let e =
            anyhow::Error::new(std::io::Error::other("disk full")).context("writing x: disk full").context("deploying");
        assert_eq!(super::one_line(&e), "deploying: writing x: disk full");
    }
}
