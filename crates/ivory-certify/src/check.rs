//! One row of a certification report: a named check, its verdict and the evidence.
//!
//! Both halves of `ivory certify` produce [`Check`]s: the static checks of this crate
//! ([`crate::static_checks`]) and the dynamic checks that run the connector against its mocked
//! upstream. The report embeds them as they are (they serialize with serde), and the suite
//! passes only when every check does ([`all_pass`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The connector meets the rule.
    Pass,
    /// The connector breaks the rule; the evidence says where.
    Fail,
}

impl Verdict {
    /// `pass` or `fail`, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of the certification suite.
///
/// `evidence` says what was measured or found, one item per line (a failing secret scan lists
/// one finding per line, redacted). It never holds a secret value.
///
/// ```
/// use ivory_certify::{Check, Verdict};
///
/// let check = Check::fail("declared hosts", "api.evil.test at src/lib.rs:3:17 is not declared");
/// assert_eq!(check.verdict, Verdict::Fail);
/// assert!(!check.passed());
/// let json = serde_json::to_value(&check).unwrap();
/// assert_eq!(json["verdict"], "fail");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The check's stable name, such as `secret scan` (see [`crate::check_names`]).
    pub name: String,
    /// Pass or fail.
    pub verdict: Verdict,
    /// What was measured or found, one item per line.
    pub evidence: String,
}

impl Check {
    /// A passing check.
    pub fn pass(name: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            verdict: Verdict::Pass,
            evidence: evidence.into(),
        }
    }

    /// A failing check.
    pub fn fail(name: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            verdict: Verdict::Fail,
            evidence: evidence.into(),
        }
    }

    /// Whether the verdict is [`Verdict::Pass`].
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.name, self.verdict, self.evidence)
    }
}

/// Whether every check passed (true for an empty list: callers decide whether an empty suite
/// is acceptable).
pub fn all_pass(checks: &[Check]) -> bool {
    checks.iter().all(Check::passed)
}

/// Joins evidence items one per line, keeping at most `limit` of them and saying how many were
/// left out.
pub(crate) fn evidence_lines<I>(items: I, limit: usize) -> String
where
    I: IntoIterator,
    I::Item: fmt::Display,
{
    let mut lines = Vec::new();
    let mut left_out = 0usize;
    for item in items {
        if lines.len() < limit {
            lines.push(item.to_string());
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        lines.push(format!("… and {left_out} more"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_capped() {
        assert_eq!(evidence_lines(["a", "b"], 5), "a\nb");
        assert_eq!(evidence_lines(["a", "b", "c"], 2), "a\nb\n… and 1 more");
        assert_eq!(evidence_lines(Vec::<String>::new(), 2), "");
    }

    #[test]
    fn all_pass_needs_every_check() {
        assert!(all_pass(&[Check::pass("a", "ok")]));
        assert!(!all_pass(&[Check::pass("a", "ok"), Check::fail("b", "no")]));
    }
}
