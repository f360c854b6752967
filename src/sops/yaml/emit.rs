//! Writing: yaml.v3's layout with an indent of 4 and its choice of scalar style, as `sops` writes.

use super::node::{Node, Scalar, resolve_plain};

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
