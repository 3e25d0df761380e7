//! How deep an expression nests, measured on its text before the `cel` parser sees it.
//!
//! The parser, the expression check and the evaluator all recurse once per level of the expression's tree, so
//! 4 KiB of `1 + 1 + …` or of `((((…` is a tree a few thousand levels deep: the first alert it is evaluated on
//! (or the parse itself) overflows the thread's stack and aborts the runner, and since that alert is never
//! acked, every restart dies again. Parsing to find out is what overflows, so the depth is measured here by a
//! small scanner that tokenizes as CEL's lexer does (string and bytes literals, raw strings, comments, quoted
//! field names) and counts an upper bound of the tree's depth:
//!
//! - a bracket `(`, `[` or `{` is a level (a call to `all`, `exists`, `exists_one`, `map` or `filter` three:
//!   the macro expands into a comprehension whose step wraps its argument);
//! - within a bracket, every operator of one operand chain is a level: binary operators other than `&&` and
//!   `||` (the parser builds left-deep trees of `1 + 1 + 1`), unary `!` and `-`, `.` (a field or a method),
//!   an index `[`, and each `?` (a chain of `? :` nests to the right);
//! - `&&` and `||` chains are balanced by the parser: n terms are ceil(log2 n) levels.
//!
//! A literal the scanner cannot close the way the lexer would (a quote without its end on the line, an escape
//! the lexer does not know) is not taken as a literal: its text is counted as code, so the scanner may count
//! more than the parser builds, never less.

/// A bracket being scanned: the operator chains seen in it so far.
#[derive(Debug, Default)]
struct Frame {
    /// Byte offset of the bracket (0 for the whole expression).
    at: usize,
    /// How many levels the bracket itself is.
    weight: usize,
    /// `?` seen (a chain of conditionals nests once per `?`).
    ternaries: usize,
    /// The deepest finished segment (parts between `,` and `:`), with where it is deepest.
    segments: Deepest,
    /// Terms of the current `||` chain, and the deepest finished one.
    or_terms: usize,
    ors: Deepest,
    /// Terms of the current `&&` chain, and the deepest finished one.
    and_terms: usize,
    ands: Deepest,
    /// Operators in the current operand chain, and its deepest bracket.
    ops: usize,
    child: Deepest,
    /// Where the current operand chain starts.
    term_at: usize,
}

/// A depth and the byte offset where it is reached.
#[derive(Debug, Default, Clone, Copy)]
struct Deepest {
    depth: usize,
    at: usize,
}

impl Deepest {
    fn max(self, other: Deepest) -> Deepest {
        if other.depth > self.depth {
            other
        } else {
            self
        }
    }
    fn plus(self, levels: usize) -> Deepest {
        Deepest { depth: self.depth + levels, at: self.at }
    }
}

/// Levels of a balanced tree over `n` terms: ceil(log2 n).
fn balanced(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

impl Frame {
    fn new(at: usize, weight: usize) -> Frame {
        Frame { at, weight, or_terms: 1, and_terms: 1, term_at: at, ..Frame::default() }
    }
    fn term(&self) -> Deepest {
        let start = Deepest { depth: 0, at: self.term_at };
        start.max(self.child).plus(self.ops)
    }
    fn end_and_term(&mut self, next_at: usize) {
        self.ands = self.ands.max(self.term());
        self.ops = 0;
        self.child = Deepest::default();
        self.term_at = next_at;
    }
    fn and_chain(&self) -> Deepest {
        self.ands.max(self.term()).plus(balanced(self.and_terms))
    }
    fn end_or_term(&mut self, next_at: usize) {
        self.ors = self.ors.max(self.and_chain());
        self.ands = Deepest::default();
        self.and_terms = 1;
        self.end_and_term(next_at);
    }
    fn or_chain(&self) -> Deepest {
        self.ors.max(self.and_chain()).plus(balanced(self.or_terms))
    }
    fn end_segment(&mut self, next_at: usize) {
        self.segments = self.segments.max(self.or_chain());
        self.ors = Deepest::default();
        self.or_terms = 1;
        self.end_or_term(next_at);
    }
    /// The bracket's depth, itself included.
    fn depth(&self) -> Deepest {
        let inside = self.segments.max(self.or_chain()).plus(self.ternaries);
        Deepest { depth: inside.depth, at: if inside.depth == 0 { self.at } else { inside.at } }.plus(self.weight)
    }
}

/// The kind of the last token, to tell a call or an index from a bracket of its own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Last {
    Nothing,
    Operand,
    Macro,
    Operator,
}

