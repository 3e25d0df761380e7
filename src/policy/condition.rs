//! Conditions over the whole alert, written in CEL (the Common Expression Language Kubernetes uses for
//! admission policies), and dedup keys written the same way.
//!
//! The alert is the variable `alert`, with its fields as falcosidekick sends them: `rule`, `priority` (the
//! text, e.g. "Critical"), `output`, `source`, `hostname`, `tags` (a list), `time`, `uuid` and
//! `output_fields` (a map: `alert.output_fields["k8s.ns.name"]`). Priorities compare in Falco's order through
//! the variable `priority` (the alert's priority as a level) and the constants `Debug` < `Informational` (also
//! `Info`) < `Notice` < `Warning` < `Error` < `Critical` < `Alert` < `Emergency`: `priority >= Critical`.
//!
//! The `cel` crate parses and evaluates; it has no type checker, so [`Condition::compile`] walks the parsed
//! expression itself: every name, field and function must be known and the operand types must fit, or the
//! expression is refused with the line and column of the fault. The walk also records which alert fields
//! the expression reads, so evaluation builds only those (turning a map of twenty output fields into CEL
//! values costs more than evaluating most conditions).
//!
//! Before any of that, the text's nesting depth is bounded ([`depth`], `MAX_EXPRESSION_DEPTH`): the parser,
//! the check and the evaluator recurse per level, and a deep enough expression would overflow the stack of the
//! runner evaluating it.
//!
//! A regular expression (`matches`) must be a string literal: it is compiled with the condition, bounded, and
//! reused for every alert ([`pattern`]).

mod depth;
mod pattern;

use crate::model::alert::{Alert, Priority};
use crate::model::limits::{MAX_COMPREHENSION_DEPTH, MAX_EXPRESSION_BYTES, MAX_EXPRESSION_DEPTH};
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Program, Value};
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

/// The priority constants, in Falco's order (the value of each is its level).
pub const PRIORITY_LEVELS: [(&str, Priority); 8] = [
    ("Debug", Priority::Debug),
    ("Informational", Priority::Informational),
    ("Notice", Priority::Notice),
    ("Warning", Priority::Warning),
    ("Error", Priority::Error),
    ("Critical", Priority::Critical),
    ("Alert", Priority::Alert),
    ("Emergency", Priority::Emergency),
];

/// A priority's level: Debug 0 … Emergency 7, so `priority >= Critical` reads as Falco orders them.
pub fn level(p: Priority) -> i64 {
    PRIORITY_LEVELS.iter().position(|(_, q)| *q == p).unwrap_or(0) as i64
}

/// The alert's fields an expression may read, and their types.
const ALERT_FIELDS: [(&str, Ty); 9] = [
    ("rule", Ty::String),
    ("priority", Ty::String),
    ("output", Ty::String),
    ("source", Ty::String),
    ("hostname", Ty::String),
    ("tags", Ty::List),
    ("time", Ty::String),
    ("uuid", Ty::String),
    ("output_fields", Ty::Map),
];

/// Functions and methods of CEL's standard library an expression may call (operators aside).
const FUNCTIONS: [(&str, Ty); 16] = [
    ("size", Ty::Int),
    ("contains", Ty::Bool),
    ("startsWith", Ty::Bool),
    ("endsWith", Ty::Bool),
    ("matches", Ty::Bool),
    ("string", Ty::String),
    ("int", Ty::Int),
    ("uint", Ty::Dyn),
    ("double", Ty::Dyn),
    ("bool", Ty::Bool),
    ("dyn", Ty::Dyn),
    ("type", Ty::Dyn),
    ("orValue", Ty::Dyn),
    ("hasValue", Ty::Bool),
    ("value", Ty::Dyn),
    ("or", Ty::Dyn),
];

/// A compiled condition (or dedup key), ready to evaluate on alerts.
pub struct Condition {
    text: String,
    program: Program,
    /// The regular expressions of its `matches` calls, compiled; None when it has none.
    patterns: Option<Arc<pattern::Patterns>>,
    /// What the expression reads of the alert, so evaluation builds only that.
    reads: Reads,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.text).finish()
    }
}

/// Why an expression was refused, with where (1-based line and column).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} {text:?} is not valid at line {line}, column {column}: {why}")]
pub struct ConditionError {
    /// "condition" or "dedup key".
    pub what: &'static str,
    pub text: String,
    pub line: usize,
    pub column: usize,
    pub why: String,
}

/// What a condition's result must be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Bool,
    Any,
}

#[derive(Debug, Default, Clone)]
struct Reads {
    /// Top-level alert fields read.
    fields: BTreeSet<&'static str>,
    /// Output fields read by name; `None` when the map is used whole (iterated, indexed by a computed key).
    output_fields: Option<BTreeSet<String>>,
    /// The alert used as a value of its own: build everything.
    whole: bool,
}

/// The types the check tells apart; `Dyn` is anything (a map value, a comprehension variable).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
    Alert,
    Dyn,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a bool",
            Ty::Int => "an int",
            Ty::Double => "a double",
            Ty::String => "a string",
            Ty::Bytes => "bytes",
            Ty::Null => "null",
            Ty::List => "a list",
            Ty::Map => "a map",
            Ty::Alert => "the alert",
            Ty::Dyn => "a value",
        }
    }
    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Double)
    }
    /// Whether values of the two types can be compared (`Dyn` fits anything).
    fn comparable(self, other: Ty) -> bool {
        self == Ty::Dyn || other == Ty::Dyn || self == other || (self.numeric() && other.numeric())
    }
}

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    pattern::register(&mut env);
    Arc::new(env)
});

