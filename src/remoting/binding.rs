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

use super::clixml::Value;
use super::executor::{Argument, CommandMetadata, ErrorCategory, ErrorRecord, ParameterMetadata};

/// `System.Management.Automation.ActionPreference`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionPreference {
    SilentlyContinue = 0,
    Stop = 1,
    Continue = 2,
    Inquire = 3,
    Ignore = 4,
    Suspend = 5,
    Break = 6,
}

impl ActionPreference {
    const ALL: [ActionPreference; 7] = [
        Self::SilentlyContinue,
        Self::Stop,
        Self::Continue,
        Self::Inquire,
        Self::Ignore,
        Self::Suspend,
        Self::Break,
    ];

    /// The enum name (`Stop`), as the REST API expects it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SilentlyContinue => "SilentlyContinue",
            Self::Stop => "Stop",
            Self::Continue => "Continue",
            Self::Inquire => "Inquire",
            Self::Ignore => "Ignore",
            Self::Suspend => "Suspend",
            Self::Break => "Break",
        }
    }

    /// True when records of this stream are not shown (SilentlyContinue, Ignore).
    pub fn is_silent(self) -> bool {
        matches!(self, Self::SilentlyContinue | Self::Ignore)
    }

    fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        if let Ok(n) = name.parse::<i64>() {
            return Self::from_number(n);
        }
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    fn from_number(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| *p as i64 == n)
    }

    /// Reads a CLIXML value: the name as a string, a number, or the enum Obj Windows sends
    /// (`<ToString>Stop</ToString><I32>1</I32>`).
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Self::from_name(s),
            Value::I32(n) => Self::from_number(i64::from(*n)),
            Value::I64(n) => Self::from_number(*n),
            Value::U32(n) => Self::from_number(i64::from(*n)),
            Value::I16(n) => Self::from_number(i64::from(*n)),
            Value::U8(n) => Self::from_number(i64::from(*n)),
            Value::Object(obj) => obj
                .primitive
                .as_ref()
                .and_then(Self::from_value)
                .or_else(|| obj.to_string.as_deref().and_then(Self::from_name)),
            _ => None,
        }
    }
}

/// The common parameters PowerShell adds to every cmdlet, as the client passed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommonParameters {
    /// `-ErrorAction`
    pub error_action: Option<ActionPreference>,
    /// `-WarningAction`
    pub warning_action: Option<ActionPreference>,
    /// `-InformationAction`
    pub information_action: Option<ActionPreference>,
    /// `-ProgressAction` (PowerShell 7.4+)
    pub progress_action: Option<ActionPreference>,
    /// `-Verbose` / `-Verbose:$false`
    pub verbose: Option<bool>,
    /// `-Debug`
    pub debug: Option<bool>,
    /// `-WhatIf` (only for commands that support ShouldProcess)
    pub what_if: Option<bool>,
    /// `-Confirm` / `-Confirm:$false` (only for commands that support ShouldProcess)
    pub confirm: Option<bool>,
    /// Client-side parameters that have no meaning on the server (`-OutVariable`,
    /// `-ErrorVariable`, `-OutBuffer`, `-PipelineVariable`, …): accepted, kept, not acted on.
    pub client_side: Vec<(String, Value)>,
}

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

