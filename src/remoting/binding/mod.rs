//! The parameter binder PowerShell would run on the server.
//!
//! A remoting client does not send bound parameters: it sends a command name and its `Args`
//! in whatever form its front end produced (reference psrp-protocol.md §6.2). pypsrp and
//! `AddParameter` send `Identity` + value; `Invoke-Command` and Import-PSSession proxies send
//! what the script said, token by token: `-Identity:` + value, a bare `-ResultSize` followed
//! by its value as a separate positional argument, `-Force` alone, `-Confirm:` with a
//! `SwitchParameter` object, positional values with a Nil name. Exchange's RPS endpoint ran
//! PowerShell's real binder over these; an executor that is not PowerShell (the REST bridge,
//! the sandbox) has to do the same job, and this module is that job, written once.
//!
//! The binder needs the command's metadata ([`CommandMetadata`]: names, aliases, switch or
//! valued, positions, SupportsShouldProcess) because the token stream is ambiguous without
//! it: `-HiddenFromAddressListsEnabled $true` and `-Force $x` look the same on the wire, and
//! only the metadata says whether the next positional value belongs to the parameter.
//! Names match as PowerShell matches them: case-insensitively, by name or alias, and by an
//! unambiguous prefix. Common parameters (`-ErrorAction`, `-WarningAction`, `-Verbose`,
//! `-WhatIf`, `-Confirm`, the `*Variable`s, …) are separated out into [`CommonParameters`]
//! so the executor can act on them the way PowerShell would.
//!
//! Errors carry PowerShell's own texts (`ParameterBindingException`), so a script that
//! mistyped a parameter sees exactly what it saw against RPS.

mod argument_value;
mod common_parameters;
mod error;
mod preference;
mod resolve;
#[cfg(test)]
mod tests;

pub use argument_value::display_value;
pub use common_parameters::{CommonParameters, common_parameters};
pub use error::BindingError;
pub use preference::ActionPreference;

use super::clixml::Value;
use super::executor::{Argument, CommandMetadata, ParameterMetadata};
use argument_value::switch_value;
use common_parameters::set_common;
use resolve::{Target, resolve};

/// One bound parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundValue {
    /// A switch: present (`-Force`, `-Force:$true`) or explicitly off (`-Force:$false`).
    Switch(bool),
    /// A valued parameter's argument, as sent (`Value::Nil` for an explicit `$null`).
    Value(Value),
}

/// A command's arguments after binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoundCommand {
    /// The command's own parameters, canonical names, in the order they were given.
    pub parameters: Vec<(String, BoundValue)>,
    /// The common parameters.
    pub common: CommonParameters,
}

impl BoundCommand {
    /// The bound value of `name` (case-insensitive), if it was bound.
    pub fn get(&self, name: &str) -> Option<&BoundValue> {
        self.parameters
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether `name` was bound.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Binds `name` to `value` unless bound already; false when it was.
    pub fn bind_if_unbound(&mut self, name: &str, value: BoundValue) -> bool {
        if self.contains(name) {
            return false;
        }
        self.parameters.push((name.to_owned(), value));
        true
    }
}

/// How one `Args` element names its parameter.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// `N` Nil.
    Positional,
    /// `Identity` (AddParameter): the value is `V`.
    Plain(&'a str),
    /// `-Identity:` / `-Name: `: the value is `V`.
    Colon(&'a str),
    /// `-ResultSize` / `-Force`: a switch, or the next positional Arg is the value.
    Bare(&'a str),
}

fn token(name: Option<&str>) -> Token<'_> {
    let Some(raw) = name else {
        return Token::Positional;
    };
    let trimmed = raw.trim();
    match trimmed.strip_prefix('-') {
        Some(rest) => match rest.strip_suffix(':') {
            Some(n) => Token::Colon(n.trim()),
            None => Token::Bare(rest.trim()),
        },
        None => Token::Plain(trimmed.strip_suffix(':').unwrap_or(trimmed).trim()),
    }
}

/// Binds `args` to `command`'s parameters as PowerShell's binder would.
///
/// # Errors
/// [`BindingError`] with PowerShell's text for an unknown, ambiguous, repeated or
/// argument-less parameter, a positional value nothing accepts, or an unconvertible switch /
/// ActionPreference value.
pub fn bind(command: &CommandMetadata, args: &[Argument]) -> Result<BoundCommand, BindingError> {
    let mut bound = BoundCommand::default();
    let mut positionals: Vec<&Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let tok = token(arg.name.as_deref());
        let (name, explicit) = match tok {
            Token::Positional => {
                positionals.push(&arg.value);
                continue;
            }
            // A bare `-X` token may still carry a value when a client put one in V.
            Token::Bare(n) => (n, !matches!(arg.value, Value::Nil)),
            Token::Plain(n) | Token::Colon(n) => (n, true),
        };
        let target = resolve(command, name)?;
        let canonical = target.name().to_owned();
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&canonical)) {
            return Err(BindingError::ParameterAlreadyBound {
                command: command.name.clone(),
                parameter: canonical,
            });
        }
        seen.push(canonical.clone());
        let value: BoundValue = if target.is_switch() {
            let v = if matches!(tok, Token::Colon(_)) && matches!(arg.value, Value::Nil) {
                Some(false) // `-Force:$null`
            } else {
                switch_value(&arg.value)
            };
            match v {
                Some(b) => BoundValue::Switch(b),
                None => {
                    return Err(BindingError::CannotConvertArgument {
                        command: command.name.clone(),
                        parameter: canonical,
                        value: display_value(&arg.value),
                        parameter_type: target.parameter_type(),
                        hint: " Parameters of type System.Management.Automation.SwitchParameter accept only \
                               Boolean values and numbers, like $True, $False, 1 or 0."
                            .into(),
                    });
                }
            }
        } else if explicit {
            BoundValue::Value(arg.value.clone())
        } else {
            // `-ResultSize` then its value as the next positional Arg.
            match args.get(i) {
                Some(next) if next.name.is_none() => {
                    i += 1;
                    BoundValue::Value(next.value.clone())
                }
                _ if matches!(tok, Token::Plain(_)) => BoundValue::Value(Value::Nil),
                _ => {
                    return Err(BindingError::MissingArgument {
                        command: command.name.clone(),
                        parameter: canonical,
                        parameter_type: target.parameter_type(),
                    });
                }
            }
        };
        match target {
            Target::Own(_) => bound.parameters.push((canonical, value)),
            Target::Common(c) => set_common(command, &mut bound.common, c, value)?,
        }
    }
    let mut slots: Vec<&ParameterMetadata> = command
        .parameters
        .iter()
        .filter(|p| p.position.is_some())
        .collect();
    slots.sort_by_key(|p| p.position);
    slots.retain(|p| !bound.contains(&p.name));
    let mut slots = slots.into_iter();
    for value in positionals {
        match slots.next() {
            Some(p) => bound
                .parameters
                .push((p.name.clone(), BoundValue::Value(value.clone()))),
            None => {
                return Err(BindingError::PositionalParameterNotFound {
                    command: command.name.clone(),
                    argument: display_value(value),
                });
            }
        }
    }
    Ok(bound)
}
