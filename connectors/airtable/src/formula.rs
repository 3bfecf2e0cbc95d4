//! Airtable formulas → platform formulas.
//!
//! Airtable's metadata API returns a formula with its field references **by field id**
//! (`{fldXXXXXXXXXXXXXX}`; the editor shows `{Field Name}`). The platform's formula language
//! is the common subset of Airtable's (`ivory-formula`, `language.md`): same operators,
//! `{Name}` references, `TRUE()`/`FALSE()`, and the functions `AND OR NOT IF CONCATENATE ROUND
//! ABS MIN MAX LEN LOWER UPPER TRIM BLANK DATETIME_DIFF TODAY NOW`. Translating is therefore:
//!
//! 1. [`rewrite_references`]: every `{…}` outside string literals names a field of the table
//!    (by id, or by name for hand-written formulas) and becomes `{platform field name}`.
//!    String literals (`"…"`, `'…'`, with backslash escapes) are copied untouched.
//! 2. The platform compiles the result against the object's field types (parse and type
//!    check). A formula it cannot compile — an Airtable function it does not have (`SWITCH`,
//!    `DATEADD`, `DATETIME_FORMAT`, `SUM`, `REGEX_*`…), a string in arithmetic (Airtable
//!    coerces, the platform refuses), a reference to an unknown field, or a formula Airtable
//!    itself marks invalid — is **not translated**: the field stays a synced value (Airtable's
//!    computed value, typed by the formula's `result`), and the sync's notes say why.
//!
//! The compile check itself runs in [`crate::schema`], with every field's type at hand.

use std::collections::HashMap;

/// Why a formula was not translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    /// What stands in the way, for the sync's notes.
    pub reason: String,
}

/// Rewrites the `{…}` field references of an Airtable formula to `{platform name}`.
/// `names` maps both field ids and field names of the table to platform field names.
///
/// ```
/// use std::collections::HashMap;
/// use ivory_connector_airtable::formula::rewrite_references;
///
/// let names = HashMap::from([("fldQty0000000001".to_owned(), "Qty".to_owned())]);
/// assert_eq!(
///     rewrite_references("{fldQty0000000001} & \" {kept}\"", &names),
///     Ok("{Qty} & \" {kept}\"".to_owned())
/// );
/// ```
pub fn rewrite_references(
    formula: &str,
    names: &HashMap<String, String>,
) -> Result<String, Untranslatable> {
    let mut out = String::with_capacity(formula.len());
    let mut chars = formula.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                let mut closed = false;
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' {
                        if let Some(escaped) = chars.next() {
                            out.push(escaped);
                        }
                    } else if s == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(Untranslatable {
                        reason: "the formula has an unterminated string".into(),
                    });
                }
            }
            '{' => {
                let mut reference = String::new();
                let mut closed = false;
                for r in chars.by_ref() {
                    if r == '}' {
                        closed = true;
                        break;
                    }
                    reference.push(r);
                }
                if !closed {
                    return Err(Untranslatable {
                        reason: "the formula has an unterminated field reference".into(),
                    });
                }
                let Some(name) = names.get(&reference) else {
                    return Err(Untranslatable {
                        reason: format!(
                            "the formula references {{{reference}}}, which is not a field of the table"
                        ),
                    });
                };
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> HashMap<String, String> {
        HashMap::from([
            ("fldA".to_owned(), "Unit Price".to_owned()),
            ("fldB".to_owned(), "Qty".to_owned()),
            ("Qty".to_owned(), "Qty".to_owned()),
        ])
    }

    #[test]
    fn references_by_id_or_name_become_platform_names() {
        assert_eq!(
            rewrite_references("ROUND({fldA} * {fldB}, 2)", &names()),
            Ok("ROUND({Unit Price} * {Qty}, 2)".into())
        );
        assert_eq!(
            rewrite_references("{Qty} + 1", &names()),
            Ok("{Qty} + 1".into())
        );
    }

    #[test]
    fn string_literals_are_left_alone() {
        assert_eq!(
            rewrite_references(r#"CONCATENATE("{fldA}", '\'{x}', {fldB})"#, &names()),
            Ok(r#"CONCATENATE("{fldA}", '\'{x}', {Qty})"#.into())
        );
    }

    #[test]
    fn unknown_references_and_broken_text_are_reported() {
        assert!(
            rewrite_references("{fldZ} * 2", &names())
                .expect_err("unknown field")
                .reason
                .contains("{fldZ}")
        );
        assert!(rewrite_references("\"open", &names()).is_err());
        assert!(rewrite_references("{fldA", &names()).is_err());
    }
}
