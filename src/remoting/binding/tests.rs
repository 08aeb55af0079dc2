//! Unit tests for the binder: every token form a client sends, and PowerShell's error texts.

use super::*;
use crate::remoting::clixml::Object;
use crate::remoting::executor::ErrorCategory;

fn p(name: &str, is_switch: bool, position: Option<u32>, aliases: &[&str]) -> ParameterMetadata {
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
