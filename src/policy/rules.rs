//! Falco rules files (`falco_rules.yaml` and the like): which rules a trigger's topic would match.
//!
//! Each rule's alerts arrive on `falco.<priority>.<rule slug>` (see [`crate::model::alert::subject_for`]), so a topic
//! can be checked against the rules before it goes live. Files are read in the order given, as Falco loads
//! them: a later item for a rule already seen (`append`, `override`, `enabled: false`) changes its priority or
//! its enabled flag when it sets them. A rule whose priority no file gives is matched on every priority.

use crate::model::alert::{subject_for, Priority};
use crate::model::trigger::Pattern;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest rules file read (Falco's own default rules are about 100 KiB).
pub const MAX_RULES_FILE: u64 = 16 << 20;

/// One Falco rule, as far as subjects go.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule's name, as written.
    pub name: String,
    /// Its priority; `None` when no file gave one.
    pub priority: Option<Priority>,
    /// `enabled: false` rules never fire.
    pub enabled: bool,
}

impl Rule {
    /// The subjects falcosidekick publishes this rule's alerts on (one; all eight when the priority is unknown).
    pub fn subjects(&self) -> Vec<String> {
        match self.priority {
            Some(p) => vec![subject_for(p, &self.name)],
            None => Priority::ALL.iter().map(|p| subject_for(*p, &self.name)).collect(),
        }
    }

    /// The subject to show: `falco.<priority>.<slug>`, with `*` for an unknown priority.
    pub fn shown_subject(&self) -> String {
        match self.priority {
            Some(p) => subject_for(p, &self.name),
            None => subject_for(Priority::Debug, &self.name).replacen(".debug.", ".*.", 1),
        }
    }
}

/// The rules of one or more files, in load order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Every rule, first definition order.
    pub rules: Vec<Rule>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

/// Why rules could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read Falco rules file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Falco rules file {path} is larger than {max} bytes: give the rules files Falco loads, not a bundle")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path} is not a Falco rules file: {why}")]
    Invalid { path: PathBuf, why: String },
}

impl RuleSet {
    /// Reads rules files in order.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RulesError> {
        let mut set = RuleSet::default();
        for path in paths {
            let text = read_bounded(path)?;
            set.add(&text).map_err(|why| RulesError::Invalid { path: path.clone(), why })?;
            set.files.push(path.clone());
        }
        Ok(set)
    }

    /// Adds the rules of one file's text.
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        let items: Vec<serde_norway::Value> = match serde_norway::from_str::<Option<Vec<serde_norway::Value>>>(text) {
            Ok(items) => items.unwrap_or_default(),
            Err(e) => return Err(format!("{e} (a rules file is a YAML list of rule, macro and list items)")),
        };
        for item in items {
            let Some(map) = item.as_mapping() else { continue };
            let Some(name) = map.get("rule") else { continue };
            let Some(name) = name.as_str() else {
                return Err(format!("a rule's name is not text: {name:?}"));
            };
            let priority = match map.get("priority").map(|p| p.as_str().and_then(Priority::parse).ok_or(p)) {
                Some(Ok(p)) => Some(p),
                Some(Err(p)) => return Err(format!("rule {name:?} has priority {p:?}, which Falco does not know")),
                None => None,
            };
            let enabled = map.get("enabled").and_then(serde_norway::Value::as_bool);
            match self.rules.iter_mut().find(|r| r.name == name) {
                Some(rule) => {
                    rule.priority = priority.or(rule.priority);
                    rule.enabled = enabled.unwrap_or(rule.enabled);
                }
                None => self.rules.push(Rule { name: name.to_owned(), priority, enabled: enabled.unwrap_or(true) }),
            }
        }
        Ok(())
    }

    /// The rules whose alerts the pattern would match, in load order.
    pub fn matching(&self, pattern: &Pattern) -> Vec<&Rule> {
        self.rules.iter().filter(|r| r.subjects().iter().any(|s| pattern.matches(s))).collect()
    }
}

