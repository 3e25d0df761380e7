//! Checking a trigger's topic before anything is written: a valid pattern, inside the subjects the alert stream
//! captures, and one that falcosidekick can actually publish on.
//!
//! falcosidekick publishes every alert on `falco.<priority>.<rule>` (its default `nats.subjecttemplate`): the
//! priority lower-cased (`Info` becomes `informational`), the rule slugged ([`crate::model::alert::rule_slug`]). A
//! topic such as `falco.info.*` (what the Kubeless response engine's README deployed) is a valid subject that
//! can never match, and a trigger on it would wait forever without a word. Such a topic is refused with the fix;
//! `force` keeps it for other publishers and custom subject templates. Topics that do not start with the
//! literal token `falco` belong to another publisher and are not second-guessed.

use crate::model::alert::{rule_slug, Priority};
use crate::model::trigger::{nats_subset, Pattern, PatternError};
use globset::GlobBuilder;

/// Why a topic cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopicError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(
        "topic {topic:?} is outside the subjects the alert stream captures ({subjects}); alerts on it would never \
         be stored (start the runner with --stream-subjects to widen them)"
    )]
    OutsideStream { topic: String, subjects: String },
    #[error(
        "topic {topic:?} can never match: {why}, use {fix} (or --force if another publisher or a custom \
         nats.subjecttemplate produces {topic:?})"
    )]
    NeverMatches { topic: String, why: String, fix: String },
    #[error(
        "topic {topic:?} contains whitespace, which no NATS subject holds: falcosidekick publishes rule names \
         slugged (lower case, every run of other characters one '_'), use {fix}"
    )]
    Whitespace { topic: String, fix: String },
}

/// Checks a topic: a valid pattern; inside `alert_subjects` when given (the alert stream's subjects); and,
/// unless `force`, one falcosidekick's subjects can match.
pub fn check_topic(topic: &str, alert_subjects: Option<&[String]>, force: bool) -> Result<Pattern, TopicError> {
    // A rule name typed as Falco shows it (`Terminal shell*`) is no pattern (whitespace): say so with its slug,
    // as for any other rule token that is no slug, rather than only "contains whitespace".
    if topic.chars().any(char::is_whitespace) {
        if let Err(TopicError::NeverMatches { fix, .. }) = falcosidekick_can_match(topic) {
            return Err(TopicError::Whitespace { topic: topic.to_owned(), fix });
        }
    }
    let pattern = Pattern::parse(topic)?;
    if let Some(subjects) = alert_subjects {
        if !subjects.iter().any(|s| nats_subset(pattern.nats_filter(), s)) {
            return Err(TopicError::OutsideStream { topic: topic.to_owned(), subjects: subjects.join(", ") });
        }
    }
    if !force {
        falcosidekick_can_match(topic)?;
    }
    Ok(pattern)
}

/// The priority tokens falcosidekick publishes, most severe first.
pub fn priority_tokens() -> impl Iterator<Item = (Priority, String)> {
    Priority::ALL.into_iter().map(|p| (p, p.as_str().to_ascii_lowercase()))
}

