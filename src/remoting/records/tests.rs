//! The composed payloads of reference psrp-protocol.md §11 (they decode in pypsrp and
//! psrpcore) as end-to-end vectors: base64 → fragments → messages → CLIXML → records, and
//! the builders must reproduce the server-side ones byte for byte.

use base64::Engine as _;
use uuid::Uuid;

use super::*;
use crate::remoting::clixml::{from_xml, to_xml};
use crate::remoting::executor::{
    Argument, Command, CommandMetadata, ErrorCategory, ErrorRecord, MetadataQuery,
    ParameterMetadata, Pipeline, PipelineEnd, Statement,
};
use crate::remoting::fragment::{Defragmenter, fragment};
use crate::remoting::message::{Destination, Message, MessageType};

const POOL_OPEN: &str = include_str!("../testdata/11_3_pool_open.b64");
const CREATION_XML: &str = include_str!("../testdata/11_1_creation_xml.b64");
const CREATE_PIPELINE: &str = include_str!("../testdata/11_4_create_pipeline.b64");
const OUTPUT_AND_STATE: &str = include_str!("../testdata/11_5_output_and_state.b64");
const FAILED: &str = include_str!("../testdata/11_6_failed.b64");

fn rpid() -> Uuid {
    "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B".parse().unwrap()
}

fn pid() -> Uuid {
    "6A1C9E3B-2F47-4D85-9B0E-7C4D2A1F8E63".parse().unwrap()
}

/// Each line is one base64 blob (one WS-Man Stream/Arguments/creationXml).
fn messages(vector: &str) -> Vec<Message> {
    let mut defrag = Defragmenter::default();
    vector
        .split_whitespace()
        .flat_map(|line| {
            let blob = base64::engine::general_purpose::STANDARD
                .decode(line)
                .unwrap();
            defrag.push(&blob).unwrap()
        })
        .map(|m| Message::decode(&m).unwrap())
        .collect()
}

/// Decode → encode → decode gives the same value, and the encoder's text equals `xml`
/// when the vector was written in the encoder's own canonical form.
fn round_trips(xml: &str) -> Value {
    let value = from_xml(xml).unwrap();
    let again = from_xml(&to_xml(&value)).unwrap();
    assert_eq!(again, value);
    value
}

/// Encodes `body` like the server would send it and compares the whole blob (fragment
/// header, message header, BOM, CLIXML) with the vector's.
fn assert_wire(vector_line: &str, object_id: u64, msg: &Message) {
    let expected = base64::engine::general_purpose::STANDARD
        .decode(vector_line.trim())
        .unwrap();
    let ours = fragment(object_id, &msg.encode(), 32 * 1024).concat();
    if ours != expected {
        let show = |b: &[u8]| String::from_utf8_lossy(&b[b.len().min(64)..]).into_owned();
        panic!(
            "wire mismatch\nours:     {}\nexpected: {}",
            show(&ours),
            show(&expected)
        );
    }
}

