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

//!
//! Files: here the node model and the resolution of plain scalars (shared by both directions); `read.rs` the
//! parser, `emit.rs` the writer.

mod emit;
mod read;

pub(crate) use emit::emit;
pub(crate) use read::parse;

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
