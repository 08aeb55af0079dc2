//! `Get-Command`: the runspace's commands as `CmdletInfo` objects.
//!
//! The command list is the runspace's, not this module's: the driver asks the stage what it
//! needs ([`GetCommand::query`]) and hands over the answer (the executor's command metadata,
//! or the bridge's catalog) before input starts; the local commands themselves are added,
//! as a restricted runspace lists them too. Filtering follows PowerShell: `-Name` wildcards
//! (a literal name that matches nothing is `CommandNotFoundException`), `-Verb`, `-Noun`,
//! `-Module`, `-CommandType`, `-TotalCount`; output sorted by name.
//!
//! A `CmdletInfo` is written as Windows PowerShell serializes one at depth 1: its scalar
//! properties, `CommandType` as the enum, and `Parameters` as a dictionary whose keys are the
//! parameter names (the values' own properties are beyond the serialization depth, as they
//! were from RPS).

use super::{Arguments, class_name, listed};
use crate::remoting::binding::display_value;
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{CommandMetadata, ErrorRecord, MetadataQuery, Output};
use crate::remoting::records::{COMMAND_TYPES, command_type_name};
use crate::remoting::wildcard::{WildcardPattern, compile_all};

const COMMAND: &str = "Get-Command";

/// A bound `Get-Command`.
#[derive(Debug)]
pub(super) struct GetCommand {
    names: Vec<WildcardPattern>,
    verbs: Vec<WildcardPattern>,
    nouns: Vec<WildcardPattern>,
    modules: Vec<WildcardPattern>,
    command_types: u32,
    total_count: Option<usize>,
    commands: Vec<CommandMetadata>,
}

fn patterns(args: &Arguments<'_>, name: &str) -> Result<Vec<WildcardPattern>, ErrorRecord> {
    compile_all(&args.strings(name).unwrap_or_default()).map_err(|e| e.to_error_record())
}

impl GetCommand {
    pub(super) fn new(args: &Arguments<'_>) -> Result<Self, ErrorRecord> {
        let command_types = match args.value("CommandType") {
            None => 511,
            Some(v) => command_types(v).ok_or_else(|| {
                args.invalid(
                    "CommandType",
                    format!(
                        "\"{}\" is not a command type; use one or more of {}.",
                        display_value(v),
                        COMMAND_TYPES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        };
        Ok(Self {
            names: patterns(args, "Name")?,
            verbs: patterns(args, "Verb")?,
            nouns: patterns(args, "Noun")?,
            modules: patterns(args, "Module")?,
            command_types,
            total_count: args.count("TotalCount")?,
            commands: Vec::new(),
        })
    }

    /// What to ask the runspace for.
    pub(super) fn query(&self) -> MetadataQuery {
        MetadataQuery {
            names: if self.names.is_empty() {
                vec!["*".into()]
            } else {
                self.names.iter().map(|p| p.as_str().to_owned()).collect()
            },
            command_types: self.command_types,
            namespace: None,
        }
    }

    /// The runspace's answer to [`GetCommand::query`].
    pub(super) fn supply(&mut self, commands: Vec<CommandMetadata>) {
        self.commands = commands;
    }

    fn selects(&self, c: &CommandMetadata) -> bool {
        let any = |patterns: &[WildcardPattern], text: &str| {
            patterns.is_empty() || patterns.iter().any(|p| p.is_match(text))
        };
        let (verb, noun) = c.name.split_once('-').unwrap_or(("", &c.name));
        c.command_type & self.command_types != 0
            && any(&self.names, &c.name)
            && any(&self.verbs, verb)
            && any(&self.nouns, noun)
            && any(&self.modules, &c.namespace)
    }

    pub(super) fn finish(&mut self) -> Vec<Output> {
        let mut found: Vec<&CommandMetadata> = Vec::new();
        let locals: Vec<&CommandMetadata> = listed().collect();
        for c in self.commands.iter().chain(locals) {
            if self.selects(c) && !found.iter().any(|f| f.name.eq_ignore_ascii_case(&c.name)) {
                found.push(c);
            }
        }
        found.sort_by_key(|c| c.name.to_lowercase());
        let mut out: Vec<Output> = self
            .names
            .iter()
            .filter(|p| p.is_literal() && !found.iter().any(|c| p.is_match(&c.name)))
            .map(|p| Output::Error(not_found(p.as_str())))
            .collect();
        out.extend(
            found
                .into_iter()
                .take(self.total_count.unwrap_or(usize::MAX))
                .map(|c| Output::Object(cmdlet_info(c))),
        );
        out
    }
}

/// `-CommandType` as flags: names (`Cmdlet`, `Alias, Function`), a list of them, or a number.
fn command_types(value: &Value) -> Option<u32> {
    let mut flags = 0;
    for v in value.elements() {
        if let Some(n) = v.as_i64() {
            flags |= u32::try_from(n).ok()?;
            continue;
        }
        for name in display_value(v).split(',') {
            let (_, f) = COMMAND_TYPES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))?;
            flags |= f;
        }
    }
    Some(flags)
}

fn not_found(name: &str) -> ErrorRecord {
    let mut rec = ErrorRecord::command_not_found(name);
    rec.fully_qualified_error_id = format!("CommandNotFoundException,{}", class_name(COMMAND));
    rec.activity = COMMAND.into();
    rec
}

/// A `System.Management.Automation.CmdletInfo` as Windows PowerShell serializes it.
fn cmdlet_info(c: &CommandMetadata) -> Value {
    let (verb, noun) = c.name.split_once('-').unwrap_or(("", &c.name));
    let parameters = Object {
        type_names: vec![
            "System.Collections.Generic.Dictionary`2[[System.String],[System.Management.Automation.ParameterMetadata]]".into(),
            "System.Object".into(),
        ],
        container: Some(Container::Dictionary(
            c.parameters
                .iter()
                .map(|p| {
                    (
                        Value::from(p.name.as_str()),
                        Value::from("System.Management.Automation.ParameterMetadata"),
                    )
                })
                .collect(),
        )),
        ..Object::default()
    };
    let mut o = Object::new([
        "System.Management.Automation.CmdletInfo",
        "System.Management.Automation.CommandInfo",
        "System.Object",
    ])
    .with_to_string(c.name.clone());
    for (name, value) in [
        ("Verb", Value::from(verb)),
        ("Noun", Value::from(noun)),
        ("Name", Value::from(c.name.as_str())),
        (
            "CommandType",
            Value::enum_of(
                "System.Management.Automation.CommandTypes",
                command_type_name(c.command_type),
                i32::try_from(c.command_type).unwrap_or(8),
            ),
        ),
        ("Source", Value::from(c.namespace.as_str())),
        ("ModuleName", Value::from(c.namespace.as_str())),
        ("Visibility", Value::from("Public")),
        ("RemotingCapability", Value::from("PowerShell")),
        ("Parameters", parameters.into_value()),
    ] {
        o.push_adapted(name, value);
    }
    o.into_value()
}
