//! What `preflight` and `verify` report: checks that pass, warn, fail or are skipped, each with a one-line reason
//! and the fix, printed as one table for people (JSON comes from the callers' own report types).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One line of the table.
pub struct Row<'a> {
    pub status: Status,
    pub name: &'a str,
    pub reason: String,
    pub fix: Option<&'a str>,
}

/// `STATUS  name  reason`, names aligned, with `fix: …` under each row that has one.
pub fn table<'a>(rows: impl IntoIterator<Item = Row<'a>>) -> String {
    let rows: Vec<Row> = rows.into_iter().collect();
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for row in &rows {
        out.push_str(&format!("{}  {:<width$}  {}\n", row.status.label(), row.name, row.reason));
        if let Some(fix) = row.fix {
            out.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_align_and_fixes_sit_under_their_row() {
        let text = table([
            Row { status: Status::Pass, name: "api", reason: "ok".into(), fix: None },
            Row { status: Status::Fail, name: "storage", reason: "missing".into(), fix: Some("create it") },
        ]);
        assert_eq!(text, "PASS  api      ok\nFAIL  storage  missing\n               fix: create it\n");
    }
}