#[test]
fn pool_open_vector_11_3_is_what_the_builders_send() {
    let lines: Vec<&str> = POOL_OPEN.split_whitespace().collect();
    let msgs = messages(POOL_OPEN);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].message_type, MessageType::SessionCapability);
    assert_eq!(msgs[0].rpid, Uuid::nil());
    assert_eq!(msgs[1].message_type, MessageType::ApplicationPrivateData);
    assert_eq!(msgs[1].rpid, rpid());
    assert_eq!(msgs[2].message_type, MessageType::RunspacePoolState);
    for m in &msgs {
        assert_eq!(m.destination, Destination::Client);
        round_trips(m.xml().unwrap());
    }

    let cap = SessionCapability::server().to_value();
    assert_eq!(msgs[0].body().unwrap(), cap);
    let send = |t, rpid, body: &Value| Message::to_client(t, rpid, Uuid::nil(), body);
    assert_wire(
        lines[0],
        1,
        &send(MessageType::SessionCapability, Uuid::nil(), &cap),
    );
    let apd = application_private_data("exo-authproxy-1");
    assert_wire(
        lines[1],
        2,
        &send(MessageType::ApplicationPrivateData, rpid(), &apd),
    );
    let opened = runspace_pool_state(RunspacePoolState::Opened, None);
    assert_wire(
        lines[2],
        3,
        &send(MessageType::RunspacePoolState, rpid(), &opened),
    );

    // What Windows PowerShell reads from the APD (§4.3).
    let data = apd
        .property("ApplicationPrivateData")
        .unwrap()
        .as_object()
        .unwrap();
    assert!(data.is_type("System.Management.Automation.PSPrimitiveDictionary"));
    let table = data.entry("PSVersionTable").unwrap().as_object().unwrap();
    assert_eq!(
        table.entry("psversion").unwrap().as_str(),
        Some(POWERSHELL_VERSION)
    );
    let hash = data.entry("ImplicitRemoting").unwrap().as_object().unwrap();
    assert_eq!(
        hash.entry("Hash").unwrap().as_str(),
        Some("exo-authproxy-1")
    );
}

#[test]
fn creation_xml_vector_11_1_parses_into_capability_and_init() {
    let msgs = messages(CREATION_XML);
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs.iter()
            .all(|m| m.destination == Destination::Server && m.rpid == rpid())
    );
    assert_eq!(msgs[0].message_type, MessageType::SessionCapability);
    let cap = SessionCapability::parse(&msgs[0].body().unwrap()).unwrap();
    assert_eq!(cap, SessionCapability::server());
    assert!(cap.protocol_at_least("2.3"));
    assert!(!cap.protocol_at_least("2.4"));
    assert_eq!(msgs[1].message_type, MessageType::InitRunspacePool);
    let init = InitRunspacePool::parse(&round_trips(msgs[1].xml().unwrap())).unwrap();
    assert_eq!(
        init,
        InitRunspacePool {
            min_runspaces: 1,
            max_runspaces: 1
        }
    );
}

#[test]
fn create_pipeline_vector_11_4_is_one_named_argument() {
    let msgs = messages(CREATE_PIPELINE);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].message_type, MessageType::CreatePipeline);
    assert_eq!((msgs[0].rpid, msgs[0].pid), (rpid(), pid()));
    let pipeline = parse_create_pipeline(&round_trips(msgs[0].xml().unwrap())).unwrap();
    assert_eq!(
        pipeline,
        Pipeline {
            statements: vec![Statement {
                commands: vec![Command {
                    name: "Get-Mailbox".into(),
                    is_script: false,
                    args: vec![Argument {
                        name: Some("-Identity:".into()),
                        value: Value::from("AdeleV"),
                    }],
                    merge_errors_into_output: false,
                }],
            }],
            no_input: true,
            origin: Default::default(),
        }
    );
}

