//! Name resolution: which parameter a name the client sent means.
//!
//! Separate because PowerShell's matching rules (case-insensitive, name or alias, exact match
//! before an unambiguous prefix, ShouldProcess-only common parameters) are a concept of their
//! own, apart from how tokens pair with values.

use super::BindingError;
use super::common_parameters::{COMMON, Common};
use crate::remoting::executor::{CommandMetadata, ParameterMetadata};

/// What a name resolved to.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Own(&'a ParameterMetadata),
    Common(&'static Common),
}

impl Target<'_> {
    pub(super) fn name(&self) -> &str {
        match self {
            Self::Own(p) => &p.name,
            Self::Common(c) => c.name,
        }
    }
    pub(super) fn is_switch(&self) -> bool {
        match self {
            Self::Own(p) => p.is_switch,
            Self::Common(c) => c.is_switch,
        }
    }
    pub(super) fn parameter_type(&self) -> String {
        match self {
            Self::Own(p) => p.parameter_type.clone(),
            Self::Common(c) if c.is_switch => "System.Management.Automation.SwitchParameter".into(),
            Self::Common(c) if c.name.ends_with("Action") => {
                "System.Management.Automation.ActionPreference".into()
            }
            Self::Common(_) => "System.String".into(),
        }
    }
}

pub(super) fn resolve<'a>(
    command: &'a CommandMetadata,
    name: &str,
) -> Result<Target<'a>, BindingError> {
    let commons = COMMON
        .iter()
        .filter(|c| command.supports_should_process || !c.should_process_only);
    let mut all: Vec<(Target<'a>, Vec<&str>)> = command
        .parameters
        .iter()
        .map(|p| {
            let mut names = vec![p.name.as_str()];
            names.extend(p.aliases.iter().map(String::as_str));
            (Target::Own(p), names)
        })
        .collect();
    all.extend(commons.map(|c| {
        let mut names = vec![c.name];
        names.extend(c.aliases.iter().copied());
        (Target::Common(c), names)
    }));
    // An exact name or alias wins, even when it is also a prefix of another name.
    if let Some((t, _)) = all
        .iter()
        .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    {
        return Ok(*t);
    }
    let lower = name.to_ascii_lowercase();
    let mut hits: Vec<Target<'a>> = Vec::new();
    for (t, names) in &all {
        if !name.is_empty()
            && names
                .iter()
                .any(|n| n.to_ascii_lowercase().starts_with(&lower))
        {
            hits.push(*t);
        }
    }
    match hits.len() {
        0 => Err(BindingError::NamedParameterNotFound {
            command: command.name.clone(),
            name: name.into(),
        }),
        1 => Ok(hits[0]),
        _ => Err(BindingError::AmbiguousParameter {
            command: command.name.clone(),
            name: name.into(),
            candidates: hits.iter().map(|t| t.name().to_owned()).collect(),
        }),
    }
}
