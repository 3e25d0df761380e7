//! Triggers: a subject pattern bound to one function.
//!
//! A pattern is either a NATS subject with `*` / `>` wildcards (`falco.error.*`, `falco.>`) or a glob for
//! richer matches (`falco.{critical,error}.*`, `falco.*.*shell*`, `falco.**`). JetStream consumers on
//! nats-server 2.9 take one filter subject, so every pattern has a *NATS form*: the narrowest NATS subject that
//! covers everything the glob can match. The consumer filters on it; [`Pattern::matches`] decides the exact
//! match. In a glob, `*` and `?` never cross a `.`; `**` does.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

/// A trigger as stored in the registry (`triggers.<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Its name, e.g. "falco-slack-trigger-0".
    pub name: String,
    /// The function it runs.
    pub function: String,
    /// The subject pattern, as the user wrote it.
    pub topic: String,
    /// A condition over the whole alert (CEL, [`crate::policy::condition`]): alerts it rejects are acked unrun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// What an alert whose condition cannot be evaluated does (`--on-condition-error`); triggers stored before
    /// the option existed load as `skip`.
    #[serde(default, skip_serializing_if = "OnConditionError::is_skip")]
    pub on_condition_error: OnConditionError,
}

/// What an alert does when the trigger's condition cannot be evaluated on it (a field of the wrong type, a
/// missing key). Either way the error is counted and warned about; with `skip` the alert gets a result of
/// status `condition-error` and is not run, so a destructive playbook never acts on an alert its condition
/// could not judge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnConditionError {
    /// Record `condition-error` and do not run the function (the default).
    #[default]
    Skip,
    /// Run the function as if the condition had accepted the alert.
    Run,
}

impl OnConditionError {
    /// Whether it is the default, `skip`.
    pub fn is_skip(&self) -> bool {
        *self == OnConditionError::Skip
    }

    /// The word, as in `--on-condition-error`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConditionError::Skip => "skip",
            OnConditionError::Run => "run",
        }
    }
}

impl std::str::FromStr for OnConditionError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(OnConditionError::Skip),
            "run" => Ok(OnConditionError::Run),
            other => Err(format!(
                "{other:?} is not a choice: write skip (record condition-error, do not run) or run (run as if accepted)"
            )),
        }
    }
}

impl Trigger {
    /// Its condition as the CLI shows it: `EXPR`, with ` (on condition error: run)` when that is chosen; `None`
    /// without a condition.
    pub fn shown_condition(&self) -> Option<String> {
        let when = self.when.as_ref()?;
        Some(match self.on_condition_error.is_skip() {
            true => when.clone(),
            false => format!("{when} (on condition error: {})", self.on_condition_error.as_str()),
        })
    }

    /// The durable consumer that feeds this trigger. The pattern's digest is part of the name, so a trigger
    /// re-created with another topic gets a fresh consumer (nats-server 2.9 cannot change a filter).
    pub fn consumer_name(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(self.topic.as_bytes()));
        format!("riposte-{}-{}", self.name, &digest[..8])
    }
}

/// A parsed subject pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    filter: String,
    glob: Option<GlobMatcher>,
}

/// Why a pattern cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatternError {
    #[error("topic {0:?} is empty: give a subject pattern such as 'falco.error.*'")]
    Empty(String),
    #[error("topic {topic:?} is not a valid pattern: {why}")]
    Invalid { topic: String, why: String },
}

impl Pattern {
    /// Parses a NATS subject pattern or a glob.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let invalid = |why: &str| PatternError::Invalid { topic: text.to_owned(), why: why.to_owned() };
        if text.trim().is_empty() {
            return Err(PatternError::Empty(text.to_owned()));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace"));
        }
        if text.starts_with('.') || text.ends_with('.') || text.contains("..") {
            return Err(invalid("a subject token is empty (leading, trailing or doubled '.')"));
        }
        let tokens: Vec<&str> = text.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.contains('>') && (*token != ">" || i + 1 != tokens.len()) {
                return Err(invalid("'>' must be a whole token and the last one"));
            }
        }
        let is_glob = tokens
            .iter()
            .any(|t| t.chars().any(|c| matches!(c, '?' | '[' | ']' | '{' | '}')) || (t.contains('*') && *t != "*"));
        if !is_glob {
            return Ok(Pattern { text: text.to_owned(), filter: text.to_owned(), glob: None });
        }
        // globset's separator is '/': map subject tokens onto path components.
        let as_path = tokens.iter().map(|t| if *t == ">" { "**" } else { t }).collect::<Vec<_>>().join("/");
        let glob = GlobBuilder::new(&as_path)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| invalid(&e.kind().to_string()))?
            .compile_matcher();
        Ok(Pattern { text: text.to_owned(), filter: nats_form(&tokens), glob: Some(glob) })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The NATS subject (with `*`/`>`) a consumer filters on: covers every subject the pattern matches.
    pub fn nats_filter(&self) -> &str {
        &self.filter
    }

    /// Whether a concrete subject matches exactly.
    pub fn matches(&self, subject: &str) -> bool {
        match &self.glob {
            Some(glob) => !subject.contains('/') && glob.is_match(subject.replace('.', "/")),
            None => nats_matches(&self.filter, subject),
        }
    }
}