#[test]
fn output_vector_11_5_round_trips_and_reads_like_a_mailbox() {
    let lines: Vec<&str> = OUTPUT_AND_STATE.split_whitespace().collect();
    let msgs = messages(OUTPUT_AND_STATE);
    assert_eq!(msgs[0].message_type, MessageType::PipelineOutput);
    let mbx = round_trips(msgs[0].xml().unwrap());
    let obj = mbx.as_object().unwrap();
    assert_eq!(
        obj.deserialized_type_names()[0],
        "Deserialized.Microsoft.Exchange.Data.Directory.Management.Mailbox"
    );
    assert_eq!(obj.to_string.as_deref(), Some("AdeleV"));
    assert_eq!(
        obj.property("notes").unwrap().as_str(),
        Some("R&D _xmas list \u{7}")
    );
    let addresses = obj.property("EmailAddresses").unwrap().as_list().unwrap();
    assert_eq!(
        addresses[1].as_str(),
        Some("smtp:AdeleV@contoso.onmicrosoft.com")
    );
    let languages = obj.property("Languages").unwrap().as_object().unwrap();
    assert_eq!(
        languages.type_names,
        ["System.Collections.ArrayList", "System.Object"]
    );
    let changed = obj
        .property("WhenChangedUTC")
        .unwrap()
        .as_datetime()
        .unwrap();
    assert_eq!(changed.timestamp_subsec_nanos(), 123_456_700);
    assert_eq!(
        obj.property("Guid").unwrap().as_guid().unwrap().to_string(),
        "8c2f1a5e-6b1d-4f0e-9a77-2d3c4b5a6f70"
    );
    assert!(obj.property("LitigationHoldDate").unwrap().is_nil());

    // Built with the Exchange helper, the same object encodes to the same value.
    let mut built = Object::exchange(obj.type_names[..5].iter().cloned(), "AdeleV");
    built.adapted = obj.adapted.clone();
    assert_eq!(from_xml(&to_xml(&built.clone().into_value())).unwrap(), mbx);

    assert_eq!(msgs[1].message_type, MessageType::PipelineState);
    let done = pipeline_end(&PipelineEnd::Completed);
    assert_eq!(msgs[1].body().unwrap(), done);
    assert_wire(
        lines[1],
        5,
        &Message::to_client(MessageType::PipelineState, rpid(), pid(), &done),
    );
}

fn not_found() -> ErrorRecord {
    ErrorRecord {
        activity: "Get-Mailbox".into(),
        category: ErrorCategory::NotSpecified,
        ..ErrorRecord::new(
            "The operation couldn't be performed because object 'nosuchuser' couldn't be found \
             on 'AM0PR01MB0001.eurprd01.prod.outlook.com'.",
            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            "[Server=AM0PR01MB0001,RequestId=3f6c2b1a-9d8e-4f70-a1b2-c3d4e5f60718,TimeStamp=5/22/2024 \
             10:15:42 AM] [FailureCategory=Cmdlet-ManagementObjectNotFoundException] \
             9F7D1B5C,Microsoft.Exchange.Management.RecipientTasks.GetMailbox",
            ErrorCategory::NotSpecified,
        )
    }
}

#[test]
fn failed_vector_11_6_is_what_pipeline_end_sends() {
    let msgs = messages(FAILED);
    assert_eq!(msgs.len(), 1);
    let state = round_trips(msgs[0].xml().unwrap());
    let record = not_found();
    assert_eq!(
        record.category_message(),
        "NotSpecified: (:) [Get-Mailbox], ManagementObjectNotFoundException"
    );
    let ours = pipeline_end(&PipelineEnd::Failed(record));
    assert_eq!(ours, state);
    assert_wire(
        FAILED,
        5,
        &Message::to_client(MessageType::PipelineState, rpid(), pid(), &ours),
    );
}

#[test]
fn error_record_message_11_7_has_every_mandatory_member() {
    let body = error_record(&not_found());
    let obj = body.as_object().unwrap();
    assert_eq!(
        obj.type_names[0],
        "System.Management.Automation.ErrorRecord"
    );
    for member in [
        "Exception",
        "TargetObject",
        "FullyQualifiedErrorId",
        "ErrorCategory_Category",
        "ErrorCategory_Activity",
        "ErrorCategory_Reason",
        "ErrorCategory_TargetName",
        "ErrorCategory_TargetType",
        "ErrorCategory_Message",
        "SerializeExtendedInfo",
    ] {
        assert!(obj.extended_property(member).is_some(), "{member}");
    }
    assert_eq!(obj.property("writeErrorStream"), Some(&Value::Bool(true)));
    assert_eq!(
        obj.property("SerializeExtendedInfo"),
        Some(&Value::Bool(false))
    );
    let exception = obj.property("Exception").unwrap().as_object().unwrap();
    assert!(
        exception
            .adapted_property("Message")
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("The operation")
    );
    // The nested form has no writeErrorStream.
    assert!(
        error_record_object(&not_found())
            .property("writeErrorStream")
            .is_none()
    );
}