/// Why the arguments could not be bound. `Display` is PowerShell's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// No parameter, alias or prefix matches.
    #[error("A parameter cannot be found that matches parameter name '{name}'.")]
    NamedParameterNotFound {
        /// The command.
        command: String,
        /// The name as the client spelled it (without dash and colon).
        name: String,
    },
    /// A prefix matches several parameters.
    #[error(
        "Parameter cannot be processed because the parameter name '{name}' is ambiguous. \
         Possible matches include: {}.", candidates.iter().map(|c| format!("-{c}")).collect::<Vec<_>>().join(" ")
    )]
    AmbiguousParameter {
        /// The command.
        command: String,
        /// The prefix as sent.
        name: String,
        /// The parameters it could mean.
        candidates: Vec<String>,
    },
    /// A valued parameter token with nothing after it.
    #[error(
        "Missing an argument for parameter '{parameter}'. Specify a parameter of type \
         '{parameter_type}' and try again."
    )]
    MissingArgument {
        /// The command.
        command: String,
        /// The canonical parameter name.
        parameter: String,
        /// Its type (display).
        parameter_type: String,
    },
    /// A positional value no positional parameter is left for.
    #[error("A positional parameter cannot be found that accepts argument '{argument}'.")]
    PositionalParameterNotFound {
        /// The command.
        command: String,
        /// The argument's text.
        argument: String,
    },
    /// The same parameter twice.
    #[error(
        "Cannot bind parameter because parameter '{parameter}' is specified more than once. To \
         provide multiple values to parameters that can accept multiple values, use the array \
         syntax. For example, \"-parameter value1,value2,value3\"."
    )]
    ParameterAlreadyBound {
        /// The command.
        command: String,
        /// The canonical parameter name.
        parameter: String,
    },
    /// A value that does not convert to the parameter's type (switches, ActionPreference).
    #[error(
        "Cannot bind parameter '{parameter}'. Cannot convert value \"{value}\" to type \
         \"{parameter_type}\".{hint}"
    )]
    CannotConvertArgument {
        /// The command.
        command: String,
        /// The canonical parameter name.
        parameter: String,
        /// The value's text.
        value: String,
        /// The target type.
        parameter_type: String,
        /// What would have been accepted (leading space), or empty.
        hint: String,
    },
}

impl BindingError {
    /// PowerShell's error id (first part of FullyQualifiedErrorId).
    pub fn error_id(&self) -> &'static str {
        match self {
            Self::NamedParameterNotFound { .. } => "NamedParameterNotFound",
            Self::AmbiguousParameter { .. } => "AmbiguousParameter",
            Self::MissingArgument { .. } => "MissingArgument",
            Self::PositionalParameterNotFound { .. } => "PositionalParameterNotFound",
            Self::ParameterAlreadyBound { .. } => "ParameterAlreadyBound",
            Self::CannotConvertArgument { .. } => "CannotConvertArgumentNoMessage",
        }
    }

    fn command(&self) -> &str {
        match self {
            Self::NamedParameterNotFound { command, .. }
            | Self::AmbiguousParameter { command, .. }
            | Self::MissingArgument { command, .. }
            | Self::PositionalParameterNotFound { command, .. }
            | Self::ParameterAlreadyBound { command, .. }
            | Self::CannotConvertArgument { command, .. } => command,
        }
    }

    /// The ErrorRecord PowerShell would have produced (a terminating ParameterBindingException).
    pub fn to_error_record(&self) -> ErrorRecord {
        let command = self.command().to_owned();
        let target_name = match self {
            Self::NamedParameterNotFound { .. } | Self::AmbiguousParameter { .. } => String::new(),
            Self::PositionalParameterNotFound { argument, .. } => argument.clone(),
            _ => String::new(),
        };
        ErrorRecord {
            message: self.to_string(),
            exception_type: "System.Management.Automation.ParameterBindingException".into(),
            fully_qualified_error_id: format!("{},{}", self.error_id(), command),
            category: ErrorCategory::InvalidArgument,
            activity: command,
            reason: "ParameterBindingException".into(),
            target_name,
            target_type: String::new(),
            target_object: Value::Nil,
        }
    }
}

/// A common parameter: canonical name, aliases, switch or not.
struct Common {
    name: &'static str,
    aliases: &'static [&'static str],
    is_switch: bool,
    should_process_only: bool,
}