/// Refuses a topic under `falco.` that no `falco.<priority>.<rule slug>` subject can match, with the fix.
fn falcosidekick_can_match(topic: &str) -> Result<(), TopicError> {
    let never = |why: String, fix: String| TopicError::NeverMatches { topic: topic.to_owned(), why, fix };
    // A brace holding a '.' spans tokens: too free-form to reason about token by token.
    if brace_spans_tokens(topic) {
        return Ok(());
    }
    let tokens: Vec<&str> = topic.split('.').collect();
    if tokens[0] != "falco" {
        return Ok(());
    }
    fn open(t: &str) -> bool {
        t == ">" || t.contains("**")
    }
    let least = tokens.iter().filter(|t| !t.contains("**")).count();
    if !tokens.iter().any(|t| open(t)) && tokens.len() < 3 {
        let fix = if tokens.len() == 1 { "falco.>".to_owned() } else { format!("{topic}.*") };
        return Err(never("falcosidekick publishes on falco.<priority>.<rule>, three tokens".into(), fix));
    }
    if least > 3 {
        let fix = if tokens.iter().any(|t| open(t)) {
            format!("{}.{}.>", tokens[0], tokens[1])
        } else {
            format!("{}.{}.{}", tokens[0], tokens[1], tokens[2..].join("_"))
        };
        return Err(never(
            "a rule slug never contains '.' (falcosidekick publishes on falco.<priority>.<rule>)".into(),
            fix,
        ));
    }
    // The positional checks hold only while no earlier token may span several.
    if let Some(priority) = tokens.get(1).copied().filter(|t| !open(t)) {
        if let Some((why, token)) = check_priority(priority) {
            return Err(never(why, replace_token(&tokens, 1, &token)));
        }
        if let Some(rule) = tokens.get(2).copied().filter(|t| !open(t)) {
            if let Some((why, token)) = check_rule(rule) {
                return Err(never(why, replace_token(&tokens, 2, &token)));
            }
        }
    }
    Ok(())
}

fn brace_spans_tokens(topic: &str) -> bool {
    let mut depth = 0i32;
    for c in topic.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '.' if depth > 0 => return true,
            _ => {}
        }
    }
    false
}

fn replace_token(tokens: &[&str], i: usize, with: &str) -> String {
    let mut out: Vec<&str> = tokens.to_vec();
    out[i] = with;
    out.join(".")
}

/// One token as its alternatives: `pre{a,b}post` gives `[pre, [a, b], post]`; a token without braces (or with
/// nested or several groups, left whole) is its own single alternative.
struct Alternatives<'a> {
    prefix: &'a str,
    alternatives: Vec<&'a str>,
    suffix: &'a str,
    braced: bool,
}

impl<'a> Alternatives<'a> {
    fn of(token: &'a str) -> Alternatives<'a> {
        if let (Some(open), Some(close)) = (token.find('{'), token.rfind('}')) {
            let inner = &token[open + 1..close];
            if open < close && !inner.contains(['{', '}']) && !token[close + 1..].contains('{') {
                return Alternatives {
                    prefix: &token[..open],
                    alternatives: inner.split(',').collect(),
                    suffix: &token[close + 1..],
                    braced: true,
                };
            }
        }
        Alternatives { prefix: "", alternatives: vec![token], suffix: "", braced: false }
    }

    fn expanded(&self, alternative: &str) -> String {
        format!("{}{alternative}{}", self.prefix, self.suffix)
    }

    /// The token with each alternative replaced by `fix(alternative)`.
    fn rebuilt(&self, fix: impl Fn(&str) -> String) -> String {
        let fixed: Vec<String> = self.alternatives.iter().map(|a| fix(a)).collect();
        if self.braced {
            format!("{}{{{}}}{}", self.prefix, fixed.join(","), self.suffix)
        } else {
            fixed.concat()
        }
    }
}

/// Whether a one-token glob matches `text`.
fn token_matches(glob: &str, text: &str) -> bool {
    if glob == "*" {
        return true;
    }
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher().is_match(text))
        .unwrap_or(true)
}

/// `None` when every alternative of the priority token matches some priority; otherwise why, and the token
/// with the impossible alternatives replaced by the priority probably meant.
fn check_priority(token: &str) -> Option<(String, String)> {
    let alts = Alternatives::of(token);
    let possible = |glob: &str| priority_tokens().any(|(_, p)| token_matches(glob, &p));
    let bad: Vec<&str> = alts.alternatives.iter().copied().filter(|a| !possible(&alts.expanded(a))).collect();
    let first = *bad.first()?;
    let meant = |alt: &str| -> Option<(Priority, String)> {
        let lower = alt.to_lowercase();
        if possible(&alts.expanded(&lower)) {
            let p = priority_tokens().find(|(_, p)| token_matches(&alts.expanded(&lower), p))?;
            return Some((p.0, lower));
        }
        let literal = alts.expanded(&lower);
        priority_tokens()
            .find(|(_, p)| (literal.len() >= 3 && p.starts_with(&literal)) || literal.starts_with(p.as_str()))
    };
    let fixed = alts.rebuilt(|a| {
        if bad.contains(&a) {
            meant(a).map(|m| m.1).unwrap_or_else(|| a.to_owned())
        } else {
            a.to_owned()
        }
    });
    let tokens = priority_tokens().map(|(_, t)| t).collect::<Vec<_>>().join(", ");
    let why = match meant(first) {
        Some((p, t)) if !alts.braced && t == p.as_str().to_ascii_lowercase() => {
            format!("falcosidekick publishes {} alerts as falco.{t}.<rule>", p.as_str())
        }
        _ => format!(
            "{:?} is no priority falcosidekick publishes (it lower-cases Falco's: {tokens})",
            alts.expanded(first)
        ),
    };
    Some((why, fixed))
}