#[test]
fn stopped_and_script_refusal_records_match_the_reference() {
    let stopped = pipeline_stopped();
    assert_eq!(stopped.property("PipelineState"), Some(&Value::I32(3)));
    let rec = stopped.property("ExceptionAsErrorRecord").unwrap();
    assert_eq!(
        rec.property("FullyQualifiedErrorId").unwrap().as_str(),
        Some("PipelineStopped")
    );
    assert_eq!(
        rec.property("ErrorCategory_Category"),
        Some(&Value::I32(14))
    );
    assert_eq!(
        rec.property("ErrorCategory_Message").unwrap().as_str(),
        Some("OperationStopped: (:) [], PipelineStoppedException")
    );
    let exc = rec.property("Exception").unwrap().as_object().unwrap();
    assert_eq!(
        exc.type_names,
        [
            "System.Management.Automation.PipelineStoppedException",
            "System.Management.Automation.RuntimeException",
            "System.SystemException",
            "System.Exception",
            "System.Object"
        ]
    );
    assert_eq!(exc.property("HResult"), Some(&Value::I32(-2_146_233_087)));

    let refused = error_record_object(&ErrorRecord::scripts_not_allowed("Get-Mailbox | ? {$_}"));
    assert_eq!(
        refused.property("ErrorCategory_Message").unwrap().as_str(),
        Some("ParserError: (Get-Mailbox | ? {$_}:String) [], ParseException")
    );
    assert_eq!(
        refused.property("TargetObject").unwrap().as_str(),
        Some("Get-Mailbox | ? {$_}")
    );
    assert_eq!(
        refused.property("ErrorCategory_Category"),
        Some(&Value::I32(17))
    );
    let broken = runspace_pool_state(
        RunspacePoolState::Broken,
        Some(&ErrorRecord::secure_strings_unsupported()),
    );
    assert_eq!(broken.property("RunspaceState"), Some(&Value::I32(5)));
    let rec = broken.property("ExceptionAsErrorRecord").unwrap();
    assert_eq!(
        rec.property("FullyQualifiedErrorId").unwrap().as_str(),
        Some("SecureStringNotSupported")
    );
    let nf = ErrorRecord::command_not_found("Get-Foo");
    assert_eq!(
        nf.category_message(),
        "ObjectNotFound: (Get-Foo:String) [], CommandNotFoundException"
    );
}

#[test]
fn informational_records_carry_both_required_members() {
    for (kind, first) in [
        (
            InformationalKind::Warning,
            "System.Management.Automation.WarningRecord",
        ),
        (
            InformationalKind::Verbose,
            "System.Management.Automation.VerboseRecord",
        ),
        (
            InformationalKind::Debug,
            "System.Management.Automation.DebugRecord",
        ),
    ] {
        let v = informational_record(kind, "careful");
        assert_eq!(
            to_xml(&v),
            format!(
                "<Obj RefId=\"0\"><TN RefId=\"0\"><T>{first}</T><T>System.Management.Automation.\
                 InformationalRecord</T><T>System.Object</T></TN><ToString>careful</ToString><MS>\
                 <S N=\"InformationalRecord_Message\">careful</S><B N=\"InformationalRecord_\
                 SerializeInvocationInfo\">false</B></MS></Obj>"
            )
        );
    }
    let when = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05+00:00").unwrap();
    let info = information_record("hello", when);
    assert_eq!(
        info.property("MessageData").unwrap().as_str(),
        Some("hello")
    );
    assert_eq!(
        info.property("TimeGenerated").unwrap().as_datetime(),
        Some(when)
    );
    assert!(info.property("Tags").unwrap().as_list().unwrap().is_empty());
}