fn read_bounded(path: &Path) -> Result<String, RulesError> {
    let read = |source| RulesError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_RULES_FILE + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_RULES_FILE {
        return Err(RulesError::TooLarge { path: path.to_owned(), max: MAX_RULES_FILE });
    }
    String::from_utf8(bytes).map_err(|e| RulesError::Invalid { path: path.to_owned(), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
- required_engine_version: 0.31.0
- list: shell_binaries
  items: [bash, sh]
- macro: spawned_process
  condition: evt.type = execve
- rule: Terminal shell in container
  desc: A shell was used as the entrypoint/exec point into a container
  condition: spawned_process and container
  output: A shell was spawned in a container (user=%user.name)
  priority: NOTICE
- rule: Write below binary dir
  condition: open_write
  output: File below a known binary directory opened for writing
  priority: ERROR
- rule: "Read sensitive file (untrusted)"
  condition: open_read
  output: Sensitive file opened
  priority: WARNING
- rule: Contact K8S API Server From Container
  condition: outbound
  output: Unexpected connection to K8s API Server
  priority: info
  enabled: false
"#;

    fn rules() -> RuleSet {
        let mut set = RuleSet::default();
        set.add(RULES).unwrap();
        set
    }

    fn names(set: &RuleSet, topic: &str) -> Vec<String> {
        set.matching(&Pattern::parse(topic).unwrap()).into_iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn rules_are_slugged_like_falcosidekick_and_matched() {
        let set = rules();
        assert_eq!(set.rules.len(), 4);
        assert_eq!(set.rules[2].shown_subject(), "falco.warning.read_sensitive_file_untrusted");
        assert_eq!(set.rules[3].shown_subject(), "falco.informational.contact_k8s_api_server_from_container");
        assert!(!set.rules[3].enabled);
        assert_eq!(names(&set, "falco.error.*"), ["Write below binary dir"]);
        assert_eq!(names(&set, "falco.*.*shell*"), ["Terminal shell in container"]);
        assert_eq!(
            names(&set, "falco.{notice,warning}.*"),
            ["Terminal shell in container", "Read sensitive file (untrusted)"]
        );
        assert_eq!(names(&set, "falco.informational.*"), ["Contact K8S API Server From Container"]);
        assert_eq!(names(&set, "falco.>").len(), 4);
        assert!(names(&set, "falco.critical.*").is_empty());
    }

    #[test]
    fn later_items_change_priority_and_enabled_and_unknown_priorities_match_any() {
        let mut set = rules();
        set.add("- rule: Write below binary dir\n  priority: CRITICAL\n- rule: Terminal shell in container\n  enabled: false\n- rule: Local only\n  append: true\n").unwrap();
        assert_eq!(names(&set, "falco.critical.*"), ["Write below binary dir", "Local only"]);
        assert!(!set.rules[0].enabled);
        assert_eq!(set.rules[4].shown_subject(), "falco.*.local_only");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let mut set = RuleSet::default();
        assert!(set.add("- rule: X\n  priority: LOUD\n").unwrap_err().contains("priority"));
        assert!(set.add("rule: [").is_err());
        assert!(set.add("a: b\n").unwrap_err().contains("YAML list"));
        set.add("").unwrap();
    }

    #[test]
    fn a_rules_file_over_the_bound_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::File::create(&path).unwrap().set_len(MAX_RULES_FILE + 1).unwrap();
        assert!(matches!(RuleSet::load(std::slice::from_ref(&path)), Err(RulesError::TooLarge { .. })));
        std::fs::write(&path, RULES).unwrap();
        assert_eq!(RuleSet::load(&[path]).unwrap().rules.len(), 4);
        assert!(matches!(RuleSet::load(&[dir.path().join("none")]), Err(RulesError::Read { .. })));
    }
}
