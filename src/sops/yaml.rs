//! The YAML that SOPS files are made of, read and written the way `sops` itself does it.
//!
//! `sops` parses and emits YAML with go.yaml.in/yaml/v3. Two of its behaviours matter here:
//!
//! - **Reading**: the MAC covers every value in its *resolved* form (`5` is the integer 5 and
//!   hashes as `5`, `true` hashes as `True`, `"true"` hashes as `true`), so a plain scalar must
//!   resolve exactly as yaml.v3 resolves it into an `interface{}`. [`parse`] does that on top of
//!   the `granit_parser` event stream.
//! - **Writing**: sops writes with an indent of 4, yaml.v3's indentation rules and yaml.v3's
//!   choice between plain, single-quoted, double-quoted and literal scalars. [`emit`] follows
//!   the same rules, so a file we write has the same layout as one `sops -e` writes and a
//!   later `sops edit` or `sops updatekeys` produces a minimal diff.
//!
//! Only what Kubernetes manifests and SOPS metadata need is supported: one document, a mapping
//! at the root, string keys. Anything else is refused with an error rather than guessed at.

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Tag};

/// A YAML node with mapping order kept.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Scalar(Scalar),
}

/// A scalar resolved the way yaml.v3 resolves it into an `interface{}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`: yaml.v3 yields `uint64`, which sops cannot walk.
    Uint(u64),
    Float(f64),
    Str(String),
    /// A plain scalar that yaml.v3 turns into a `time.Time` (kept as written).
    Time(String),
}

// ---------------------------------------------------------------------------------------------
// Resolution of plain scalars (yaml.v3 resolve.go semantics)
// ---------------------------------------------------------------------------------------------

/// Resolves a plain (unquoted, untagged) scalar.
pub(crate) fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = s.as_bytes()[0];
    match first {
        b'.' => match s.parse::<f64>() {
            Ok(f) if f.is_finite() => Scalar::Float(f),
            _ => Scalar::Str(s.to_owned()),
        },
        b'+' | b'-' | b'0'..=b'9' => {
            if looks_like_timestamp(s) {
                return Scalar::Time(s.to_owned());
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            if let Some(i) = parse_go_int(&plain) {
                return Scalar::Int(i);
            }
            if let Some(u) = parse_go_uint(&plain) {
                return Scalar::Uint(u);
            }
            if is_yaml_style_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
                && f.is_finite()
            {
                return Scalar::Float(f);
            }
            Scalar::Str(s.to_owned())
        }
        _ => Scalar::Str(s.to_owned()),
    }
}

/// Splits Go's base prefix off an unsigned literal: `strconv.ParseInt(s, 0, 64)` rules.
fn go_radix(digits: &str) -> (u32, &str) {
    let lower = digits.get(..2).map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("0x") => (16, &digits[2..]),
        Some("0o") => (8, &digits[2..]),
        Some("0b") => (2, &digits[2..]),
        _ if digits.len() > 1 && digits.starts_with('0') => (8, &digits[1..]),
        _ => (10, digits),
    }
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = go_radix(rest);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() }
}

fn parse_go_uint(s: &str) -> Option<u64> {
    let (radix, digits) = go_radix(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, written out.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// yaml.v3 treats four digits and a dash followed by a date (and optionally a time) as a
/// timestamp. This mirrors its accepted layouts closely enough to quote such strings when
/// writing and to refuse them when reading (sops would hash their reformatted form).
fn looks_like_timestamp(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])([Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})| [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?)?$",
        )
        .expect("timestamp regex is valid")
    });
    re.is_match(s)
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses a single-document YAML text whose root is a mapping.
pub(crate) fn parse(text: &str) -> anyhow::Result<Vec<(String, Node)>> {
    let mut events = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, _span) = item.context("the file is not valid YAML")?;
        events.push(event);
    }
    let mut builder = Builder { events: events.into_iter(), anchors: HashMap::new() };
    let mut root = None;
    while let Some(event) = builder.events.next() {
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::StreamEnd => {}
            Event::DocumentStart(..) => {
                if root.is_some() {
                    bail!("the file holds more than one YAML document; a SOPS Secret is a single document");
                }
                let Some(first) = builder.next_node_event()? else {
                    bail!("the YAML document is empty");
                };
                root = Some(builder.node(first)?);
            }
            _ => {}
        }
    }
    match root {
        Some(Node::Map(entries)) => Ok(entries),
        Some(Node::Scalar(Scalar::Null)) | None => bail!("the YAML document is empty"),
        Some(_) => bail!("the YAML document's root is not a mapping"),
    }
}