#[test]
fn runspace_requests_and_availability() {
    let req = from_xml(
        r#"<Obj RefId="0"><MS><I32 N="MaxRunspaces">5</I32><I64 N="ci">1</I64></MS></Obj>"#,
    )
    .unwrap();
    assert_eq!(
        RunspaceRequest::parse(&req).unwrap(),
        RunspaceRequest {
            call_id: 1,
            count: Some(5)
        }
    );
    let req = from_xml(r#"<Obj RefId="0"><MS><I64 N="ci">7</I64></MS></Obj>"#).unwrap();
    assert_eq!(RunspaceRequest::parse(&req).unwrap().count, None);
    let bad = from_xml(r#"<Obj RefId="0"><MS><I32 N="MaxRunspaces">5</I32></MS></Obj>"#).unwrap();
    assert_eq!(
        RunspaceRequest::parse(&bad),
        Err(RecordError::Missing {
            message: "runspace request",
            member: "ci"
        })
    );
    assert_eq!(
        to_xml(&runspace_availability(1, true)),
        r#"<Obj RefId="0"><MS><B N="SetMinMaxRunspacesResponse">true</B><I64 N="ci">1</I64></MS></Obj>"#
    );
    assert_eq!(
        to_xml(&runspace_availability_count(2, 1)),
        r#"<Obj RefId="0"><MS><I64 N="SetMinMaxRunspacesResponse">1</I64><I64 N="ci">2</I64></MS></Obj>"#
    );
}

const LIST_PSOBJECT: &str = "System.Collections.Generic.List`1[[System.Management.Automation.PSObject, System.Management.Automation, Version=1.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]";

fn command_obj(
    cmd: &str,
    is_script: bool,
    args: Vec<(Option<&str>, Value)>,
    merge: Option<(i32, i32)>,
) -> Value {
    let args = Value::list(
        [LIST_PSOBJECT, "System.Object"],
        args.into_iter().map(|(n, v)| {
            Object::default()
                .with_property("N", n.map(Value::from))
                .with_property("V", v)
                .into_value()
        }),
    );
    let merge_enum = |v: i32| {
        Value::enum_of(
            "System.Management.Automation.Runspaces.PipelineResultTypes",
            "x",
            v,
        )
    };
    let (my, to) = merge.unwrap_or((0, 0));
    Object::default()
        .with_property("Cmd", cmd)
        .with_property("IsScript", is_script)
        .with_property("UseLocalScope", Value::Nil)
        .with_property("MergeMyResult", merge_enum(my))
        .with_property("MergeToResult", merge_enum(to))
        .with_property("Args", args)
        .into_value()
}

fn pipeline_body(statements: Vec<Vec<Value>>, extra_includes_first: bool, no_input: bool) -> Value {
    let list = |cmds: Vec<Value>| Value::list([LIST_PSOBJECT, "System.Object"], cmds);
    let mut ps = Object::default()
        .with_property("IsNested", false)
        .with_property("Cmds", list(statements[0].clone()));
    if statements.len() > 1 {
        let skip = usize::from(!extra_includes_first);
        let extra = statements[skip..].iter().map(|s| {
            Object::default()
                .with_property("Cmds", list(s.clone()))
                .into_value()
        });
        ps.push_property(
            "ExtraCmds",
            Value::list([LIST_PSOBJECT, "System.Object"], extra),
        );
    } else {
        ps.push_property("ExtraCmds", Value::Nil);
    }
    Object::default()
        .with_property("NoInput", no_input)
        .with_property("PowerShell", ps)
        .into_value()
}

#[test]
fn create_pipeline_statements_pipes_positional_and_merge() {
    let get = command_obj(
        "Get-Mailbox",
        false,
        vec![(Some("-ResultSize"), Value::Nil), (None, Value::I32(10))],
        None,
    );
    let set = command_obj(
        "Set-Mailbox",
        false,
        vec![(Some("HiddenFromAddressListsEnabled"), Value::Bool(true))],
        Some((2, 1)),
    );
    let other = command_obj("Get-User", false, vec![], None);
    for extra_includes_first in [true, false] {
        let body = pipeline_body(
            vec![vec![get.clone(), set.clone()], vec![other.clone()]],
            extra_includes_first,
            false,
        );
        // Through the codec, as the session layer will see it.
        let body = from_xml(&to_xml(&body)).unwrap();
        let p = parse_create_pipeline(&body).unwrap();
        assert!(!p.no_input);
        assert_eq!(
            p.statements.len(),
            2,
            "extra_includes_first={extra_includes_first}"
        );
        let first = &p.statements[0].commands;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].args[0].name.as_deref(), Some("-ResultSize"));
        assert_eq!(first[0].args[0].value, Value::Nil);
        assert_eq!(first[0].args[1].name, None);
        assert_eq!(first[0].args[1].value, Value::I32(10));
        assert!(!first[0].merge_errors_into_output);
        assert!(first[1].merge_errors_into_output);
        assert_eq!(p.statements[1].commands[0].name, "Get-User");
    }
    let script = pipeline_body(
        vec![vec![command_obj(
            "Get-Mailbox | ? {$_}",
            true,
            vec![],
            None,
        )]],
        true,
        true,
    );
    let p = parse_create_pipeline(&script).unwrap();
    assert!(p.statements[0].commands[0].is_script);
    assert!(p.no_input);
}

