//! The audit report: what JSON carries, and for people one block per finding, then a summary line.

use std::fmt::Write as _;

use serde::Serialize;

use super::rules::{Finding, Severity};

/// What `audit` found, for JSON and for [`table`].
#[derive(Debug, Serialize)]
pub struct Report {
    /// No error-level finding.
    pub clean: bool,
    /// Files (working tree) and file versions (history) scanned.
    pub files: usize,
    /// Commits walked (0 without --history).
    pub commits: usize,
    pub findings: Vec<Finding>,
}

/// The findings for people: one block per finding, then a summary line.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let severity = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARN ",
        };
        let place = match (&f.commit, f.line) {
            (Some(commit), _) => format!("{}:{}", &commit[..commit.len().min(12)], f.path),
            (None, Some(line)) => format!("{}:{line}", f.path),
            (None, None) => f.path.clone(),
        };
        let key = f.key.as_deref().map(|k| format!("  key {k}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{severity}  {place}{key}  [{}]",
            serde_json::to_value(f.rule).unwrap_or_default().as_str().unwrap_or("")
        );
        let _ = writeln!(out, "       {} ({})", f.message, f.hint);
        let _ = writeln!(out, "       fix: {}", f.fix);
    }
    let errors = report.findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = report.findings.len() - errors;
    let scope = if report.commits > 0 {
        format!("{} file versions in the working tree and {} commits", report.files, report.commits)
    } else {
        format!("{} files", report.files)
    };
    let _ = writeln!(out, "audit: {errors} problem(s), {warnings} warning(s) in {scope}");
    out
}
