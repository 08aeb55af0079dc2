//! GET_COMMAND_METADATA in, the command objects Import-PSSession builds proxies from out (§7.4).

use super::{RecordError, body, wrong};
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{CommandMetadata, MetadataQuery, ParameterMetadata};

/// `CommandTypes` flag names, for flags sent as an enum's ToString only.
pub(crate) const COMMAND_TYPES: [(&str, u32); 10] = [
    ("Alias", 1),
    ("Function", 2),
    ("Filter", 4),
    ("Cmdlet", 8),
    ("ExternalScript", 16),
    ("Application", 32),
    ("Script", 64),
    ("Workflow", 128),
    ("Configuration", 256),
    ("All", 511),
];

/// Reads GET_COMMAND_METADATA: `Name` (string or string list; default `*`), `CommandType`
/// (I32 or enum Obj; flags kept as sent, Workflow included; default All), `Namespace`.
///
/// # Errors
/// [`RecordError`] when the body is not an object.
pub fn parse_metadata_query(value: &Value) -> Result<MetadataQuery, RecordError> {
    const M: &str = "GET_COMMAND_METADATA";
    let obj = body(M, value)?;
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::Nil => None,
            other => match other.as_list() {
                Some(items) => Some(
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect(),
                ),
                None => other.as_str().map(|s| vec![s.to_owned()]),
            },
        }
    };
    let names = obj
        .property("Name")
        .and_then(strings)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| vec!["*".to_owned()]);
    let command_types = match obj.property("CommandType") {
        None | Some(Value::Nil) => 511,
        Some(v) => match v.as_i64() {
            Some(n) => u32::try_from(n).unwrap_or(511),
            None => {
                let text = v
                    .as_object()
                    .and_then(|o| o.to_string.as_deref())
                    .or_else(|| v.as_str())
                    .ok_or_else(|| wrong(M, "CommandType", "an I32 or CommandTypes enum", v))?;
                text.split(',')
                    .filter_map(|n| {
                        COMMAND_TYPES
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(n.trim()))
                    })
                    .fold(0, |acc, (_, bit)| acc | bit)
            }
        },
    };
    let namespace = obj
        .property("Namespace")
        .and_then(strings)
        .filter(|n| !n.is_empty());
    Ok(MetadataQuery {
        names,
        command_types,
        namespace,
    })
}

/// The first GET_COMMAND_METADATA output: how many command objects follow.
pub fn command_metadata_count(count: usize) -> Value {
    Object::new([
        "Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo",
        "System.Management.Automation.PSCustomObject",
        "System.Object",
    ])
    .with_property(
        "Count",
        Value::I32(i32::try_from(count).unwrap_or(i32::MAX)),
    )
    .into_value()
}

/// The common parameters every cmdlet has, with their type and alias; Import-PSSession only
/// writes `[CmdletBinding()]` proxies when all of them are listed (§7.4).
const COMMON_PARAMETERS: [(&str, &str, &str); 11] = [
    (
        "Verbose",
        "System.Management.Automation.SwitchParameter",
        "vb",
    ),
    (
        "Debug",
        "System.Management.Automation.SwitchParameter",
        "db",
    ),
    (
        "ErrorAction",
        "System.Management.Automation.ActionPreference",
        "ea",
    ),
    (
        "WarningAction",
        "System.Management.Automation.ActionPreference",
        "wa",
    ),
    (
        "InformationAction",
        "System.Management.Automation.ActionPreference",
        "infa",
    ),
    ("ErrorVariable", "System.String", "ev"),
    ("WarningVariable", "System.String", "wv"),
    ("InformationVariable", "System.String", "iv"),
    ("OutVariable", "System.String", "ov"),
    ("OutBuffer", "System.Int32", "ob"),
    ("PipelineVariable", "System.String", "pv"),
];