#[test]
fn create_pipeline_shape_errors_are_typed() {
    assert_eq!(
        parse_create_pipeline(&Value::from("x")),
        Err(RecordError::NotAnObject {
            message: "CREATE_PIPELINE",
            got: "S"
        })
    );
    let no_ps = from_xml(r#"<Obj RefId="0"><MS><B N="NoInput">true</B></MS></Obj>"#).unwrap();
    assert_eq!(
        parse_create_pipeline(&no_ps),
        Err(RecordError::Missing {
            message: "CREATE_PIPELINE",
            member: "PowerShell"
        })
    );
    let empty = pipeline_body(vec![vec![]], true, true);
    assert_eq!(parse_create_pipeline(&empty), Err(RecordError::NoCommands));
    let no_cmd = pipeline_body(
        vec![vec![
            Object::default()
                .with_property("IsScript", false)
                .into_value(),
        ]],
        true,
        true,
    );
    assert!(matches!(
        parse_create_pipeline(&no_cmd),
        Err(RecordError::Missing { member: "Cmd", .. })
    ));
}

#[test]
fn metadata_query_accepts_pypsrp_and_windows_forms() {
    let pypsrp = from_xml(
        r#"<Obj RefId="0"><MS><Obj N="Name" RefId="1"><TN RefId="0"><T>System.String[]</T><T>System.Array</T><T>System.Object</T></TN><LST><S>*</S></LST></Obj><I32 N="CommandType">511</I32><Nil N="Namespace" /><Nil N="ArgumentList" /></MS></Obj>"#,
    )
    .unwrap();
    assert_eq!(
        parse_metadata_query(&pypsrp).unwrap(),
        MetadataQuery {
            names: vec!["*".into()],
            command_types: 511,
            namespace: None
        }
    );
    let windows = Object::default()
        .with_property("Name", Value::string_array(["Get-*", "Set-Mailbox"]))
        .with_property(
            "CommandType",
            Value::enum_of(
                "System.Management.Automation.CommandTypes",
                "Alias, Function, Filter, Cmdlet, Workflow, Configuration",
                399,
            ),
        )
        .with_property("Namespace", Value::string_array(["tmp_exo"]))
        .into_value();
    let q = parse_metadata_query(&windows).unwrap();
    assert_eq!(q.names, ["Get-*", "Set-Mailbox"]);
    assert_eq!(q.command_types, 399);
    assert_eq!(q.namespace, Some(vec!["tmp_exo".to_owned()]));
    let names_only = Object::default()
        .with_property(
            "CommandType",
            Object::default().with_to_string("Alias, Cmdlet"),
        )
        .into_value();
    let q = parse_metadata_query(&names_only).unwrap();
    assert_eq!(
        (q.names.as_slice(), q.command_types),
        (&["*".to_owned()][..], 9)
    );
}

#[test]
fn command_metadata_reply_has_what_clients_read() {
    assert_eq!(
        to_xml(&command_metadata_count(3)),
        "<Obj RefId=\"0\"><TN RefId=\"0\"><T>Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo</T><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I32 N=\"Count\">3</I32></MS></Obj>"
    );
    let cmd = CommandMetadata {
        name: "Get-Mailbox".into(),
        namespace: "tmp_exo".into(),
        command_type: 8,
        resolved_command_name: None,
        parameters: vec![
            ParameterMetadata {
                name: "Identity".into(),
                parameter_type: "Microsoft.Exchange.Configuration.Tasks.MailboxIdParameter".into(),
                aliases: vec![],
                is_switch: false,
                position: Some(0),
            },
            ParameterMetadata {
                name: "Force".into(),
                parameter_type: String::new(),
                aliases: vec![],
                is_switch: true,
                position: None,
            },
            ParameterMetadata {
                name: "Verbose".into(),
                parameter_type: "System.Management.Automation.SwitchParameter".into(),
                aliases: vec!["vb".into()],
                is_switch: true,
                position: None,
            },
        ],
        supports_should_process: true,
    };
    let v = from_xml(&to_xml(&command_metadata(&cmd))).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.type_names[0],
        "Selected.System.Management.Automation.CmdletInfo"
    );
    for m in [
        "Name",
        "Namespace",
        "HelpUri",
        "CommandType",
        "OutputType",
        "Parameters",
        "ResolvedCommandName",
    ] {
        assert!(obj.extended_property(m).is_some(), "{m}");
    }
    let ct = obj.property("CommandType").unwrap().as_object().unwrap();
    assert_eq!(
        (ct.to_string.as_deref(), ct.primitive.as_ref()),
        (Some("Cmdlet"), Some(&Value::I32(8)))
    );
    let params = obj.property("Parameters").unwrap().as_object().unwrap();
    let names: Vec<&str> = params
        .entries()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Identity",
            "Force",
            "Verbose",
            "Debug",
            "ErrorAction",
            "WarningAction",
            "InformationAction",
            "ErrorVariable",
            "WarningVariable",
            "InformationVariable",
            "OutVariable",
            "OutBuffer",
            "PipelineVariable",
            "WhatIf",
            "Confirm"
        ]
    );
    let force = params.entry("Force").unwrap().as_object().unwrap();
    assert_eq!(
        force.adapted_property("SwitchParameter"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        force.adapted_property("ParameterType").unwrap().as_str(),
        Some("System.Management.Automation.SwitchParameter")
    );
    assert!(
        force.extended.is_empty(),
        "pypsrp needs ParameterMetadata fields under Props"
    );
    let ea = params.entry("ErrorAction").unwrap().as_object().unwrap();
    assert_eq!(
        ea.adapted_property("Aliases").unwrap().as_list().unwrap(),
        [Value::from("ea")]
    );

    let alias = CommandMetadata {
        name: "gmbx".into(),
        command_type: 1,
        resolved_command_name: Some("Get-Mailbox".into()),
        parameters: vec![],
        supports_should_process: false,
        ..cmd
    };
    let v = command_metadata(&alias);
    assert_eq!(
        v.as_object().unwrap().type_names[0],
        "Selected.System.Management.Automation.AliasInfo"
    );
    assert_eq!(
        v.property("ResolvedCommandName").unwrap().as_str(),
        Some("Get-Mailbox")
    );
    assert!(
        v.property("Parameters")
            .unwrap()
            .as_object()
            .unwrap()
            .entry("WhatIf")
            .is_none()
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(version_at_least("2.3", "2.3"));
    assert!(version_at_least("2.10", "2.3"));
    assert!(!version_at_least("2.2", "2.3"));
    assert!(version_at_least("3", "2.3"));
    assert!(!version_at_least("", "2.1"));
}