struct Builder<'a> {
    events: std::vec::IntoIter<Event<'a>>,
    anchors: HashMap<usize, Node>,
}

impl<'a> Builder<'a> {
    /// The next event that starts or ends a node, skipping presentation-only events.
    fn next_node_event(&mut self) -> anyhow::Result<Option<Event<'a>>> {
        for event in self.events.by_ref() {
            match event {
                Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd
                | Event::Alias(..)
                | Event::DocumentEnd => return Ok(Some(event)),
                Event::UnresolvedAlias(_) => bail!("the YAML uses an alias without an anchor"),
                _ => {}
            }
        }
        Ok(None)
    }

    fn node(&mut self, event: Event<'a>) -> anyhow::Result<Node> {
        let (node, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => (Node::Scalar(scalar(&value, style, tag.as_deref())?), anchor),
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next_node_event()? {
                        Some(Event::SequenceEnd) => break,
                        Some(event) => items.push(self.node(event)?),
                        None => bail!("the YAML ends inside a sequence"),
                    }
                }
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(_, anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                loop {
                    let key = match self.next_node_event()? {
                        Some(Event::MappingEnd) => break,
                        Some(event) => self.node(event)?,
                        None => bail!("the YAML ends inside a mapping"),
                    };
                    let Node::Scalar(Scalar::Str(key)) = key else {
                        bail!("the YAML has a mapping key that is not a string (sops supports string keys only)");
                    };
                    let Some(value_event) = self.next_node_event()? else {
                        bail!("the YAML ends inside a mapping");
                    };
                    let value = self.node(value_event)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        bail!("the YAML has the mapping key `{key}` twice");
                    }
                    entries.push((key, value));
                }
                (Node::Map(entries), anchor)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().context("the YAML uses an alias before its anchor")?;
                return Ok(node);
            }
            _ => bail!("unexpected YAML structure"),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn scalar(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> anyhow::Result<Scalar> {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema_tag("str") {
            return Ok(Scalar::Str(value.to_owned()));
        }
        if tag.is_yaml_core_schema_tag("binary") {
            bail!("!!binary YAML values are not supported");
        }
        if !tag.is_yaml_core_schema() {
            // yaml.v3 leaves custom and non-specific (`!`) tags as strings.
            return Ok(Scalar::Str(value.to_owned()));
        }
        if style != ScalarStyle::Plain {
            bail!("explicitly tagged quoted YAML scalars are not supported");
        }
    }
    Ok(match style {
        ScalarStyle::Plain => resolve_plain(value),
        _ => Scalar::Str(value.to_owned()),
    })
}

// ---------------------------------------------------------------------------------------------
// Emitting (yaml.v3 layout with an indent of 4, as sops writes)
// ---------------------------------------------------------------------------------------------

const INDENT: usize = 4;

/// Writes a root mapping as one YAML document.
pub(crate) fn emit(root: &[(String, Node)]) -> String {
    let mut out = String::new();
    if root.is_empty() {
        out.push_str("{}\n");
    } else {
        write_mapping(&mut out, root, 0, false);
    }
    out
}

/// yaml.v3 aligns every nested block to the next multiple of the indent.
fn next_indent(indent: usize) -> usize {
    INDENT * ((indent + INDENT) / INDENT)
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_mapping(out: &mut String, entries: &[(String, Node)], indent: usize, first_inline: bool) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        out.push_str(&render_key(key));
        out.push(':');
        match value {
            Node::Map(m) if m.is_empty() => out.push_str(" {}\n"),
            Node::Seq(s) if s.is_empty() => out.push_str(" []\n"),
            Node::Map(m) => {
                out.push('\n');
                write_mapping(out, m, next_indent(indent), false);
            }
            Node::Seq(s) => {
                out.push('\n');
                write_sequence(out, s, next_indent(indent), false);
            }
            Node::Scalar(s) => {
                out.push(' ');
                write_value(out, s, indent, next_indent(indent));
            }
        }
    }
}