/// WhatIf/Confirm, for SupportsShouldProcess cmdlets.
const SHOULD_PROCESS_PARAMETERS: [(&str, &str, &str); 2] = [
    (
        "WhatIf",
        "System.Management.Automation.SwitchParameter",
        "wi",
    ),
    (
        "Confirm",
        "System.Management.Automation.SwitchParameter",
        "cf",
    ),
];

const SWITCH_TYPE: &str = "System.Management.Automation.SwitchParameter";

/// The `CommandTypes` name of one flag (`Cmdlet` for anything else).
pub(crate) fn command_type_name(command_type: u32) -> &'static str {
    COMMAND_TYPES
        .iter()
        .find(|(_, bit)| *bit == command_type)
        .map_or("Cmdlet", |(name, _)| name)
}

fn parameter_value(name: &str, parameter_type: &str, aliases: &[String], is_switch: bool) -> Value {
    let aliases = Value::list(
        [
            "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]",
            "System.Object",
        ],
        aliases.iter().map(Value::from),
    );
    Object::new([
        "System.Management.Automation.ParameterMetadata",
        "System.Object",
    ])
    .with_to_string("System.Management.Automation.ParameterMetadata")
    .with_adapted("Name", name)
    .with_adapted("ParameterType", parameter_type)
    .with_adapted("Aliases", aliases)
    .with_adapted("IsDynamic", false)
    .with_adapted("SwitchParameter", is_switch)
    .into_value()
}

/// One GET_COMMAND_METADATA command object (`Selected.…CmdletInfo`/`AliasInfo`/
/// `FunctionInfo`), with the common parameters added after the command's own (and WhatIf/
/// Confirm when it supports ShouldProcess), skipping any the command already declares.
pub fn command_metadata(command: &CommandMetadata) -> Value {
    let info = match command.command_type {
        1 => "Selected.System.Management.Automation.AliasInfo",
        2 | 4 => "Selected.System.Management.Automation.FunctionInfo",
        _ => "Selected.System.Management.Automation.CmdletInfo",
    };
    let mut entries: Vec<(Value, Value)> = command
        .parameters
        .iter()
        .map(|p: &ParameterMetadata| {
            let ty = if p.is_switch && p.parameter_type.is_empty() {
                SWITCH_TYPE
            } else if p.parameter_type.is_empty() {
                "System.Object"
            } else {
                &p.parameter_type
            };
            (
                Value::from(p.name.as_str()),
                parameter_value(&p.name, ty, &p.aliases, p.is_switch),
            )
        })
        .collect();
    let extra = COMMON_PARAMETERS.iter().chain(
        command
            .supports_should_process
            .then_some(SHOULD_PROCESS_PARAMETERS.iter())
            .into_iter()
            .flatten(),
    );
    for (name, ty, alias) in extra {
        let declared = command
            .parameters
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(name));
        if !declared {
            entries.push((
                Value::from(*name),
                parameter_value(name, ty, &[(*alias).to_owned()], *ty == SWITCH_TYPE),
            ));
        }
    }
    let parameters = Object::new([
        "System.Collections.Generic.Dictionary`2[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089],[System.Management.Automation.ParameterMetadata, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
        "System.Object",
    ])
    .with_container(Container::Dictionary(entries));
    let output_type = Value::list(
        [
            "System.Collections.ObjectModel.ReadOnlyCollection`1[[System.Management.Automation.PSTypeName, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
            "System.Object",
        ],
        Vec::<Value>::new(),
    );
    Object::new([
        info,
        "System.Management.Automation.PSCustomObject",
        "System.Object",
    ])
    .with_property("Name", command.name.as_str())
    .with_property("Namespace", command.namespace.as_str())
    .with_property("HelpUri", Value::Nil)
    .with_property(
        "CommandType",
        Value::enum_of(
            "System.Management.Automation.CommandTypes",
            command_type_name(command.command_type),
            i32::try_from(command.command_type).unwrap_or(8),
        ),
    )
    .with_property(
        "ResolvedCommandName",
        command.resolved_command_name.as_deref().map(Value::from),
    )
    .with_property("OutputType", output_type)
    .with_property("Parameters", parameters)
    .into_value()
}
