//! The README's guide matches the CLI: every `dify-gitops <command>` it shows exists, every `--flag` of such an
//! invocation is in that command's `--help`, every flag a command's table row names is that command's, every other
//! flag named in the CLI and guide sections exists somewhere in the CLI, and every command of the CLI has its row.
//! The help comes from the built binary, so a renamed flag or command fails here until the README follows.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use regex::Regex;

const BIN: &str = env!("CARGO_BIN_EXE_dify-gitops");

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "dify-gitops {args:?} --help failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Every command of the CLI with the long flags its `--help` lists (globals included).
fn cli() -> BTreeMap<String, BTreeSet<String>> {
    let top = help(&[]);
    let commands_section = top.split("Commands:").nth(1).expect("a Commands: section").split("\n\n").next().unwrap();
    let command_line = Regex::new(r"(?m)^  ([a-z][a-z0-9-]*)\s").unwrap();
    let flag = Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
    let mut cli = BTreeMap::new();
    for caps in command_line.captures_iter(commands_section) {
        let name = caps[1].to_string();
        if name == "help" {
            continue;
        }
        // Only the options part: the examples below may show other commands' flags.
        let options_of = |text: &str| -> BTreeSet<String> {
            let options = text.split("Options:").nth(1).expect("an Options: section");
            let options = options.split("\nExamples:").next().unwrap();
            flag.find_iter(options).map(|m| m.as_str().to_string()).collect()
        };
        let text = help(&[&name]);
        // A command with subcommands (`secret set`): each is a command of its own, named by both words.
        if let Some(section) = text.split("Commands:").nth(1) {
            let section = section.split("\n\n").next().unwrap();
            for caps in command_line.captures_iter(section).filter(|c| &c[1] != "help") {
                let sub = caps[1].to_string();
                cli.insert(format!("{name} {sub}"), options_of(&help(&[&name, &sub])));
            }
        }
        cli.insert(name, options_of(&text));
    }
    assert!(cli.len() >= 5, "too few commands parsed from --help: {cli:?}");
    let top_flags: BTreeSet<String> = flag.find_iter(&top).map(|m| m.as_str().to_string()).collect();
    cli.insert(String::new(), top_flags);
    cli
}

/// Other programs whose flags the README shows beside ours.
const OTHER_TOOLS: &[&str] = &[
    "helm",
    "helm3",
    "kubectl",
    "flux",
    "docker",
    "git",
    "age-keygen",
    "age",
    "sops",
    "cargo",
    "./deploy.sh",
    "chart/deploy.sh",
    "deploy.sh",
    "scripts/",
    "openssl",
    "envsubst",
    "gh",
    "curl",
    "export",
    "bats",
    "pytest",
];

fn is_other_tool(code: &str) -> bool {
    let first = code.split_whitespace().next().unwrap_or("");
    OTHER_TOOLS.iter().any(|tool| first == *tool || (tool.ends_with('/') && first.starts_with(tool)))
}

struct Readme {
    /// (line number, h2 section title, code: a fenced line or an inline span)
    code: Vec<(usize, String, String)>,
    /// (line number, h2 section title, the line outside code spans)
    prose: Vec<(usize, String, String)>,
    /// (line number, table row) for rows whose first cell is a single `command`
    rows: Vec<(usize, String, String)>,
}

fn parse_readme(text: &str) -> Readme {
    let span = Regex::new(r"`([^`]+)`").unwrap();
    let first_cell = Regex::new(r"^\|\s*`([a-z][a-z0-9-]*)`\s*\|").unwrap();
    let mut readme = Readme { code: Vec::new(), prose: Vec::new(), rows: Vec::new() };
    let (mut section, mut fenced) = (String::new(), false);
    for (index, line) in text.lines().enumerate() {
        let n = index + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            readme.code.push((n, section.clone(), line.to_string()));
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_string();
        }
        for caps in span.captures_iter(line) {
            readme.code.push((n, section.clone(), caps[1].to_string()));
        }
        readme.prose.push((n, section.clone(), span.replace_all(line, "").to_string()));
        if let Some(caps) = first_cell.captures(line) {
            readme.rows.push((n, caps[1].to_string(), line.to_string()));
        }
    }
    readme
}

/// The sections whose prose is about dify-gitops itself.
fn about_the_cli(section: &str) -> bool {
    section.starts_with("The dify-gitops CLI") || section.starts_with("User guide")
}