fn write_sequence(out: &mut String, items: &[Node], indent: usize, first_inline: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            Node::Map(m) if m.is_empty() => out.push_str("{}\n"),
            Node::Seq(s) if s.is_empty() => out.push_str("[]\n"),
            Node::Map(m) => write_mapping(out, m, indent + 2, true),
            Node::Seq(s) => write_sequence(out, s, indent + 2, true),
            Node::Scalar(s) => write_value(out, s, indent, indent + 2),
        }
    }
}

/// Writes a scalar value and its line break. `parent` is the indentation of the owning key or
/// dash, `content` the indentation a literal block's lines get.
fn write_value(out: &mut String, scalar: &Scalar, parent: usize, content: usize) {
    match scalar {
        Scalar::Null => out.push_str("null"),
        Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Scalar::Int(i) => out.push_str(&i.to_string()),
        Scalar::Uint(u) => out.push_str(&u.to_string()),
        Scalar::Float(f) => out.push_str(&render_float(*f)),
        Scalar::Time(t) => out.push_str(t),
        Scalar::Str(s) => match string_style(s, false) {
            Style::Literal => {
                let lead = s.starts_with([' ', '\n']);
                // The indentation indicator is written as the indent (4), which is only right
                // when the content sits exactly one indent deeper than its parent.
                if lead && content - parent != INDENT {
                    out.push_str(&double_quoted(s));
                } else {
                    write_literal(out, s, lead, content);
                    return;
                }
            }
            Style::Plain => out.push_str(s),
            Style::SingleQuoted => out.push_str(&single_quoted(s)),
            Style::DoubleQuoted => out.push_str(&double_quoted(s)),
        },
    }
    out.push('\n');
}

fn render_key(key: &str) -> String {
    match string_style(key, true) {
        Style::Plain => key.to_owned(),
        Style::SingleQuoted => single_quoted(key),
        Style::DoubleQuoted | Style::Literal => double_quoted(key),
    }
}

fn render_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf".to_owned() } else { "-.inf".to_owned() }
    } else {
        let s = f.to_string();
        if s.contains(['.', 'e', 'E']) { s } else { format!("{s}.0") }
    }
}

fn write_literal(out: &mut String, s: &str, lead: bool, content: usize) {
    out.push('|');
    if lead {
        out.push_str(&INDENT.to_string());
    }
    if !s.ends_with('\n') {
        out.push('-');
    } else if s == "\n" || s.ends_with("\n\n") {
        out.push('+');
    }
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, content);
            out.push_str(line);
        }
        out.push('\n');
    }
}

#[derive(Debug, PartialEq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

/// yaml.v3's printable set: what it may write without an escape.
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}') && c != '\u{FEFF}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// The scalar style yaml.v3 picks for a string (encoder choice, then emitter analysis).
fn string_style(s: &str, key: bool) -> Style {
    let resolves_to_str = matches!(resolve_plain_for_emit(s), Scalar::Str(_));
    let can_use_plain = resolves_to_str && !is_base60_float(s) && !is_old_bool(s);
    let requested = if s.contains('\n') {
        Style::Literal
    } else if can_use_plain {
        Style::Plain
    } else {
        Style::DoubleQuoted
    };

    let a = analyze(s);
    let mut style = requested;
    if key && a.multiline {
        style = Style::DoubleQuoted;
    }
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && key)) {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && !a.single_quoted_allowed {
        style = Style::DoubleQuoted;
    }
    if style == Style::Literal && (!a.block_allowed || key) {
        style = Style::DoubleQuoted;
    }
    // Line breaks other than `\n` in quoted or block styles are legal YAML but fragile across
    // parsers; sops never produces them for Secrets. Escape them.
    if style != Style::DoubleQuoted && s.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        style = Style::DoubleQuoted;
    }
    style
}

fn resolve_plain_for_emit(s: &str) -> Scalar {
    if s.is_empty() { Scalar::Null } else { resolve_plain(s) }
}

fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF"
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$").expect("base60 regex is valid")
    });
    s.contains(':') && re.is_match(s)
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// yaml.v3's scalar analysis, reduced to block context (we never write flow collections with
/// content).
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_whitespace = matches!(next, None | Some(' ' | '\t'));
        let last = i + 1 == chars.len();
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => {
                    block_indicators = true
                }
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = matches!(c, ' ' | '\t') || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tabs || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if is_printable(c) && !is_break(c) && c != '"' && c != '\\' {
            out.push(c);
            continue;
        }
        out.push('\\');
        match c {
            '\0' => out.push('0'),
            '\u{07}' => out.push('a'),
            '\u{08}' => out.push('b'),
            '\t' => out.push('t'),
            '\n' => out.push('n'),
            '\u{0B}' => out.push('v'),
            '\u{0C}' => out.push('f'),
            '\r' => out.push('r'),
            '\u{1B}' => out.push('e'),
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '\u{85}' => out.push('N'),
            '\u{A0}' => out.push('_'),
            '\u{2028}' => out.push('L'),
            '\u{2029}' => out.push('P'),
            c if (c as u32) <= 0xFF => out.push_str(&format!("x{:02X}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("u{:04X}", c as u32)),
            c => out.push_str(&format!("U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Node {
        Node::Scalar(Scalar::Str(v.to_owned()))
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_v3() {
        assert_eq!(resolve_plain("5"), Scalar::Int(5));
        assert_eq!(resolve_plain("-0x10"), Scalar::Int(-16));
        assert_eq!(resolve_plain("010"), Scalar::Int(8));
        assert_eq!(resolve_plain("0o17"), Scalar::Int(15));
        assert_eq!(resolve_plain("1_000"), Scalar::Int(1000));
        assert_eq!(resolve_plain("08"), Scalar::Float(8.0));
        assert_eq!(resolve_plain("1.5"), Scalar::Float(1.5));
        assert_eq!(resolve_plain(".5"), Scalar::Float(0.5));
        assert_eq!(resolve_plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(resolve_plain("18446744073709551615"), Scalar::Uint(u64::MAX));
        assert_eq!(resolve_plain("True"), Scalar::Bool(true));
        assert_eq!(resolve_plain("yes"), Scalar::Str("yes".into()));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("2024-01-01"), Scalar::Time("2024-01-01".into()));
        assert_eq!(resolve_plain("2024-01-01T10:00:00Z"), Scalar::Time("2024-01-01T10:00:00Z".into()));
        assert_eq!(resolve_plain("3.13.2"), Scalar::Str("3.13.2".into()));
        assert_eq!(resolve_plain("1e400"), Scalar::Str("1e400".into()));
        assert_eq!(resolve_plain("0x"), Scalar::Str("0x".into()));
        assert_eq!(resolve_plain("v1"), Scalar::Str("v1".into()));
    }

    #[test]
    fn strings_are_quoted_as_yaml_v3_quotes_them() {
        let cases = [
            ("v", "v"),
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("n", "\"n\""),
            ("123", "\"123\""),
            ("1.5", "\"1.5\""),
            ("2024-01-01", "\"2024-01-01\""),
            ("~", "\"~\""),
            ("null", "\"null\""),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("-a", "-a"),
            ("- a", "'- a'"),
            ("'x'", "'''x'''"),
            (" x", "' x'"),
            ("*x", "'*x'"),
            ("?x", "?x"),
            (":x", ":x"),
            ("x:", "'x:'"),
            ("---", "'---'"),
            ("a\tb", "\"a\\tb\""),
            ("a\u{1}b", "\"a\\x01b\""),
            ("héllo", "héllo"),
            ("1:20", "\"1:20\""),
            (
                "ENC[AES256_GCM,data:2w==,iv:W3h=,tag:BU==,type:str]",
                "ENC[AES256_GCM,data:2w==,iv:W3h=,tag:BU==,type:str]",
            ),
        ];
        for (input, want) in cases {
            let got = emit(&[("k".into(), s(input))]);
            assert_eq!(got, format!("k: {want}\n"), "input {input:?}");
        }
    }

    #[test]
    fn layout_matches_sops_output() {
        // Shapes taken from `sops -d` output of sops 3.13.2.
        let doc = vec![
            ("top".into(), s("l1\nl2\n")),
            (
                "m".into(),
                Node::Map(vec![
                    ("k".into(), s("v")),
                    (
                        "lst".into(),
                        Node::Seq(vec![
                            s("a"),
                            Node::Map(vec![
                                ("b".into(), s("c")),
                                ("d".into(), s("x\ny\n")),
                                (
                                    "e".into(),
                                    Node::Map(vec![
                                        ("f".into(), s("g")),
                                        (
                                            "h".into(),
                                            Node::Seq(vec![
                                                Node::Scalar(Scalar::Int(1)),
                                                Node::Seq(vec![
                                                    Node::Scalar(Scalar::Int(2)),
                                                    Node::Scalar(Scalar::Int(3)),
                                                ]),
                                            ]),
                                        ),
                                    ]),
                                ),
                            ]),
                            Node::Seq(vec![s("n1"), s("n2")]),
                        ]),
                    ),
                    ("emptym".into(), Node::Map(vec![])),
                    ("emptys".into(), Node::Seq(vec![])),
                    ("strip".into(), s("a\nb")),
                    ("keep".into(), s("a\nb\n\n")),
                    ("lead".into(), s("  a\nb")),
                    ("trail".into(), s("a  \nb")),
                    ("yes".into(), s("yes")),
                    ("".into(), s("emptykey")),
                ]),
            ),
        ];
        let want = "top: |
    l1
    l2
m:
    k: v
    lst:
        - a
        - b: c
          d: |
            x
            y
          e:
            f: g
            h:
                - 1
                - - 2
                  - 3
        - - n1
          - n2
    emptym: {}
    emptys: []
    strip: |-
        a
        b
    keep: |+
        a
        b

    lead: |4-
          a
        b
    trail: \"a  \\nb\"
    \"yes\": \"yes\"
    \"\": emptykey
";
        let got = emit(&doc);
        assert_eq!(got, want);
        assert_eq!(parse(&got).unwrap(), doc, "what we write reads back the same");
    }

    #[test]
    fn awkward_strings_round_trip() {
        let awkward = [
            "",
            " ",
            "a ",
            " a",
            "\n",
            "\n\n",
            "a\n",
            "\nlead",
            "x\n  y\n",
            "tab\there",
            "quote\"s",
            "back\\slash",
            "uni ☃ 😀",
            "\u{FEFF}bom",
            "cr\rlf",
            "nel\u{85}x",
            "# not a comment",
            "key: value",
            "[1, 2]",
            "{a: b}",
            "&anchor",
            "*alias",
            "!tag",
            "@at",
            "`tick",
            "%pct",
            "| pipe",
            "> fold",
            "true",
            "False",
            "NULL",
            "0x1F",
            "1e5",
            ".inf",
            "-.5",
            "+1",
            "1_000",
            "12:30:00",
            "2024-01-01",
            "yes",
            "Off",
            "...",
            "a\n b\n  c",
            "trailing \n space",
            "ends with\n\n\n",
        ];
        for value in awkward {
            for doc in [
                vec![("k".to_owned(), s(value))],
                vec![("k".to_owned(), Node::Seq(vec![s(value), Node::Map(vec![("x".into(), s(value))])]))],
                vec![(value.to_owned(), s("v"))],
            ] {
                let text = emit(&doc);
                let back = parse(&text).unwrap_or_else(|e| panic!("{value:?}: {e:#}\n{text}"));
                assert_eq!(back, doc, "{value:?} written as:\n{text}");
            }
        }
    }

    #[test]
    fn parse_refuses_what_sops_refuses() {
        assert!(parse("a: 1\na: 2\n").is_err(), "duplicate keys");
        assert!(parse("1: x\n").is_err(), "non-string key");
        assert!(parse("- a\n").is_err(), "sequence root");
        assert!(parse("a: 1\n---\nb: 2\n").is_err(), "two documents");
        assert!(parse("").is_err(), "empty");
    }

    #[test]
    fn parse_resolves_anchors_and_tags() {
        let doc = parse("a: &x {k: 1}\nb: *x\nc: !!str 5\nd: '5'\ne: 5\n").unwrap();
        assert_eq!(doc[1].1, Node::Map(vec![("k".into(), Node::Scalar(Scalar::Int(1)))]));
        assert_eq!(doc[2].1, s("5"));
        assert_eq!(doc[3].1, s("5"));
        assert_eq!(doc[4].1, Node::Scalar(Scalar::Int(5)));
    }
}
