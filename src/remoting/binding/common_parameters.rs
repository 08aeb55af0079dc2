//! The common parameters PowerShell adds to every cmdlet: their table, their metadata and
//! where a bound one lands in [`CommonParameters`].
//!
//! Separate from the binder because this is PowerShell's fixed list, not binding logic: the
//! binder only looks names up in it and hands the bound value back here.

use super::{ActionPreference, BindingError, BoundValue, display_value};
use crate::remoting::clixml::Value;
use crate::remoting::executor::{CommandMetadata, ParameterMetadata};

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

/// A common parameter: canonical name, aliases, switch or not.
pub(super) struct Common {
    pub(super) name: &'static str,
    pub(super) aliases: &'static [&'static str],
    pub(super) is_switch: bool,
    pub(super) should_process_only: bool,
}

pub(super) const COMMON: &[Common] = &[
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

pub(super) fn set_common(
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