/// `None` when the rule token can match a slug; otherwise why, and the token slugged as falcosidekick would.
fn check_rule(token: &str) -> Option<(String, String)> {
    let alts = Alternatives::of(token);
    let bad = alts.alternatives.iter().map(|a| alts.expanded(a)).find(|a| !can_be_slug(a))?;
    let fixed = alts.rebuilt(|a| if can_be_slug(&alts.expanded(a)) { a.to_owned() } else { slug_glob(a) });
    Some((
        format!(
            "falcosidekick publishes rule names slugged ({bad:?} has upper-case letters, characters other than \
             a-z, 0-9 and '_', or a '_' doubled or at an end)"
        ),
        fixed,
    ))
}

/// Splits a glob into literal runs and glob syntax (`*`, `?`, `[...]`), in order.
fn glob_parts(glob: &str) -> Vec<(bool, String)> {
    let mut parts: Vec<(bool, String)> = Vec::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        let (literal, text) = match c {
            '*' | '?' => (false, c.to_string()),
            '[' => {
                let mut class = String::from('[');
                for d in chars.by_ref() {
                    class.push(d);
                    if d == ']' {
                        break;
                    }
                }
                (false, class)
            }
            _ => (true, c.to_string()),
        };
        match parts.last_mut() {
            Some((true, run)) if literal => run.push_str(&text),
            _ => parts.push((literal, text)),
        }
    }
    parts
}

/// Whether a one-token glob can match some slug: its literal characters are slug characters, no literal `__`,
/// no literal `_` at either end.
fn can_be_slug(glob: &str) -> bool {
    let parts = glob_parts(glob);
    let slug_chars = parts.iter().filter(|(l, _)| *l).all(|(_, run)| {
        run.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && !run.contains("__")
    });
    let ends = |p: Option<&(bool, String)>, at_start: bool| match p {
        Some((true, run)) => !(if at_start { run.starts_with('_') } else { run.ends_with('_') }),
        _ => true,
    };
    slug_chars && ends(parts.first(), true) && ends(parts.last(), false)
}

