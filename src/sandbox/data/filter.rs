//! `-Filter`: the one-clause OPATH subset the simulator understands.

use super::wildcard::matches as wildcard_match;
use super::{CmdletError, ExObject, Prop};

/// A one-clause OPATH filter: `Property -eq|-ne|-like|-notlike 'value'`.
pub(super) struct Filter {
    property: String,
    op: String,
    value: String,
}

impl Filter {
    pub(super) fn parse(text: &str) -> Result<Self, CmdletError> {
        let invalid = || {
            CmdletError::new(
                "Microsoft.Exchange.Management.Tasks.InvalidFilterException",
                format!(
                    "Cannot bind parameter 'Filter' to the target. Exception setting \"Filter\": \"Invalid filter syntax. \
                     For a description of the filter parameter syntax see the command help.\n\"{text}\" at position 1.\""
                ),
            )
        };
        let t = text
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim();
        let mut parts = t.splitn(3, char::is_whitespace);
        let (Some(prop), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let op = op.to_ascii_lowercase();
        if !["-eq", "-ne", "-like", "-notlike"].contains(&op.as_str()) {
            return Err(invalid());
        }
        let value = value
            .trim()
            .trim_matches(|c| c == '\'' || c == '"')
            .to_owned();
        let value = match value.to_ascii_lowercase().as_str() {
            "$true" => "True".to_owned(),
            "$false" => "False".to_owned(),
            "$null" => String::new(),
            _ => value,
        };
        Ok(Self {
            property: prop.to_owned(),
            op,
            value,
        })
    }

    pub(super) fn matches(&self, obj: &ExObject) -> bool {
        let actual = obj.get(&self.property).map(|p| match p {
            Prop::Multi(v) => v.clone(),
            other => vec![other.text()],
        });
        let actual = actual.unwrap_or_default();
        let any = |f: &dyn Fn(&str) -> bool| actual.iter().any(|a| f(a));
        match self.op.as_str() {
            "-eq" => any(&|a| a.eq_ignore_ascii_case(&self.value)),
            "-ne" => !any(&|a| a.eq_ignore_ascii_case(&self.value)),
            "-like" => any(&|a| wildcard_match(&self.value, a)),
            _ => !any(&|a| wildcard_match(&self.value, a)),
        }
    }
}