const COMMON: &[Common] = &[
    Common {
        name: "Verbose",
        aliases: &["vb"],
        is_switch: true,
        should_process_only: false,
    },
    Common {
        name: "Debug",
        aliases: &["db"],
        is_switch: true,
        should_process_only: false,
    },
    Common {
        name: "ErrorAction",
        aliases: &["ea"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "WarningAction",
        aliases: &["wa"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "InformationAction",
        aliases: &["infa"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "ProgressAction",
        aliases: &["proga"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "ErrorVariable",
        aliases: &["ev"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "WarningVariable",
        aliases: &["wv"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "InformationVariable",
        aliases: &["iv"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "OutVariable",
        aliases: &["ov"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "OutBuffer",
        aliases: &["ob"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "PipelineVariable",
        aliases: &["pv"],
        is_switch: false,
        should_process_only: false,
    },
    Common {
        name: "WhatIf",
        aliases: &["wi"],
        is_switch: true,
        should_process_only: true,
    },
    Common {
        name: "Confirm",
        aliases: &["cf"],
        is_switch: true,
        should_process_only: true,
    },
];

/// The common parameters' metadata (for GET_COMMAND_METADATA replies).
pub fn common_parameters(supports_should_process: bool) -> Vec<ParameterMetadata> {
    COMMON
        .iter()
        .filter(|c| supports_should_process || !c.should_process_only)
        .map(|c| ParameterMetadata {
            name: c.name.into(),
            parameter_type: match c.name {
                _ if c.is_switch => "System.Management.Automation.SwitchParameter".into(),
                "ErrorAction" | "WarningAction" | "InformationAction" | "ProgressAction" => {
                    "System.Management.Automation.ActionPreference".into()
                }
                "OutBuffer" => "System.Int32".into(),
                _ => "System.String".into(),
            },
            aliases: c.aliases.iter().map(|a| (*a).into()).collect(),
            is_switch: c.is_switch,
            position: None,
        })
        .collect()
}

/// What a name resolved to.
#[derive(Clone, Copy)]
enum Target<'a> {
    Own(&'a ParameterMetadata),
    Common(&'static Common),
}

impl Target<'_> {
    fn name(&self) -> &str {
        match self {
            Self::Own(p) => &p.name,
            Self::Common(c) => c.name,
        }
    }
    fn is_switch(&self) -> bool {
        match self {
            Self::Own(p) => p.is_switch,
            Self::Common(c) => c.is_switch,
        }
    }
    fn parameter_type(&self) -> String {
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

fn resolve<'a>(command: &'a CommandMetadata, name: &str) -> Result<Target<'a>, BindingError> {
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

/// A short display text for a value (error messages).
pub fn display_value(value: &Value) -> String {
    match value {
        Value::Nil => String::new(),
        Value::String(s)
        | Value::Uri(s)
        | Value::Version(s)
        | Value::Decimal(s)
        | Value::ScriptBlock(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "True".into()
            } else {
                "False".into()
            }
        }
        Value::Char(c) => char::from_u32(u32::from(*c))
            .map(String::from)
            .unwrap_or_default(),
        Value::I8(n) => n.to_string(),
        Value::U8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::U16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        Value::Double(n) => n.to_string(),
        Value::DateTime(d) => d.to_rfc3339(),
        Value::UtcDateTime(d) => d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Value::Duration(t) => format!("{t} ticks"),
        Value::Guid(g) => g.to_string(),
        Value::Bytes(b) => format!("System.Byte[{}]", b.len()),
        Value::XmlDocument(x) => x.clone(),
        Value::Object(o) => o
            .to_string
            .clone()
            .or_else(|| o.primitive.as_ref().map(display_value))
            .or_else(|| o.type_names.first().cloned())
            .unwrap_or_default(),
    }
}

/// A switch's value: Nil and `true` are on, `false` off, a SwitchParameter Obj by IsPresent.
fn switch_value(value: &Value) -> Option<bool> {
    match value {
        Value::Nil => Some(true),
        Value::Bool(b) => Some(*b),
        Value::I32(n) => Some(*n != 0),
        Value::I64(n) => Some(*n != 0),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Some(false),
        Value::Object(obj) => {
            let present = obj
                .adapted
                .iter()
                .chain(obj.extended.iter())
                .find(|(n, _)| n.eq_ignore_ascii_case("IsPresent"))
                .map(|(_, v)| v);
            match present {
                Some(v) => switch_value(v),
                None => obj.primitive.as_ref().and_then(switch_value).or_else(|| {
                    obj.to_string
                        .as_deref()
                        .and_then(|s| switch_value(&Value::String(s.into())))
                }),
            }
        }
        _ => None,
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

fn set_common(
    command: &CommandMetadata,
    common: &mut CommonParameters,
    c: &'static Common,
    value: BoundValue,
) -> Result<(), BindingError> {
    let pref = |value: &BoundValue| -> Result<ActionPreference, BindingError> {
        let v = match value {
            BoundValue::Value(v) => v,
            BoundValue::Switch(_) => &Value::Nil,
        };
        ActionPreference::from_value(v).ok_or_else(|| BindingError::CannotConvertArgument {
            command: command.name.clone(),
            parameter: c.name.into(),
            value: display_value(v),
            parameter_type: "System.Management.Automation.ActionPreference".into(),
            hint: " Error: \"Unable to match the identifier name to a valid enumerator name. Specify one of \
                   the following enumerator names and try again: SilentlyContinue, Stop, Continue, Inquire, \
                   Ignore, Suspend, Break\""
                .into(),
        })
    };
    let switch = |value: &BoundValue| matches!(value, BoundValue::Switch(true));
    match c.name {
        "ErrorAction" => common.error_action = Some(pref(&value)?),
        "WarningAction" => common.warning_action = Some(pref(&value)?),
        "InformationAction" => common.information_action = Some(pref(&value)?),
        "ProgressAction" => common.progress_action = Some(pref(&value)?),
        "Verbose" => common.verbose = Some(switch(&value)),
        "Debug" => common.debug = Some(switch(&value)),
        "WhatIf" => common.what_if = Some(switch(&value)),
        "Confirm" => common.confirm = Some(switch(&value)),
        other => {
            let v = match value {
                BoundValue::Value(v) => v,
                BoundValue::Switch(b) => Value::Bool(b),
            };
            common.client_side.push((other.into(), v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::clixml::Object;

    fn p(
        name: &str,
        is_switch: bool,
        position: Option<u32>,
        aliases: &[&str],
    ) -> ParameterMetadata {
        ParameterMetadata {
            name: name.into(),
            parameter_type: if is_switch {
                "System.Management.Automation.SwitchParameter".into()
            } else {
                "System.String".into()
            },
            aliases: aliases.iter().map(|a| (*a).into()).collect(),
            is_switch,
            position,
        }
    }

    fn set_mailbox() -> CommandMetadata {
        CommandMetadata {
            name: "Set-Mailbox".into(),
            namespace: "tmp".into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: vec![
                p("Identity", false, Some(0), &[]),
                p("CustomAttribute1", false, None, &[]),
                p("CustomAttribute2", false, None, &[]),
                p("HiddenFromAddressListsEnabled", false, None, &[]),
                p("EmailAddresses", false, None, &[]),
                p("Force", true, None, &[]),
                p("DisplayName", false, None, &[]),
                p("ResultSize", false, None, &[]),
                p("Archive", true, None, &[]),
            ],
            supports_should_process: true,
        }
    }

    fn get_mailbox() -> CommandMetadata {
        CommandMetadata {
            name: "Get-Mailbox".into(),
            namespace: "tmp".into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: vec![
                p("Identity", false, Some(0), &[]),
                p("ResultSize", false, None, &[]),
                p("Filter", false, None, &[]),
                p("Anr", false, None, &[]),
                p("Archive", true, None, &[]),
                p("RecipientTypeDetails", false, None, &[]),
                p("InactiveMailboxOnly", true, None, &[]),
                p("IncludeInactiveMailbox", true, None, &[]),
            ],
            supports_should_process: false,
        }
    }

    fn a(name: Option<&str>, value: Value) -> Argument {
        Argument {
            name: name.map(Into::into),
            value,
        }
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn val(b: &BoundCommand, name: &str) -> Value {
        match b.get(name) {
            Some(BoundValue::Value(v)) => v.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn switch_obj(present: bool) -> Value {
        Value::Object(Box::new(Object {
            type_names: vec![
                "System.Management.Automation.SwitchParameter".into(),
                "System.ValueType".into(),
            ],
            to_string: Some(if present { "True" } else { "False" }.into()),
            adapted: vec![("IsPresent".into(), Value::Bool(present))],
            ..Object::default()
        }))
    }

    fn enum_obj(name: &str, n: i32) -> Value {
        Value::Object(Box::new(Object {
            type_names: vec![
                "System.Management.Automation.ActionPreference".into(),
                "System.Enum".into(),
                "System.ValueType".into(),
                "System.Object".into(),
            ],
            to_string: Some(name.into()),
            primitive: Some(Value::I32(n)),
            ..Object::default()
        }))
    }

    #[test]
    fn plain_name_as_pypsrp_sends_it() {
        let b = bind(
            &get_mailbox(),
            &[
                a(Some("Identity"), s("AdeleV")),
                a(Some("ResultSize"), Value::I32(10)),
            ],
        )
        .unwrap();
        assert_eq!(val(&b, "Identity"), s("AdeleV"));
        assert_eq!(val(&b, "resultsize"), Value::I32(10));
        assert_eq!(b.parameters[0].0, "Identity");
    }

    #[test]
    fn colon_form_and_colon_space_form() {
        let b = bind(
            &get_mailbox(),
            &[
                a(Some("-Identity:"), s("AdeleV")),
                a(Some("-ResultSize: "), s("Unlimited")),
            ],
        )
        .unwrap();
        assert_eq!(val(&b, "Identity"), s("AdeleV"));
        assert_eq!(val(&b, "ResultSize"), s("Unlimited"));
    }

    #[test]
    fn bare_token_takes_the_next_positional_value() {
        // `Get-Mailbox -ResultSize 10` from Invoke-Command's converter.
        let b = bind(
            &get_mailbox(),
            &[a(Some("-ResultSize"), Value::Nil), a(None, Value::I32(10))],
        )
        .unwrap();
        assert_eq!(val(&b, "ResultSize"), Value::I32(10));
        assert!(
            !b.contains("Identity"),
            "the value was consumed, not bound positionally"
        );
    }

    #[test]
    fn bare_valued_token_with_boolean_value() {
        let b = bind(
            &set_mailbox(),
            &[
                a(None, s("AdeleV")),
                a(Some("-HiddenFromAddressListsEnabled"), Value::Nil),
                a(None, Value::Bool(true)),
            ],
        )
        .unwrap();
        assert_eq!(val(&b, "Identity"), s("AdeleV"));
        assert_eq!(val(&b, "HiddenFromAddressListsEnabled"), Value::Bool(true));
    }

    #[test]
    fn bare_switch_does_not_consume_the_next_value() {
        let b = bind(
            &set_mailbox(),
            &[a(Some("-Force"), Value::Nil), a(None, s("AdeleV"))],
        )
        .unwrap();
        assert_eq!(b.get("Force"), Some(&BoundValue::Switch(true)));
        assert_eq!(val(&b, "Identity"), s("AdeleV"));
    }

    #[test]
    fn switch_forms() {
        let b = bind(
            &set_mailbox(),
            &[
                a(Some("Force"), Value::Bool(true)),
                a(Some("Archive"), Value::Nil),
            ],
        )
        .unwrap();
        assert_eq!(b.get("Force"), Some(&BoundValue::Switch(true)));
        assert_eq!(b.get("Archive"), Some(&BoundValue::Switch(true)));
        let b = bind(
            &set_mailbox(),
            &[
                a(Some("-Force:"), switch_obj(false)),
                a(Some("-Archive:"), Value::Bool(false)),
            ],
        )
        .unwrap();
        assert_eq!(b.get("Force"), Some(&BoundValue::Switch(false)));
        assert_eq!(b.get("Archive"), Some(&BoundValue::Switch(false)));
        let err = bind(&set_mailbox(), &[a(Some("Force"), s("maybe"))]).unwrap_err();
        assert!(
            matches!(err, BindingError::CannotConvertArgument { .. }),
            "{err}"
        );
    }

    #[test]
    fn confirm_switch_parameter_object_goes_to_common() {
        let b = bind(
            &set_mailbox(),
            &[
                a(Some("-Identity:"), s("x")),
                a(Some("-Confirm:"), switch_obj(false)),
            ],
        )
        .unwrap();
        assert_eq!(b.common.confirm, Some(false));
        assert!(!b.contains("Confirm"));
        let b = bind(
            &set_mailbox(),
            &[a(Some("-WhatIf"), Value::Nil), a(None, s("x"))],
        )
        .unwrap();
        assert_eq!(b.common.what_if, Some(true));
        assert_eq!(val(&b, "Identity"), s("x"));
    }

    #[test]
    fn whatif_is_unknown_without_should_process() {
        let err = bind(&get_mailbox(), &[a(Some("WhatIf"), Value::Bool(true))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "A parameter cannot be found that matches parameter name 'WhatIf'."
        );
    }

    #[test]
    fn positional_values_bind_to_positional_parameters() {
        let b = bind(&get_mailbox(), &[a(None, s("AdeleV"))]).unwrap();
        assert_eq!(val(&b, "Identity"), s("AdeleV"));
        let err = bind(&get_mailbox(), &[a(None, s("AdeleV")), a(None, s("extra"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "A positional parameter cannot be found that accepts argument 'extra'."
        );
        assert_eq!(err.error_id(), "PositionalParameterNotFound");
        // Named Identity first: the positional value has nowhere to go.
        let err = bind(
            &get_mailbox(),
            &[a(Some("Identity"), s("a")), a(None, s("b"))],
        )
        .unwrap_err();
        assert!(matches!(
            err,
            BindingError::PositionalParameterNotFound { .. }
        ));
    }

    #[test]
    fn names_are_case_insensitive_and_aliases_and_prefixes_resolve() {
        let mut cmd = get_mailbox();
        cmd.parameters
            .push(p("OrganizationalUnit", false, None, &["OU"]));
        let b = bind(
            &cmd,
            &[
                a(Some("-identity:"), s("x")),
                a(Some("-RESULTS"), Value::Nil),
                a(None, Value::I32(5)),
                a(Some("ou"), s("y")),
            ],
        )
        .unwrap();
        assert_eq!(val(&b, "Identity"), s("x"));
        assert_eq!(val(&b, "ResultSize"), Value::I32(5));
        assert_eq!(val(&b, "OrganizationalUnit"), s("y"));
        // Prefix of a common parameter.
        let b = bind(&cmd, &[a(Some("-ErrorA:"), s("Stop"))]).unwrap();
        assert_eq!(b.common.error_action, Some(ActionPreference::Stop));
    }

    #[test]
    fn exact_match_beats_prefix_match() {
        let mut cmd = get_mailbox();
        cmd.parameters.push(p("Arch", false, None, &[]));
        let b = bind(&cmd, &[a(Some("Arch"), s("x"))]).unwrap();
        assert_eq!(val(&b, "Arch"), s("x"));
    }

    #[test]
    fn ambiguous_prefix_lists_candidates() {
        let err = bind(&set_mailbox(), &[a(Some("-CustomAttr:"), s("x"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Parameter cannot be processed because the parameter name 'CustomAttr' is ambiguous. Possible \
             matches include: -CustomAttribute1 -CustomAttribute2."
        );
        let rec = err.to_error_record();
        assert_eq!(
            rec.fully_qualified_error_id,
            "AmbiguousParameter,Set-Mailbox"
        );
        assert_eq!(rec.category, ErrorCategory::InvalidArgument);
        assert_eq!(
            rec.exception_type,
            "System.Management.Automation.ParameterBindingException"
        );
    }

    #[test]
    fn unknown_parameter_has_powershell_text() {
        let err = bind(&get_mailbox(), &[a(Some("-Nonsense:"), s("x"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "A parameter cannot be found that matches parameter name 'Nonsense'."
        );
        assert_eq!(
            err.to_error_record().fully_qualified_error_id,
            "NamedParameterNotFound,Get-Mailbox"
        );
    }

    #[test]
    fn missing_argument_at_end_or_before_another_name() {
        let err = bind(&get_mailbox(), &[a(Some("-ResultSize"), Value::Nil)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Missing an argument for parameter 'ResultSize'. Specify a parameter of type 'System.String' and try again."
        );
        let err = bind(
            &get_mailbox(),
            &[
                a(Some("-ResultSize"), Value::Nil),
                a(Some("-Archive"), Value::Nil),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, BindingError::MissingArgument { .. }));
    }

    #[test]
    fn plain_name_with_nil_is_explicit_null() {
        let mut cmd = set_mailbox();
        cmd.parameters
            .push(p("ForwardingSmtpAddress", false, None, &[]));
        let b = bind(
            &cmd,
            &[
                a(Some("Identity"), s("x")),
                a(Some("ForwardingSmtpAddress"), Value::Nil),
            ],
        )
        .unwrap();
        assert_eq!(val(&b, "ForwardingSmtpAddress"), Value::Nil);
    }

    #[test]
    fn repeated_parameter_is_refused() {
        let err = bind(
            &get_mailbox(),
            &[a(Some("Identity"), s("a")), a(Some("-identity:"), s("b"))],
        )
        .unwrap_err();
        assert_eq!(err.error_id(), "ParameterAlreadyBound");
        assert!(
            err.to_string()
                .contains("parameter 'Identity' is specified more than once")
        );
    }

    #[test]
    fn error_action_as_string_enum_object_or_number() {
        let b = bind(&get_mailbox(), &[a(Some("ErrorAction"), s("stop"))]).unwrap();
        assert_eq!(b.common.error_action, Some(ActionPreference::Stop));
        let b = bind(
            &get_mailbox(),
            &[a(Some("-ErrorAction:"), enum_obj("SilentlyContinue", 0))],
        )
        .unwrap();
        assert_eq!(
            b.common.error_action,
            Some(ActionPreference::SilentlyContinue)
        );
        let b = bind(
            &get_mailbox(),
            &[a(Some("-ea"), Value::Nil), a(None, Value::I32(4))],
        )
        .unwrap();
        assert_eq!(b.common.error_action, Some(ActionPreference::Ignore));
        let b = bind(
            &get_mailbox(),
            &[a(Some("WarningAction"), s("SilentlyContinue"))],
        )
        .unwrap();
        assert_eq!(
            b.common.warning_action,
            Some(ActionPreference::SilentlyContinue)
        );
        let err = bind(&get_mailbox(), &[a(Some("ErrorAction"), s("Sometimes"))]).unwrap_err();
        assert!(err.to_string().starts_with(
            "Cannot bind parameter 'ErrorAction'. Cannot convert value \"Sometimes\" to type \
             \"System.Management.Automation.ActionPreference\"."
        ));
    }

    #[test]
    fn client_side_common_parameters_are_kept_aside() {
        let b = bind(
            &get_mailbox(),
            &[
                a(Some("-OutVariable:"), s("x")),
                a(Some("-Verbose"), Value::Nil),
                a(Some("Identity"), s("y")),
            ],
        )
        .unwrap();
        assert_eq!(b.common.verbose, Some(true));
        assert_eq!(
            b.common.client_side,
            vec![("OutVariable".to_string(), s("x"))]
        );
        assert_eq!(b.parameters.len(), 1);
    }

    #[test]
    fn common_parameter_metadata_lists_should_process_only_when_supported() {
        let without: Vec<String> = common_parameters(false)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(without.contains(&"ErrorAction".to_string()));
        assert!(!without.contains(&"WhatIf".to_string()));
        let with = common_parameters(true);
        assert!(with.iter().any(|p| p.name == "Confirm" && p.is_switch));
    }
}