/// A one-token glob with its literal runs slugged: `*Terminal-Shell*` → `*terminal_shell*`.
fn slug_glob(glob: &str) -> String {
    let parts = glob_parts(glob);
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, (literal, text))| {
            if !literal {
                return text.clone();
            }
            // rule_slug trims at both ends; keep a separator next to glob syntax: `*_shell` stays.
            let slug = rule_slug(text);
            let lead = i > 0 && text.starts_with(|c: char| !c.is_ascii_alphanumeric()) && !slug.is_empty();
            let trail = i < last && text.ends_with(|c: char| !c.is_ascii_alphanumeric()) && !slug.is_empty();
            format!("{}{slug}{}", if lead { "_" } else { "" }, if trail { "_" } else { "" })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(topic: &str) -> (String, String) {
        match check_topic(topic, None, false) {
            Err(TopicError::NeverMatches { why, fix, .. }) => (why, fix),
            other => panic!("{topic}: {other:?}"),
        }
    }

    #[test]
    fn info_is_refused_with_informational() {
        let (why, fix) = refusal("falco.info.*");
        assert_eq!(fix, "falco.informational.*");
        assert_eq!(why, "falcosidekick publishes Informational alerts as falco.informational.<rule>");
        let message = check_topic("falco.info.*", None, false).unwrap_err().to_string();
        assert!(message.contains("use falco.informational.*") && message.contains("--force"), "{message}");
        assert_eq!(refusal("falco.Error.*").0, "falcosidekick publishes Error alerts as falco.error.<rule>");
        assert_eq!(refusal("falco.Error.*").1, "falco.error.*");
        assert_eq!(refusal("falco.warn.x").1, "falco.warning.x");
        assert_eq!(refusal("falco.crit.>").1, "falco.critical.>");
        assert_eq!(refusal("falco.{error,info}.*").1, "falco.{error,informational}.*");
        assert_eq!(refusal("falco.INFO*.*").1, "falco.info*.*");
        let (why, fix) = refusal("falco.loud.*");
        assert_eq!(fix, "falco.loud.*", "no guess when nothing is close");
        assert!(why.contains("emergency, alert, critical, error, warning, notice, informational, debug"), "{why}");
    }

    #[test]
    fn every_priority_falcosidekick_publishes_passes() {
        for (_, p) in priority_tokens() {
            check_topic(&format!("falco.{p}.*"), None, false).unwrap();
        }
        for ok in [
            "falco.>",
            "falco.**",
            "falco.*.*",
            "falco.*.>",
            "falco.{critical,error}.*",
            "falco.inf*.*",
            "falco.e?ror.x",
        ] {
            check_topic(ok, None, false).unwrap();
        }
    }

    #[test]
    fn rule_tokens_that_are_no_slug_are_refused_with_the_slug() {
        assert_eq!(refusal("falco.notice.Terminal_shell_in_container").1, "falco.notice.terminal_shell_in_container");
        assert_eq!(refusal("falco.error.write-below-binary-dir").1, "falco.error.write_below_binary_dir");
        assert_eq!(refusal("falco.error.write__below").1, "falco.error.write_below");
        assert_eq!(refusal("falco.error._x").1, "falco.error.x");
        assert_eq!(refusal("falco.*.*Shell-In*").1, "falco.*.*shell_in*");
        assert_eq!(refusal("falco.*.{terminal_shell,Write-Below}").1, "falco.*.{terminal_shell,write_below}");
        assert!(refusal("falco.error.x-y").0.contains("\"x-y\""));
        // Spaces and capitals, as Falco writes the rule: the slug, not only "contains whitespace".
        for force in [false, true] {
            let e = check_topic("falco.critical.Terminal shell*", None, force).unwrap_err();
            let fix = match &e {
                TopicError::Whitespace { fix, .. } => fix.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(fix, "falco.critical.terminal_shell*", "{e}");
        }
        for ok in ["falco.*.*_shell_*", "falco.*.terminal_shell_in_container", "falco.*.k8s_*", "falco.*.[a-z]*"] {
            check_topic(ok, None, false).unwrap();
        }
    }

    #[test]
    fn shapes_falcosidekick_never_publishes_are_refused() {
        assert_eq!(refusal("falco.error").1, "falco.error.*");
        assert_eq!(refusal("falco").1, "falco.>");
        assert_eq!(refusal("falco.error.terminal.shell").1, "falco.error.terminal_shell");
        assert_eq!(refusal("falco.error.x.>").1, "falco.error.>");
    }

    #[test]
    fn force_and_other_publishers_skip_the_falcosidekick_check() {
        check_topic("falco.info.*", None, true).unwrap();
        check_topic("falco.error.Custom-Rule", None, true).unwrap();
        check_topic("audit.info.*", None, false).unwrap();
        check_topic("falco.{info.x,error.y}", None, false).unwrap();
        // The pattern and the stream's subjects still hold with force.
        assert!(matches!(check_topic("falco.{", None, true), Err(TopicError::Pattern(_))));
        let subjects = ["falco.>".to_owned()];
        assert!(matches!(check_topic("other.x", Some(&subjects), true), Err(TopicError::OutsideStream { .. })));
    }
}