/// The widest-needed NATS subject for glob tokens: literal tokens stay, a token with glob characters becomes
/// `*`, and from a token that may span several subject tokens (`**`, or braces holding a '.') on, `>`.
fn nats_form(tokens: &[&str]) -> String {
    let mut out = Vec::new();
    // Braces may contain '.', which split() already cut: re-join tokens inside an open brace.
    let mut depth = 0i32;
    let mut spans = false;
    for token in tokens {
        let was_open = depth > 0;
        depth += token.matches('{').count() as i32 - token.matches('}').count() as i32;
        if was_open || depth > 0 {
            spans = true;
        }
        if spans || token.contains("**") || *token == ">" {
            out.push(">");
            break;
        }
        let literal = !token.chars().any(|c| matches!(c, '*' | '?' | '[' | ']' | '{' | '}'));
        out.push(if literal { token } else { "*" });
    }
    out.join(".")
}

/// NATS subject matching: `*` is one token, `>` one or more at the end.
pub fn nats_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every subject `filter` matches is also matched by `within` (both NATS subjects with wildcards):
/// a trigger's filter must lie inside the alert stream's subjects, or its consumer would see nothing.
pub fn nats_subset(filter: &str, within: &str) -> bool {
    let f: Vec<&str> = filter.split('.').collect();
    let w: Vec<&str> = within.split('.').collect();
    for (i, wt) in w.iter().enumerate() {
        let Some(ft) = f.get(i) else { return false };
        match (*wt, *ft) {
            (">", _) => return true,
            (_, ">") => return false,
            ("*", _) => {}
            (a, b) if a == b => {}
            _ => return false,
        }
    }
    f.len() == w.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_stored_before_on_condition_error_loads_as_skip_and_run_is_kept() {
        let old: Trigger =
            serde_json::from_str(r#"{"name":"t","function":"f","topic":"falco.>","when":"true"}"#).unwrap();
        assert_eq!(old.on_condition_error, OnConditionError::Skip);
        assert!(!serde_json::to_string(&old).unwrap().contains("on_condition_error"), "the default is not written");
        let run = Trigger { on_condition_error: OnConditionError::Run, ..old };
        let back: Trigger = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back.on_condition_error, OnConditionError::Run);
        assert!("sometimes".parse::<OnConditionError>().unwrap_err().contains("write skip"));
    }

    #[test]
    fn nats_patterns_keep_their_form() {
        let p = Pattern::parse("falco.error.*").unwrap();
        assert_eq!(p.nats_filter(), "falco.error.*");
        assert!(p.matches("falco.error.write_below_binary_dir"));
        assert!(!p.matches("falco.notice.write_below_binary_dir"));
        assert!(!p.matches("falco.error.a.b"));
        let p = Pattern::parse("falco.>").unwrap();
        assert!(p.matches("falco.error.x") && !p.matches("falco"));
    }

    #[test]
    fn globs_get_a_covering_nats_form_and_match_exactly() {
        let p = Pattern::parse("falco.{critical,error}.*").unwrap();
        assert_eq!(p.nats_filter(), "falco.*.*");
        assert!(p.matches("falco.critical.x") && p.matches("falco.error.y"));
        assert!(!p.matches("falco.notice.x") && !p.matches("falco.error.x.y"));
        let p = Pattern::parse("falco.*.*shell*").unwrap();
        assert_eq!(p.nats_filter(), "falco.*.*");
        assert!(p.matches("falco.notice.terminal_shell_in_container"));
        assert!(!p.matches("falco.notice.write_below_etc"));
        let p = Pattern::parse("falco.**").unwrap();
        assert_eq!(p.nats_filter(), "falco.>");
        assert!(p.matches("falco.a.b"));
        let p = Pattern::parse("falco.{error.x,critical.y}").unwrap();
        assert_eq!(p.nats_filter(), "falco.>");
        assert!(p.matches("falco.error.x") && !p.matches("falco.error.y"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        assert!(matches!(Pattern::parse(""), Err(PatternError::Empty(_))));
        for bad in ["falco..x", "falco.>.x", "falco.a>", ".falco", "falco.[", "falco.{a", "fal co"] {
            assert!(matches!(Pattern::parse(bad), Err(PatternError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn subsets() {
        assert!(nats_subset("falco.error.*", "falco.>"));
        assert!(nats_subset("falco.>", "falco.>"));
        assert!(!nats_subset("falco", "falco.>"));
        assert!(!nats_subset("other.x", "falco.>"));
        assert!(!nats_subset("falco.>", "falco.*.*"));
        assert!(nats_subset("falco.a.*", "falco.*.*"));
    }
}
