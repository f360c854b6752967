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
//! Files: `node.rs` the node model and the resolution of plain scalars (shared by both directions), `read.rs`
//! the parser, `emit.rs` the writer; here the round-trip tests.

mod emit;
mod node;
mod read;

pub(crate) use emit::emit;
pub(crate) use node::{Node, Scalar};
pub(crate) use read::parse;

#[cfg(test)]
mod tests {
    use super::node::resolve_plain;
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