impl Condition {
    /// Compiles a trigger condition: it must parse, name only what an alert has, and give a bool.
    pub fn compile(text: &str) -> Result<Condition, ConditionError> {
        compile(text, "condition", Want::Bool)
    }

    /// Compiles a dedup key: any value (its text is the key).
    pub fn compile_key(text: &str) -> Result<Condition, ConditionError> {
        compile(text, "dedup key", Want::Any)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the alert matches. An evaluation error (a missing key, a type mismatch at run time) is an
    /// `Err` with the reason: callers treat it as no match and say why.
    pub fn matches(&self, alert: &Alert) -> Result<bool, String> {
        match self.evaluate(alert)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("the condition gave {} instead of true or false", describe(&other))),
        }
    }

    /// The key's text for this alert (strings as they are, other values in CEL's form).
    pub fn key(&self, alert: &Alert) -> Result<String, String> {
        Ok(match self.evaluate(alert)? {
            Value::String(s) => s.to_string(),
            other => describe(&other),
        })
    }

    fn evaluate(&self, alert: &Alert) -> Result<Value, String> {
        let mut ctx = Context::with_env(ENV.clone());
        ctx.set_variable_resolver(&Levels);
        ctx.add_variable_from_value("alert", self.reads.build(alert));
        ctx.add_variable_from_value("priority", level(alert.priority));
        pattern::evaluating(self.patterns.as_ref(), || self.program.execute(&ctx)).map_err(|e| e.to_string())
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.as_str()),
        Value::Int(i) => i.to_string(),
        Value::UInt(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

/// The priority constants, served without building them per alert.
struct Levels;

static LEVEL_VALUES: LazyLock<Vec<(&'static str, Box<dyn Val>)>> = LazyLock::new(|| {
    let mut v: Vec<(&'static str, Box<dyn Val>)> = PRIORITY_LEVELS
        .iter()
        .map(|(name, p)| (*name, Box::<dyn Val>::try_from(Value::from(level(*p))).expect("an int converts")))
        .collect();
    v.push(("Info", Box::<dyn Val>::try_from(Value::from(level(Priority::Informational))).expect("an int converts")));
    v
});

impl VariableResolver for Levels {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        LEVEL_VALUES.iter().find(|(n, _)| *n == variable).map(|(_, v)| CowVal::Borrowed(v.as_ref()))
    }
}

fn is_level(name: &str) -> bool {
    name == "Info" || PRIORITY_LEVELS.iter().any(|(n, _)| *n == name)
}

impl Reads {
    fn build(&self, alert: &Alert) -> HashMap<String, Value> {
        let mut m: HashMap<String, Value> = HashMap::new();
        let wants = |f: &str| self.whole || self.fields.contains(f);
        let text = |s: &str| Value::String(Arc::new(s.to_owned()));
        for (name, value) in [
            ("rule", &alert.rule),
            ("output", &alert.output),
            ("source", &alert.source),
            ("hostname", &alert.hostname),
            ("time", &alert.time),
            ("uuid", &alert.uuid),
        ] {
            if wants(name) {
                m.insert(name.to_owned(), text(value));
            }
        }
        if wants("priority") {
            m.insert("priority".into(), text(alert.priority.as_str()));
        }
        if wants("tags") {
            m.insert("tags".into(), Value::List(Arc::new(alert.tags.iter().map(|t| text(t)).collect())));
        }
        if wants("output_fields") {
            let fields: HashMap<String, Value> = match (&self.output_fields, self.whole) {
                (Some(names), false) => names
                    .iter()
                    .filter_map(|n| alert.output_fields.get(n).map(|v| (n.clone(), json_to_cel(v))))
                    .collect(),
                _ => alert.output_fields.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect(),
            };
            m.insert("output_fields".into(), fields.into());
        }
        m
    }
}

fn json_to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect::<HashMap<String, Value>>().into()
        }
    }
}

fn compile(text: &str, what: &'static str, want: Want) -> Result<Condition, ConditionError> {
    let refuse =
        |line: usize, column: usize, why: String| ConditionError { what, text: text.to_owned(), line, column, why };
    if text.len() > MAX_EXPRESSION_BYTES {
        return Err(refuse(1, 1, format!("it is longer than {MAX_EXPRESSION_BYTES} bytes")));
    }
    if text.trim().is_empty() {
        return Err(refuse(1, 1, "it is empty; write e.g. 'priority >= Critical'".into()));
    }
    // Measured before parsing: the parser itself recurses per level.
    let (depth, deepest) = depth::nesting(text);
    if depth > MAX_EXPRESSION_DEPTH {
        let (line, column) = position(text, Some(deepest));
        return Err(refuse(
            line,
            column,
            format!(
                "it nests {depth} levels deep; at most {MAX_EXPRESSION_DEPTH} (limits::MAX_EXPRESSION_DEPTH) are allowed: split it (e.g. a long chain of `==` into `x in [...]`; a function's triggers' conditions are OR'ed)"
            ),
        ));
    }
    let program = ENV.compile(text).map_err(|errors| match errors.errors.first() {
        Some(e) => refuse(e.pos.0.max(1) as usize, e.pos.1.max(1) as usize, first_line(&e.msg)),
        None => refuse(1, 1, "it does not parse".into()),
    })?;
    let mut checker = Checker {
        reads: Reads { output_fields: Some(BTreeSet::new()), ..Reads::default() },
        scope: Vec::new(),
        comprehensions: 0,
        patterns: pattern::Patterns::default(),
    };
    let result = checker.check(program.expression()).and_then(|ty| match (want, ty) {
        (Want::Bool, Ty::Bool | Ty::Dyn) | (Want::Any, _) => Ok(()),
        (Want::Bool, other) => {
            Err((program.expression().id, format!("a condition must be true or false, this gives {}", other.name())))
        }
    });
    if let Err((id, why)) = result {
        let (line, column) = position(text, program.source_info().offset_for(id).map(|(s, _)| s as usize));
        return Err(refuse(line, column, why));
    }
    let patterns = Some(checker.patterns).filter(|p| !p.is_empty()).map(Arc::new);
    let condition = Condition { text: text.to_owned(), program, patterns, reads: checker.reads };
    if let Some(why) = probe(&condition, want) {
        let why = first_line(&why);
        return Err(refuse(
            1,
            1,
            format!("it fails on every alert that has the fields it names ({why}): check the types and names it uses"),
        ));
    }
    Ok(condition)
}

fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or_default().to_owned()
}

/// 1-based line and column of a byte offset (counted in characters).
fn position(text: &str, offset: Option<usize>) -> (usize, usize) {
    let offset = offset.unwrap_or(0).min(text.len());
    let before = &text[..(0..=offset).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (line, column)
}

type Fault = (u64, String);

struct Checker {
    reads: Reads,
    /// Comprehension variables in scope.
    scope: Vec<String>,
    /// Comprehensions around the expression being checked.
    comprehensions: usize,
    /// The patterns of `matches`, compiled as they are met.
    patterns: pattern::Patterns,
}

impl Checker {
    fn check(&mut self, e: &IdedExpr) -> Result<Ty, Fault> {
        let fault = |why: String| Err((e.id, why));
        match &e.expr {
            Expr::Unspecified => fault("an empty expression".into()),
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
            }),
            Expr::Ident(name) => {
                if self.scope.iter().any(|v| v == name) {
                    Ok(Ty::Dyn)
                } else if name == "alert" {
                    self.reads.whole = true;
                    Ok(Ty::Alert)
                } else if name == "priority" || is_level(name) {
                    Ok(Ty::Int)
                } else {
                    fault(format!(
                        "unknown name `{name}`: the alert is `alert` (e.g. alert.rule), its level is `priority`, levels are Debug, Informational, Notice, Warning, Error, Critical, Alert, Emergency"
                    ))
                }
            }
            Expr::Select(s) => {
                if let Some(path) = self.output_field_path(e) {
                    // Output field names contain dots (`k8s.ns.name`): selecting fields on the map never
                    // finds them. `has(alert.output_fields.x)` of one plain name stays allowed.
                    if !(s.test && path.len() == 1) {
                        return fault(dotted_field_hint(&path, s.test));
                    }
                }
                if let Some(ty) = self.alert_field(&s.operand, &s.field, e.id)? {
                    return Ok(if s.test { Ty::Bool } else { ty });
                }
                if self.is_output_fields(&s.operand) {
                    self.read_output_field(&s.field);
                    return Ok(if s.test { Ty::Bool } else { Ty::Dyn });
                }
                match self.check(&s.operand)? {
                    Ty::Map | Ty::Dyn => Ok(if s.test { Ty::Bool } else { Ty::Dyn }),
                    other => fault(format!("`.{}`: {} has no fields", s.field, other.name())),
                }
            }
            Expr::Call(c) => self.call(e.id, &c.func_name, c.target.as_deref(), &c.args),
            Expr::List(l) => {
                for item in &l.elements {
                    self.check(item)?;
                }
                Ok(Ty::List)
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.check(&me.key)?;
                        self.check(&me.value)?;
                    }
                }
                Ok(Ty::Map)
            }
            Expr::Struct(_) => fault("message construction is not supported here".into()),
            Expr::Comprehension(c) => {
                if self.comprehensions >= MAX_COMPREHENSION_DEPTH {
                    return fault(format!(
                        "all/exists/exists_one/map/filter nest at most {MAX_COMPREHENSION_DEPTH} deep (each level multiplies the work per alert by a list's size)"
                    ));
                }
                match self.check(&c.iter_range)? {
                    Ty::List | Ty::Map | Ty::Dyn => {}
                    other => return Err((c.iter_range.id, format!("cannot iterate over {}", other.name()))),
                }
                self.check(&c.accu_init)?;
                let depth = self.scope.len();
                self.scope.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.scope.push(v2.clone());
                }
                self.scope.push(c.accu_var.clone());
                self.comprehensions += 1;
                let checked = (|| {
                    self.check(&c.loop_cond)?;
                    self.check(&c.loop_step)?;
                    self.check(&c.result)
                })();
                self.comprehensions -= 1;
                self.scope.truncate(depth);
                checked
            }
        }
    }

    /// `alert.<field>`: Some(type) when `operand` is the alert itself; refuses an unknown field.
    fn alert_field(&mut self, operand: &IdedExpr, field: &str, id: u64) -> Result<Option<Ty>, Fault> {
        if !matches!(&operand.expr, Expr::Ident(n) if n == "alert" && !self.scope.iter().any(|v| v == n)) {
            return Ok(None);
        }
        match ALERT_FIELDS.iter().find(|(f, _)| *f == field) {
            Some((f, ty)) => {
                self.reads.fields.insert(f);
                if *f == "output_fields" {
                    // Used as a map of its own (iterated, passed on): every output field is read.
                    self.reads.output_fields = None;
                }
                Ok(Some(*ty))
            }
            None => Err((
                id,
                format!(
                    "the alert has no field `{field}` (it has: {})",
                    ALERT_FIELDS.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// Whether `e` is `alert.output_fields` (recording the read of the field, not of the whole map).
    fn is_output_fields(&mut self, e: &IdedExpr) -> bool {
        match &e.expr {
            Expr::Select(s) if s.field == "output_fields" && !s.test => {
                let is =
                    matches!(&s.operand.expr, Expr::Ident(n) if n == "alert" && !self.scope.iter().any(|v| v == n));
                if is {
                    self.reads.fields.insert("output_fields");
                }
                is
            }
            _ => false,
        }
    }

    /// The fields selected on `alert.output_fields` when `e` is `alert.output_fields.a.b.c` (`["a", "b", "c"]`;
    /// the outermost selection may be a `has()` test), else None.
    fn output_field_path(&self, e: &IdedExpr) -> Option<Vec<String>> {
        let mut path = Vec::new();
        let mut current = e;
        loop {
            let Expr::Select(s) = &current.expr else { return None };
            if s.test && !std::ptr::eq(current, e) {
                return None;
            }
            let on_alert =
                matches!(&s.operand.expr, Expr::Ident(n) if n == "alert" && !self.scope.iter().any(|v| v == n));
            if s.field == "output_fields" && on_alert && !s.test {
                path.reverse();
                return Some(path).filter(|p| !p.is_empty());
            }
            path.push(s.field.clone());
            current = &s.operand;
        }
    }

    fn read_output_field(&mut self, name: &str) {
        if let Some(names) = self.reads.output_fields.as_mut() {
            names.insert(name.to_owned());
        }
    }

    fn literal_string(e: &IdedExpr) -> Option<String> {
        match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_owned()),
            _ => None,
        }
    }

    fn call(&mut self, id: u64, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Result<Ty, Fault> {
        let fault = |why: String| Err((id, why));
        // alert.output_fields["k"], alert.output_fields[?"k"], "k" in alert.output_fields: read one field.
        if matches!(name, "_[_]" | "_[?_]") && args.len() == 2 && self.is_output_fields(&args[0]) {
            match Self::literal_string(&args[1]) {
                Some(k) => self.read_output_field(&k),
                None => {
                    self.reads.output_fields = None;
                    self.check(&args[1])?;
                }
            }
            return Ok(Ty::Dyn);
        }
        if name == "@in" && args.len() == 2 && self.is_output_fields(&args[1]) {
            match Self::literal_string(&args[0]) {
                Some(k) => self.read_output_field(&k),
                None => {
                    self.reads.output_fields = None;
                    self.check(&args[0])?;
                }
            }
            return Ok(Ty::Bool);
        }
        if name == "matches" {
            // `s.matches(re)` or `matches(s, re)`: the pattern is compiled now, once.
            if let Some(re) = if target.is_some() { args.first() } else { args.get(1) } {
                match Self::literal_string(re) {
                    Some(p) => self.patterns.add(&p).map_err(|why| (re.id, why))?,
                    None => {
                        return Err((
                            re.id,
                            "the pattern of `matches` must be a string literal (it is compiled once, when the condition is created)".into(),
                        ))
                    }
                }
            }
        }
        let target_ty = match target {
            Some(t) => Some(self.check_whole(t)?),
            None => None,
        };
        let mut tys = Vec::with_capacity(args.len());
        for a in args {
            tys.push(self.check_whole(a)?);
        }
        match name {
            "_&&_" | "_||_" | "!_" | "@not_strictly_false" => {
                for (a, ty) in args.iter().zip(&tys) {
                    if !matches!(ty, Ty::Bool | Ty::Dyn) {
                        return Err((a.id, format!("expected true or false here, found {}", ty.name())));
                    }
                }
                Ok(Ty::Bool)
            }
            "_==_" | "_!=_" => {
                let (a, b) = (tys[0], tys[1]);
                if a.comparable(b) || a == Ty::Null || b == Ty::Null {
                    Ok(Ty::Bool)
                } else {
                    fault(format!("compares {} with {}{}", a.name(), b.name(), priority_hint(a, b)))
                }
            }
            "_<_" | "_<=_" | "_>_" | "_>=_" => {
                let (a, b) = (tys[0], tys[1]);
                let orderable = |t: Ty| matches!(t, Ty::Int | Ty::Double | Ty::String | Ty::Bytes | Ty::Dyn);
                if orderable(a) && orderable(b) && a.comparable(b) {
                    Ok(Ty::Bool)
                } else {
                    fault(format!("cannot order {} against {}{}", a.name(), b.name(), priority_hint(a, b)))
                }
            }
            "@in" => match tys[1] {
                Ty::List | Ty::Map | Ty::Dyn => Ok(Ty::Bool),
                other => fault(format!("`in` needs a list or a map on its right, found {}", other.name())),
            },
            "_[_]" | "_[?_]" => match tys[0] {
                Ty::List | Ty::Map | Ty::Dyn => Ok(Ty::Dyn),
                other => fault(format!("cannot index {}", other.name())),
            },
            "_?_:_" => {
                if !matches!(tys[0], Ty::Bool | Ty::Dyn) {
                    return fault(format!("the condition of `? :` must be true or false, found {}", tys[0].name()));
                }
                Ok(if tys[1] == tys[2] { tys[1] } else { Ty::Dyn })
            }
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => {
                let (a, b) = (tys[0], tys[1]);
                if a.comparable(b) {
                    Ok(if a == Ty::Dyn { b } else { a })
                } else {
                    fault(format!("cannot combine {} with {}", a.name(), b.name()))
                }
            }
            "-_" => Ok(tys[0]),
            "_?._" => Ok(Ty::Dyn),
            _ => match FUNCTIONS.iter().find(|(f, _)| *f == name) {
                Some((f, ty)) => {
                    let on_text = matches!(*f, "contains" | "startsWith" | "endsWith" | "matches");
                    if on_text {
                        let subject = target_ty.or(tys.first().copied()).unwrap_or(Ty::Dyn);
                        if !matches!(subject, Ty::String | Ty::Dyn) {
                            return fault(format!("`{f}` works on a string, not on {}", subject.name()));
                        }
                    }
                    Ok(*ty)
                }
                None => fault(format!(
                    "unknown function `{name}` (known: {}, and the macros has, all, exists, exists_one, map, filter)",
                    FUNCTIONS.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
                )),
            },
        }
    }

    /// Checks an operand; `alert.output_fields` used as a value of its own means every output field is read.
    fn check_whole(&mut self, e: &IdedExpr) -> Result<Ty, Fault> {
        if self.is_output_fields(e) {
            self.reads.output_fields = None;
            return Ok(Ty::Map);
        }
        self.check(e)
    }
}

/// Why `alert.output_fields.a.b` cannot work, and the index that does.
fn dotted_field_hint(path: &[String], test: bool) -> String {
    let name = path.join(".");
    let written = format!("alert.output_fields.{name}");
    if test {
        format!(
            "`has({written})` tests for an output field named `{}`, and output field names contain dots: write \"{name}\" in alert.output_fields",
            path[0]
        )
    } else {
        format!(
            "`{written}` selects an output field named `{}`, and output field names contain dots: write alert.output_fields[\"{name}\"] (or alert.output_fields[?\"{name}\"].orValue(\"\") for alerts that may lack it)",
            path[0]
        )
    }
}

/// Whether the expression can evaluate on an alert that has every field it names: it is evaluated on stand-in
/// alerts whose output fields it reads hold a string, then an int, then a bool (the types Falco gives them);
/// the reason when every one of them fails. Not tried when the expression reads output fields it does not
/// name (a computed key, the map iterated): a stand-in cannot have those.
fn probe(condition: &Condition, want: Want) -> Option<String> {
    let names = condition.reads.output_fields.as_ref()?;
    let mut first = None;
    for value in [Json::from("x"), Json::from(1), Json::from(true)] {
        let fields: serde_json::Map<String, Json> = names.iter().map(|n| (n.clone(), value.clone())).collect();
        let raw = serde_json::json!({
            "uuid": "u", "output": "o", "priority": "Critical", "rule": "r", "time": "2024-05-17T15:31:56.746609046Z",
            "output_fields": fields, "source": "syscall", "hostname": "h", "tags": vec!["t"; 64]
        });
        let alert = Alert::parse(raw.to_string().as_bytes()).expect("the stand-in alert parses");
        let evaluated = match want {
            Want::Bool => condition.matches(&alert).map(|_| ()),
            Want::Any => condition.key(&alert).map(|_| ()),
        };
        match evaluated {
            Ok(()) => return None,
            Err(why) => {
                first.get_or_insert(why);
            }
        }
    }
    first
}

fn priority_hint(a: Ty, b: Ty) -> &'static str {
    if (a == Ty::Int && b == Ty::String) || (a == Ty::String && b == Ty::Int) {
        " (alert.priority is the text, e.g. \"Critical\"; compare levels with priority >= Critical)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(priority: &str, ns: Option<&str>) -> Alert {
        let mut fields = serde_json::json!({"proc.name": "bash", "evt.time": 1});
        if let Some(ns) = ns {
            fields["k8s.ns.name"] = ns.into();
            fields["k8s.pod.name"] = "web-6799fc88d8-5q8ln".into();
        }
        let raw = serde_json::json!({
            "uuid": "u-1", "output": "12:00:00.000000000: Critical Shell spawned (user=root)", "priority": priority,
            "rule": "Terminal shell in container", "time": "2024-05-17T15:31:56.746609046Z",
            "output_fields": fields, "source": "syscall", "hostname": "web-12", "tags": ["shell", "mitre_execution"]
        });
        Alert::parse(raw.to_string().as_bytes()).unwrap()
    }

    fn yes(expr: &str, a: &Alert) -> bool {
        Condition::compile(expr).unwrap_or_else(|e| panic!("{e}")).matches(a).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn priorities_compare_in_falcos_order() {
        assert!(yes("priority >= Critical", &alert("Critical", None)));
        assert!(yes("priority >= Critical", &alert("Emergency", None)));
        assert!(!yes("priority >= Critical", &alert("Error", None)));
        assert!(yes("priority < Warning", &alert("Informational", None)));
        assert!(yes("priority == Info && alert.priority == 'Informational'", &alert("Info", None)));
        assert!(yes("alert.priority == 'Critical'", &alert("critical", None)));
        assert!(PRIORITY_LEVELS.windows(2).all(|w| level(w[0].1) < level(w[1].1) && w[0].1 > w[1].1));
    }

    #[test]
    fn the_cookbook_works() {
        let prod = alert("Critical", Some("prod"));
        let system = alert("Critical", Some("kube-system"));
        let host = alert("Critical", None);
        let not_system = "alert.output_fields[?'k8s.ns.name'].orValue('') != 'kube-system'";
        assert!(yes(not_system, &prod) && !yes(not_system, &system) && yes(not_system, &host));
        let listed = "alert.output_fields[?'k8s.ns.name'].orValue('') in ['prod', 'staging']";
        assert!(yes(listed, &prod) && !yes(listed, &system) && !yes(listed, &host));
        assert!(yes("'shell' in alert.tags", &prod));
        assert!(yes("alert.tags.exists(t, t.startsWith('mitre_'))", &prod));
        assert!(yes("alert.rule in ['Terminal shell in container', 'Write below etc']", &prod));
        assert!(yes("alert.hostname.matches('^web-[0-9]+$')", &prod));
        assert!(!yes("alert.hostname.startsWith('db-')", &prod));
        let not_ds = "!alert.output_fields[?'k8s.pod.name'].orValue('').matches('^(falco|fluent-bit)-[a-z0-9]{5}$')";
        assert!(yes(not_ds, &prod));
        assert!(yes("has(alert.output_fields.missing) == false && 'proc.name' in alert.output_fields", &host));
        assert!(yes("alert.output_fields['evt.time'] == 1 && alert.source == 'syscall'", &host));
    }

    #[test]
    fn a_missing_field_is_an_evaluation_error_not_a_crash() {
        let c = Condition::compile("alert.output_fields['k8s.ns.name'] == 'prod'").unwrap();
        let err = c.matches(&alert("Critical", None)).unwrap_err();
        assert!(err.contains("k8s.ns.name"), "{err}");
    }

    #[test]
    fn selecting_a_field_on_output_fields_is_refused_with_the_index_to_write() {
        let e = Condition::compile("alert.output_fields.k8s.ns.name != \"kube-system\"").unwrap_err();
        assert!(e.why.contains(r#"write alert.output_fields["k8s.ns.name"]"#), "{e}");
        let e = Condition::compile("has(alert.output_fields.k8s.ns.name)").unwrap_err();
        assert!(e.why.contains(r#"write "k8s.ns.name" in alert.output_fields"#), "{e}");
        let e = Condition::compile_key("alert.output_fields.proc.name").unwrap_err();
        assert!(e.what == "dedup key" && e.why.contains(r#"alert.output_fields["proc.name"]"#), "{e}");
        // A comprehension variable named like the alert is not the alert.
        assert!(Condition::compile("alert.tags.exists(alert, alert == 'x')").is_ok());
    }

    #[test]
    fn an_expression_that_fails_on_every_alert_with_its_fields_is_refused() {
        for expr in ["alert.tags['x'] == 'y'", "int(alert.rule) > 0", "size(alert.rule) / 0 > 1"] {
            let e = Condition::compile(expr).unwrap_err();
            assert!(e.why.contains("fails on every alert that has the fields it names"), "{expr}: {e}");
        }
        let e = Condition::compile_key("int(alert.hostname)").unwrap_err();
        assert!(e.why.contains("fails on every alert"), "{e}");
        // Whatever type a field holds, one of the stand-ins fits: these stay valid.
        for expr in [
            "alert.output_fields['evt.time'] > 5",
            "alert.output_fields['proc.name'].startsWith('ba')",
            "alert.output_fields['fd.is_open']",
            "alert.output_fields.exists(k, alert.output_fields[k] == 1)",
        ] {
            Condition::compile(expr).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn bad_expressions_are_refused_with_their_position() {
        let cases = [
            ("alert.rule ==", 1, 14, "mismatched input"),
            ("alert.rul == 'x'", 1, 6, "no field `rul`"),
            ("priority >= 'Critical'", 1, 10, "compare levels with priority >= Critical"),
            ("alert.tags == 'x'", 1, 12, "compares a list with a string"),
            ("alert.rule", 1, 6, "must be true or false"),
            ("alert.rule.startsWith('a') &&\n  nosuch == 1", 2, 3, "unknown name `nosuch`"),
            ("size(alert.tags) > 1 && frobnicate(alert.rule)", 1, 35, "unknown function `frobnicate`"),
            ("alert.tags.contains('x')", 1, 20, "works on a string"),
            ("", 1, 1, "empty"),
        ];
        for (expr, line, column, why) in cases {
            let e = Condition::compile(expr).unwrap_err();
            assert!(e.why.contains(why), "{expr}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{expr}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn an_expression_is_bounded() {
        let long = format!("alert.rule == '{}'", "x".repeat(MAX_EXPRESSION_BYTES));
        let e = Condition::compile(&long).unwrap_err();
        assert!(e.why.contains("longer than"), "{e}");
        let e = Condition::compile_key(&format!("'{}'", "k".repeat(MAX_EXPRESSION_BYTES))).unwrap_err();
        assert!(e.what == "dedup key" && e.why.contains("longer than"), "{e}");
        // Deep nesting within the size bound is refused or evaluated, never a stack overflow.
        let half = MAX_EXPRESSION_BYTES / 2 - 8;
        let deep = [
            format!("{}true{}", "(".repeat(half), ")".repeat(half)),
            format!("{}true", "!".repeat(MAX_EXPRESSION_BYTES - 4)),
            format!("true{}", " || false".repeat(MAX_EXPRESSION_BYTES / 9 - 1)),
            format!("1{} == 0", " + 1".repeat(MAX_EXPRESSION_BYTES / 4 - 3)),
            format!("{}1{} == 1", "[".repeat(half), "][0]".repeat(half / 4)),
        ];
        for expr in deep {
            assert!(expr.len() <= MAX_EXPRESSION_BYTES, "{}", expr.len());
            if let Ok(c) = Condition::compile(&expr) {
                let _ = c.matches(&alert("Critical", None));
            }
        }
        // A comprehension inside another costs the product of both lists per alert.
        let nested = "alert.tags.exists(t, alert.output_fields.exists(k, k == t))";
        let e = Condition::compile(nested).unwrap_err();
        assert!(e.why.contains("nest at most 1 deep") && (e.line, e.column) == (1, 48), "{e}");
    }

    /// Runs `f` on a thread with a 2 MiB stack, a tokio worker's default.
    fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap()
    }

    #[test]
    fn an_expression_nested_too_deep_is_refused_before_it_is_parsed() {
        // 4,003 bytes: under the size bound, and 2000 levels deep (the parser and the evaluator recurse per level).
        let sum = format!("{} > 0", vec!["1"; 2000].join("+"));
        assert!(sum.len() <= MAX_EXPRESSION_BYTES);
        let parens = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
        let key = vec!["1"; 2001].join("+");
        let refused = on_a_small_stack(move || {
            [Condition::compile(&sum), Condition::compile(&parens), Condition::compile_key(&key)]
                .map(|r| r.unwrap_err())
        });
        for e in refused {
            let why = &e.why;
            assert!(why.starts_with("it nests 2000 levels deep; at most "), "{e}");
            assert!(why.contains("(limits::MAX_EXPRESSION_DEPTH) are allowed: split it"), "{e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    /// Of each shape, the deepest expression the bound allows.
    fn deepest_allowed() -> Vec<String> {
        let r = |s: &str, n: usize| s.repeat(n);
        let shapes: [&dyn Fn(usize) -> String; 13] = [
            &|n| format!("1{} > 0", r("+1", n)),
            &|n| format!("{}true", r("!", n)),
            &|n| format!("{}1 < 0", r("-", n)),
            &|n| format!("{}true{}", r("(", n), r(")", n)),
            // Through dyn(): fields selected on `alert.output_fields` itself are refused (names have dots).
            &|n| format!("has(dyn(alert.output_fields){})", r(".a", n)),
            &|n| format!("alert.tags{} == 'x'", r("[0]", n)),
            &|n| format!("size({}1{}) == 1", r("[", n), r("]", n)),
            &|n| format!("{}true", r("true ? true : ", n)),
            &|n| format!("true{}", r(" == true", n)),
            &|n| format!("size({}1{}) == 1", r("{'a': ", n), r("}", n)),
            &|n| format!("{}1{} == '1'", r("string(", n), r(")", n)),
            &|n| format!("alert.rule{} == ''", r(".orValue('')", n)),
            &|n| format!("alert.tags.exists(t, {}t == 'x'{})", r("(", n), r(")", n)),
        ];
        shapes
            .iter()
            .map(|shape| {
                let n = (0..MAX_EXPRESSION_DEPTH)
                    .take_while(|n| depth::nesting(&shape(*n)).0 <= MAX_EXPRESSION_DEPTH)
                    .last();
                let deepest = shape(n.expect("the shallowest of the shape is allowed"));
                assert!(depth::nesting(&deepest).0 >= MAX_EXPRESSION_DEPTH - 3, "{deepest}");
                deepest
            })
            .collect()
    }

    #[test]
    fn the_deepest_allowed_expression_compiles_and_evaluates_on_a_workers_stack() {
        for expr in deepest_allowed() {
            let checked = expr.clone();
            // An evaluation error (`alert.tags[0][0]`) is fine: a stack overflow would abort the test. Such an
            // expression is now refused because it fails on the stand-in alerts (evaluated here, on this stack).
            let compiled = on_a_small_stack(move || {
                let a = alert("Critical", Some("prod"));
                let fine = |e: &ConditionError| e.why.contains("fails on every alert that has the fields it names");
                let c = Condition::compile(&checked).map(|c| c.matches(&a).map(|_| ()));
                let k = Condition::compile_key(&checked).map(|k| k.key(&a).map(|_| ()));
                c.as_ref().map_or_else(fine, |_| true) && k.as_ref().map_or_else(fine, |_| true)
            });
            assert!(compiled, "{expr}");
        }
    }

    /// Depth of a parsed tree (a leaf is 0), as the parser, the check and the evaluator recurse over it.
    fn tree_depth(e: &IdedExpr) -> usize {
        let deepest = |es: &mut dyn Iterator<Item = &IdedExpr>| es.map(tree_depth).max().map_or(0, |d| d + 1);
        match &e.expr {
            Expr::Call(c) => deepest(&mut c.target.as_deref().into_iter().chain(&c.args)),
            Expr::Select(s) => tree_depth(&s.operand) + 1,
            Expr::List(l) => deepest(&mut l.elements.iter()),
            Expr::Map(m) => deepest(&mut m.entries.iter().flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                EntryExpr::StructField(f) => vec![&f.value],
            })),
            Expr::Comprehension(c) => {
                deepest(&mut [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result].into_iter())
            }
            _ => 0,
        }
    }

    #[test]
    fn the_depth_measured_on_the_text_is_never_less_than_the_parsed_trees() {
        // Random expressions over every construct, from a fixed seed.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        fn gen(next: &mut dyn FnMut(u64) -> usize, d: usize) -> String {
            const LEAVES: [&str; 8] = ["1", "'s(['", "true", "alert.rule", "r'\\'", "b'x'", "2.5e-1", "\"a\\\"b\""];
            if d == 0 {
                return LEAVES[next(LEAVES.len() as u64)].to_owned();
            }
            let mut sub = || gen(next, d - 1);
            let (a, b) = (sub(), sub());
            let c = sub();
            const OPS: [&str; 10] = ["+", "-", "*", "==", "!=", "<", ">=", "&&", "||", "in"];
            match next(14) {
                0..=3 => format!("{a} {} {b}", OPS[next(OPS.len() as u64)]),
                4 => format!("!{a}"),
                5 => format!("-{a}"),
                6 => format!("({a})"),
                7 => format!("[{a}, {b}]"),
                8 => format!("{{{a}: {b}}}"),
                9 => format!("{a}[{b}]"),
                10 => format!("size({a})"),
                11 => format!("{a}.startsWith({b})"),
                12 => format!("{a} ? {b} : {c}"),
                _ => format!("[1].exists(x, {a})"),
            }
        }
        let mut checked = 0;
        let exprs = (0..2000)
            .map(|_| {
                let d = 1 + next(5);
                gen(&mut next, d)
            })
            .chain(deepest_allowed());
        for text in exprs {
            let Ok(program) = ENV.compile(&text) else { continue };
            let (measured, parsed) = (depth::nesting(&text).0, tree_depth(program.expression()));
            assert!(measured >= parsed, "{text}: measured {measured}, parsed {parsed}");
            checked += 1;
        }
        assert!(checked > 1000, "{checked} parsed");
    }

    #[test]
    fn a_pattern_is_compiled_once_when_the_condition_is_created_not_per_alert() {
        let compiled = || pattern::COMPILED.with(|c| c.get());
        let before = compiled();
        let expr = "alert.hostname.matches('^web-[0-9]+$') && matches(alert.rule, '(?i)\\\\w+ shell') && alert.output.matches('^web-[0-9]+$') == false";
        let c = Condition::compile(expr).unwrap();
        assert_eq!(compiled() - before, 2, "each pattern once, at creation");
        let (web, db) = (alert("Critical", None), {
            let mut a = alert("Critical", None);
            a.hostname = "db-1".into();
            a
        });
        for _ in 0..1000 {
            assert!(c.matches(&web).unwrap());
            assert!(!c.matches(&db).unwrap());
        }
        let key = Condition::compile_key("alert.hostname.matches('^web-')").unwrap();
        assert_eq!(key.key(&web).unwrap(), "true");
        assert_eq!(compiled() - before, 3, "none while evaluating");
    }

    #[test]
    fn a_pattern_that_does_not_compile_or_is_too_big_is_refused_when_the_condition_is_created() {
        let invalid = Condition::compile("alert.hostname.matches('^web-(')").unwrap_err();
        assert!(
            invalid.why.contains("not a valid regular expression") && invalid.why.contains("unclosed group"),
            "{invalid}"
        );
        assert_eq!((invalid.line, invalid.column), (1, 24), "{invalid}");
        let key = Condition::compile_key("matches(alert.rule, '[z-a]')").unwrap_err();
        assert!(key.what == "dedup key" && key.why.contains("not a valid regular expression"), "{key}");
        // Small to write, large once compiled: a Unicode class repeated.
        let big = Condition::compile("alert.output.matches('\\\\w{1000}')").unwrap_err();
        assert!(big.why.contains("limits::MAX_PATTERN_COMPILED_BYTES"), "{big}");
        let long = format!("alert.output.matches('{}')", "a".repeat(MAX_EXPRESSION_BYTES / 2));
        let long = Condition::compile(&long).unwrap_err();
        assert!(long.why.contains("limits::MAX_PATTERN_BYTES"), "{long}");
        // The pattern is compiled now, so it must be written in the expression.
        let computed = Condition::compile("alert.hostname.matches(alert.rule)").unwrap_err();
        assert!(computed.why.contains("string literal"), "{computed}");
        for e in [invalid, key, big, long, computed] {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn only_the_fields_read_are_built() {
        let c = Condition::compile("alert.output_fields['k8s.ns.name'] == 'prod' && priority >= Error").unwrap();
        assert_eq!(c.reads.fields.iter().copied().collect::<Vec<_>>(), ["output_fields"]);
        assert_eq!(c.reads.output_fields.as_ref().unwrap().iter().collect::<Vec<_>>(), ["k8s.ns.name"]);
        let built = c.reads.build(&alert("Critical", Some("prod")));
        assert_eq!(built.len(), 1);
        let c = Condition::compile("alert.output_fields.exists(k, k.startsWith('k8s.'))").unwrap();
        assert!(c.reads.output_fields.is_none(), "iterated: every field");
        assert!(yes("alert.output_fields.exists(k, k.startsWith('k8s.'))", &alert("Critical", Some("prod"))));
    }

    #[test]
    fn a_condition_can_be_shared_by_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Condition>();
    }

    #[test]
    fn keys_are_text() {
        let k = Condition::compile_key("alert.rule + '|' + alert.hostname").unwrap();
        assert_eq!(k.key(&alert("Critical", None)).unwrap(), "Terminal shell in container|web-12");
        let k = Condition::compile_key("priority").unwrap();
        assert_eq!(k.key(&alert("Critical", None)).unwrap(), "5");
    }
}