/// `dify-gitops <command> <args>` in a piece of code: (command, the flags up to the end of that shell command).
fn invocations(code: &str) -> Vec<(String, Vec<String>)> {
    let code = code.split(" #").next().unwrap();
    let invocation = Regex::new(r"(?:^|[\s(;|&])dify-gitops\s+([a-z][a-z0-9-]*)([^|;&)]*)").unwrap();
    let flag = Regex::new(r"(?:^|\s)(--[a-z][a-z0-9-]*)").unwrap();
    let subcommand = Regex::new(r"^\s+(set|list)\b").unwrap();
    invocation
        .captures_iter(code)
        .map(|caps| {
            let flags = flag.captures_iter(&caps[2]).map(|f| f[1].to_string()).collect();
            let command = match subcommand.captures(&caps[2]).filter(|_| &caps[1] == "secret") {
                Some(sub) => format!("{} {}", &caps[1], &sub[1]),
                None => caps[1].to_string(),
            };
            (command, flags)
        })
        .collect()
}

#[test]
fn every_command_and_flag_the_readme_names_exists_in_the_cli() {
    let cli = cli();
    let all_flags: BTreeSet<&String> = cli.values().flatten().collect();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let readme = parse_readme(&text);
    let mut problems = Vec::new();
    let mut shown = 0;

    for (n, _, code) in &readme.code {
        for (command, flags) in invocations(code) {
            shown += 1;
            let Some(known) = cli.get(&command) else {
                problems.push(format!("README.md:{n}: `dify-gitops {command}` is not a command of the CLI"));
                continue;
            };
            for flag in flags.iter().filter(|f| !known.contains(*f)) {
                problems.push(format!("README.md:{n}: `dify-gitops {command}` has no {flag} (see `{command} --help`)"));
            }
        }
    }
    let flag = Regex::new(r"(?:^|[\s(/`])(--[a-z][a-z0-9-]*)").unwrap();
    for (n, command, row) in &readme.rows {
        if !cli.contains_key(command) {
            continue;
        }
        // A row of a command with subcommands may name the flags of any of them.
        let prefix = format!("{command} ");
        let known: BTreeSet<&String> =
            cli.iter().filter(|(c, _)| *c == command || c.starts_with(&prefix)).flat_map(|(_, f)| f).collect();
        for caps in flag.captures_iter(row) {
            if !known.contains(&caps[1].to_string()) {
                problems.push(format!("README.md:{n}: the `{command}` row names {}, which it does not have", &caps[1]));
            }
        }
    }
    // Other flags named in the CLI and guide sections, in prose or in code that is not another tool's.
    let mut loose = Vec::new();
    for (n, section, prose) in &readme.prose {
        if about_the_cli(section) {
            loose.extend(flag.captures_iter(prose).map(|c| (*n, c[1].to_string())));
        }
    }
    for (n, section, code) in &readme.code {
        if about_the_cli(section) && !is_other_tool(code) && invocations(code).is_empty() {
            loose.extend(flag.captures_iter(code).map(|c| (*n, c[1].to_string())));
        }
    }
    for (n, name) in loose {
        if !all_flags.contains(&name) {
            problems.push(format!("README.md:{n}: {name} is not a flag of any dify-gitops command"));
        }
    }
    // The other way round: every command has its row in the README's command table.
    let rows: BTreeSet<&String> = readme.rows.iter().map(|(_, command, _)| command).collect();
    for command in cli.keys().filter(|c| !c.is_empty() && !c.contains(' ')) {
        if !rows.contains(command) {
            problems.push(format!("README.md: the command table has no row for `{command}`"));
        }
    }
    assert!(shown >= 10, "only {shown} dify-gitops invocations found in README.md: is the parser broken?");
    assert!(problems.is_empty(), "README.md does not match the CLI:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_a_wrong_command_and_flag() {
    assert_eq!(
        invocations("dify-gitops sync --repo . --bogus && dify-gitops verify --url x | tee"),
        [
            ("sync".to_string(), vec!["--repo".to_string(), "--bogus".to_string()]),
            ("verify".to_string(), vec!["--url".to_string()])
        ]
    );
    assert!(invocations("dify-gitops.yaml holds --stuff").is_empty());
    assert!(invocations("cargo install --path . # then dify-gitops sync --x").is_empty());
    let cli = cli();
    assert!(cli["sync"].contains("--dry-run") && cli["sync"].contains("--kubeconfig"));
    assert!(!cli["preflight"].contains("--dry-run"));
    assert!(cli["secret set"].contains("--from-file") && !cli["secret list"].contains("--from-file"));
    assert_eq!(invocations("dify-gitops secret set openai-api-key --force x")[0].0, "secret set");
    assert!(cli[""].contains("--version"));
}