const MACROS: [&str; 5] = ["all", "exists", "exists_one", "map", "filter"];

/// At least the depth of the tree the `cel` parser builds for `text`, and the byte offset of its deepest part.
pub(crate) fn nesting(text: &str) -> (usize, usize) {
    let b = text.as_bytes();
    let mut stack = vec![Frame::new(0, 0)];
    let mut last = Last::Nothing;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let top = stack.last_mut().expect("the whole expression's frame stays");
        match c {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0c => {
                i += 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
                continue;
            }
            b'"' | b'\'' => {
                if let Some(end) = literal(b, i, false) {
                    i = end;
                    last = Last::Operand;
                } else {
                    i += 1;
                }
                continue;
            }
            b'`' => {
                let body = b[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || b"_.-/ ".contains(c)).count();
                if body > 0 && b.get(i + 1 + body) == Some(&b'`') {
                    i += body + 2;
                    last = Last::Operand;
                } else {
                    i += 1;
                }
                continue;
            }
            b'0'..=b'9' => {
                i = number(b, i);
                last = Last::Operand;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = b[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
                let word = &text[i..i + len];
                let prefix = matches!(word, "r" | "R" | "b" | "B" | "br" | "bR" | "Br" | "BR");
                if prefix && matches!(b.get(i + len), Some(b'"' | b'\'')) {
                    if let Some(end) = literal(b, i + len, word.contains(['r', 'R'])) {
                        i = end;
                        last = Last::Operand;
                        continue;
                    }
                }
                i += len;
                if word == "in" {
                    top.ops += 1;
                    last = Last::Operator;
                } else {
                    last = if MACROS.contains(&word) { Last::Macro } else { Last::Operand };
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                if matches!(last, Last::Operand | Last::Macro) {
                    top.ops += 1;
                }
                let weight = if c == b'(' && last == Last::Macro { 3 } else { 1 };
                stack.push(Frame::new(i, weight));
                last = Last::Nothing;
            }
            b')' | b']' | b'}' => {
                if stack.len() > 1 {
                    let inner = stack.pop().expect("more than one").depth();
                    let top = stack.last_mut().expect("the whole expression's frame stays");
                    top.child = top.child.max(inner);
                }
                last = Last::Operand;
            }
            b'&' | b'|' if b.get(i + 1) == Some(&c) => {
                if c == b'&' {
                    top.and_terms += 1;
                    top.end_and_term(i + 2);
                } else {
                    top.or_terms += 1;
                    top.end_or_term(i + 2);
                }
                i += 2;
                last = Last::Operator;
                continue;
            }
            b',' | b':' => {
                top.end_segment(i + 1);
                last = Last::Operator;
            }
            b'?' => {
                top.ternaries += 1;
                last = Last::Operator;
            }
            b'.' | b'+' | b'-' | b'*' | b'/' | b'%' | b'!' | b'<' | b'>' | b'=' => {
                // Two-character operators (`==`, `!=`, `<=`, `>=`) are one level.
                if b.get(i + 1) == Some(&b'=') && matches!(c, b'=' | b'!' | b'<' | b'>') {
                    i += 1;
                }
                top.ops += 1;
                last = Last::Operator;
            }
            _ => {
                // Not a CEL token (the parser refuses it): skip it, counting nothing.
                if c >= 0x80 {
                    i += text[i..].chars().next().map_or(1, char::len_utf8);
                    continue;
                }
            }
        }
        i += 1;
    }
    // Brackets left open count as closed at the end.
    while stack.len() > 1 {
        let inner = stack.pop().expect("more than one").depth();
        let top = stack.last_mut().expect("the whole expression's frame stays");
        top.child = top.child.max(inner);
    }
    let whole = stack[0].depth();
    (whole.depth, whole.at)
}

/// The end (exclusive) of the number at `i`, as CEL's lexer reads it (`0x1F`, `12u`, `1.5e-3`): no more, so a
/// `.` after it (`1.a.b`) is still counted.
fn number(b: &[u8], mut i: usize) -> usize {
    let digits = |from: usize, hex: bool| {
        from + b[from..].iter().take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() }).count()
    };
    let digit_at = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
        i = digits(i + 2, true);
    } else {
        i = digits(i, false);
        if b.get(i) == Some(&b'.') && digit_at(i + 1) {
            i = digits(i + 1, false);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            if digit_at(i + 1) {
                i = digits(i + 1, false);
            } else if matches!(b.get(i + 1), Some(b'+' | b'-')) && digit_at(i + 2) {
                i = digits(i + 2, false);
            }
        }
    }
    if matches!(b.get(i), Some(b'u' | b'U')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string literal whose quote is at `q`, as CEL's lexer reads it; None when the lexer
/// would not read one there (unterminated, a newline in a one-line literal, an unknown escape).
fn literal(b: &[u8], q: usize, raw: bool) -> Option<usize> {
    let quote = b[q];
    let triple = b.get(q + 1) == Some(&quote) && b.get(q + 2) == Some(&quote);
    if triple {
        if let Some(end) = body(b, q + 3, quote, raw, true) {
            return Some(end);
        }
    }
    body(b, q + 1, quote, raw, false)
}

fn body(b: &[u8], mut i: usize, quote: u8, raw: bool, triple: bool) -> Option<usize> {
    while i < b.len() {
        let c = b[i];
        if c == quote && (!triple || (b.get(i + 1) == Some(&quote) && b.get(i + 2) == Some(&quote))) {
            return Some(i + if triple { 3 } else { 1 });
        }
        if !triple && (c == b'\n' || c == b'\r') {
            return None;
        }
        if c == b'\\' && !raw {
            i += escape(&b[i + 1..])? + 1;
            continue;
        }
        i += 1;
    }
    None
}

/// The length of a valid escape after a backslash.
fn escape(rest: &[u8]) -> Option<usize> {
    let hex = |n: usize| rest.len() > n && rest[1..=n].iter().all(u8::is_ascii_hexdigit);
    match *rest.first()? {
        b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'"' | b'\'' | b'\\' | b'?' | b'`' => Some(1),
        b'x' | b'X' if hex(2) => Some(3),
        b'u' if hex(4) => Some(5),
        b'U' if hex(8) => Some(9),
        b'0'..=b'3' if rest.len() > 2 && rest[1..3].iter().all(|c| (b'0'..=b'7').contains(c)) => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> usize {
        nesting(text).0
    }

    #[test]
    fn chains_and_brackets_count_and_logic_is_balanced() {
        assert_eq!(depth("true"), 0);
        assert_eq!(depth("1 + 1 + 1 > 0"), 3);
        assert_eq!(depth("(((true)))"), 3);
        assert_eq!(depth("!!true"), 2);
        assert_eq!(depth("a || b || c || d"), 2);
        assert_eq!(depth("a || b || c || d || e"), 3);
        assert_eq!(depth(&format!("x{}", " || x".repeat(1023))), 10);
        assert_eq!(depth("a ? b : c ? d : e"), 2);
        // Two `.`, the call, the macro's three levels, the `==`.
        assert_eq!(depth("alert.tags.exists(t, t == 'x')"), 7);
        assert_eq!(depth("1.5e-3 + 0x1F + 12u > 0"), 3);
        assert_eq!(depth("1.a.b.c == 1"), 4, "a number ends where the lexer ends it");
        // A realistic condition is shallow.
        let c = "priority >= Critical && alert.output_fields[?'k8s.ns.name'].orValue('') != 'kube-system'";
        assert!(depth(c) <= 10, "{}", depth(c));
    }

    #[test]
    fn literals_and_comments_hide_nothing_and_count_nothing() {
        assert_eq!(depth("'((((+.' == \"[[[\" && r'\\' == '''a\n((('''"), 2);
        assert_eq!(depth("b'\\x41((' == b'A(('"), 1);
        assert_eq!(depth("`a.b-c` == 1 // ((((((("), 1);
        // What the lexer would not read as a literal is counted as code: an unknown escape, a newline in a
        // one-line string, an unterminated quote.
        assert!(depth("'\\q ((((' == 'x'") >= 4);
        assert!(depth("'a\n((((' == 'x'") >= 4);
        assert!(depth("x == '((((") >= 4);
        assert!(depth("xr'\\' + (((1))) == 1") >= 3, "not a raw string: `xr` is a name");
        assert_eq!(depth("r'\\' + 1 == 1"), 2, "a raw string ends at its quote");
    }

    #[test]
    fn two_thousand_terms_are_two_thousand_levels() {
        let sum = format!("{} > 0", vec!["1"; 2000].join("+"));
        assert_eq!(sum.len(), 4003);
        assert_eq!(depth(&sum), 2000);
        assert_eq!(depth(&format!("{}true{}", "(".repeat(2000), ")".repeat(2000))), 2000);
    }
}
