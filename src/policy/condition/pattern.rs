//! `matches` with its regular expressions compiled once, when the condition is created.
//!
//! The `cel` crate's own `matches` compiles its pattern on every call: on the runner's async threads, for every
//! alert (a pattern with a Unicode class such as `\w` costs 70–100 ms to compile). Here a condition's patterns
//! must be string literals; each is compiled when the condition is (refused then if it does not compile, is
//! longer than [`MAX_PATTERN_BYTES`] or compiles to more than [`MAX_PATTERN_COMPILED_BYTES`]), and kept with the
//! condition. The `matches` overload registered in the condition environment finds its compiled regex among
//! those of the condition being evaluated, which [`evaluating`] makes current on the evaluating thread (the
//! `cel` crate's overloads are plain `fn`s: they can reach nothing else). Matching a compiled regex is linear
//! in the text (an alert field, bounded), so evaluation stays cheap.

use crate::model::limits::{MAX_PATTERN_BYTES, MAX_PATTERN_COMPILED_BYTES};
use cel::common::types::{CelBool, CelString};
use cel::{Env, ExecutionError};
use regex::{Regex, RegexBuilder};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The compiled patterns of one condition, by their text.
#[derive(Debug, Default)]
pub(crate) struct Patterns(HashMap<String, Regex>);

impl Patterns {
    /// Compiles `pattern` unless it already is; the error says why it cannot be used, in one line.
    pub fn add(&mut self, pattern: &str) -> Result<(), String> {
        if !self.0.contains_key(pattern) {
            self.0.insert(pattern.to_owned(), compile(pattern)?);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the pattern of `matches` is {} bytes; at most {MAX_PATTERN_BYTES} (limits::MAX_PATTERN_BYTES) are allowed",
            pattern.len()
        ));
    }
    #[cfg(test)]
    COMPILED.with(|c| c.set(c.get() + 1));
    RegexBuilder::new(pattern).size_limit(MAX_PATTERN_COMPILED_BYTES).build().map_err(|e| match e {
        regex::Error::CompiledTooBig(limit) => format!(
            "the pattern {pattern:?} compiles to more than {} KiB (limits::MAX_PATTERN_COMPILED_BYTES): narrow its classes or repetitions (e.g. [0-9] or (?-u:\\w) instead of the Unicode \\d or \\w)",
            limit >> 10
        ),
        other => {
            let text = other.to_string();
            let why = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it does not parse");
            format!("the pattern {pattern:?} is not a valid regular expression: {}", why.trim().trim_start_matches("error: "))
        }
    })
}

#[cfg(test)]
thread_local! {
    /// Patterns compiled on this thread, for tests.
    pub(crate) static COMPILED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

thread_local! {
    /// The patterns of the condition being evaluated on this thread.
    static CURRENT: RefCell<Option<Arc<Patterns>>> = const { RefCell::new(None) };
}

/// Runs `evaluate` with `patterns` as the current condition's patterns on this thread.
pub(crate) fn evaluating<R>(patterns: Option<&Arc<Patterns>>, evaluate: impl FnOnce() -> R) -> R {
    let Some(patterns) = patterns else { return evaluate() };
    struct Restore(Option<Arc<Patterns>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(patterns.clone())));
    evaluate()
}

/// Registers `matches` (as `s.matches(re)` and `matches(s, re)`) on `env`, served from the current patterns.
pub(crate) fn register(env: &mut Env) {
    cel::add_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>, id = "matches")
        .expect("the environment has no regex overloads (the cel crate's regex feature is off)");
    cel::add_member_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>)
        .expect("the environment has no regex overloads (the cel crate's regex feature is off)");
}

fn matches(this: &CelString<'_>, re: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    CURRENT.with(|c| match c.borrow().as_ref().and_then(|p| p.0.get(re.inner())) {
        Some(regex) => Ok(CelBool::from(regex.is_match(this.inner()))),
        None => Err(ExecutionError::function_error(
            "matches",
            format!("the pattern {:?} was not compiled with the condition", re.inner()),
        )),
    })
}
