//! The remoting endpoint end to end: the real pypsrp client over real TLS, and crafted
//! requests for what Windows PowerShell sends and pypsrp never does (Xpress compression,
//! Import-PSSession's sequence, the misspelled `crtl_c`), plus faults, limits and
//! back-pressure.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::TimeZone as _;
use serde_json::Value as Json;

use exo_authproxy::remoting::binding::{self, BoundValue};
use exo_authproxy::remoting::clixml::{self, Object, Value};
use exo_authproxy::remoting::executor::{
    CommandMetadata, ErrorCategory, ErrorRecord, Executor, InputStream, MetadataQuery, Output,
    OutputSink, ParameterMetadata, Pipeline, PipelineEnd,
};
use exo_authproxy::remoting::fragment::{Defragmenter, fragment};
use exo_authproxy::remoting::message::{Destination, Message, MessageType};
use exo_authproxy::remoting::{Endpoint, Settings, wsman};

use crate::support::{endpoint, python};

// ---------------------------------------------------------------------------------------
// The test executor: deterministic commands.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct TestExec {
    /// Futures of `Wait-Long` dropped by the endpoint (Ctrl-C, Terminate, Delete).
    cancelled: AtomicUsize,
    /// Objects `Get-Thing` has handed to the sink so far.
    produced: AtomicU64,
    /// The last pipeline run (for assertions on what the client sent).
    last: std::sync::Mutex<Option<Pipeline>>,
}

struct DropCounter<'a>(&'a AtomicUsize);
impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn thing(i: i64) -> Value {
    let created = chrono::FixedOffset::east_opt(3600)
        .expect("offset")
        .with_ymd_and_hms(2024, 2, 29, 13, 45, 0)
        .single()
        .expect("date")
        + chrono::Duration::seconds(i);
    let nested = Object::new(["Exo.Test.Nested", "System.Object"])
        .with_adapted("Inner", Value::I64(i * 10))
        .with_adapted("Label", format!("inner-{i}"));
    Object::new(["Exo.Test.Thing", "System.Object"])
        .with_to_string(format!("thing-{i}"))
        .with_adapted("Name", format!("thing-{i}"))
        .with_adapted("Index", Value::I32(i32::try_from(i).expect("small")))
        .with_adapted("Created", Value::DateTime(created))
        .with_adapted("Enabled", i % 2 == 0)
        .with_adapted(
            "Tags",
            Value::list(
                ["System.Object[]", "System.Array", "System.Object"],
                vec![Value::from("a"), Value::from("b & <c>")],
            ),
        )
        .with_adapted("Nested", nested)
        .into_value()
}

fn not_found(name: &str) -> ErrorRecord {
    ErrorRecord {
        message: format!(
            "The operation couldn't be performed because object '{name}' couldn't be found."
        ),
        exception_type: "System.Management.Automation.RemoteException".into(),
        fully_qualified_error_id:
            "[Server=TEST] 8C2B4F1A,Microsoft.Exchange.Management.RecipientTasks.GetMailbox".into(),
        category: ErrorCategory::ObjectNotFound,
        activity: "Get-Thing".into(),
        reason: "ManagementObjectNotFoundException".into(),
        target_name: name.into(),
        target_type: "String".into(),
        target_object: Value::from(name),
    }
}

impl Executor for TestExec {
    type Caller = ();

    async fn run(
        &self,
        _caller: &(),
        pipeline: Pipeline,
        mut input: InputStream,
        output: OutputSink,
    ) -> PipelineEnd {
        *self.last.lock().expect("lock") = Some(pipeline.clone());
        let cmd = &pipeline.statements[0].commands[0];
        // Bound as the endpoint's other executors bind: with the command's metadata (a
        // command without any takes no parameters).
        let metadata = test_commands()
            .into_iter()
            .find(|m| m.name.eq_ignore_ascii_case(&cmd.name))
            .unwrap_or_else(|| CommandMetadata {
                name: cmd.name.clone(),
                namespace: "tmp_exo".into(),
                command_type: 8,
                resolved_command_name: None,
                parameters: vec![],
                supports_should_process: false,
            });
        let bound = match binding::bind(&metadata, &cmd.args) {
            Ok(bound) => bound,
            Err(e) => return PipelineEnd::Failed(e.to_error_record()),
        };
        let get = |n: &str| match bound.get(n) {
            Some(BoundValue::Value(v)) => Some(v.clone()),
            Some(BoundValue::Switch(b)) => Some(Value::Bool(*b)),
            None => None,
        };
        match cmd.name.to_ascii_lowercase().as_str() {
            "get-thing" => {
                let count = get("Count").and_then(|v| v.as_i64()).unwrap_or(1);
                // -Light: small objects, so that pypsrp (≈3 ms per rich object in
                // Python) gets through 20,000 of them quickly.
                let light = get("Light").is_some();
                for i in 0..count {
                    let obj = if light {
                        Object::new(["Exo.Test.Thing", "System.Object"])
                            .with_adapted("Name", format!("thing-{i}"))
                            .with_adapted("Index", Value::I32(i32::try_from(i).unwrap_or(i32::MAX)))
                            .into_value()
                    } else {
                        thing(i)
                    };
                    if output.send(Output::Object(obj)).await.is_err() {
                        break;
                    }
                    self.produced.fetch_add(1, Ordering::SeqCst);
                }
                PipelineEnd::Completed
            }
            "write-stuff" => {
                let _ = output
                    .send(Output::Warning("careful: this is a test warning".into()))
                    .await;
                let _ = output.send(Output::Verbose("some details".into())).await;
                let _ = output.send(Output::Error(not_found("nobody"))).await;
                let _ = output.send(Output::Object(Value::from("done"))).await;
                PipelineEnd::Completed
            }
            "fail-thing" => PipelineEnd::Failed(not_found("ghost")),
            "get-big" => {
                let big = "x".repeat(300 * 1024);
                let _ = output.send(Output::Object(Value::from(big))).await;
                PipelineEnd::Completed
            }
            "wait-long" => {
                let _ = output.send(Output::Object(Value::from("started"))).await;
                let _guard = DropCounter(&self.cancelled);
                std::future::pending::<()>().await;
                PipelineEnd::Completed
            }
            "echo-input" => {
                while let Some(v) = input.recv().await {
                    if output.send(Output::Object(v)).await.is_err() {
                        break;
                    }
                }
                PipelineEnd::Completed
            }
            "get-mailbox" => {
                let identity = get("Identity").unwrap_or(Value::Nil);
                let name = identity.as_str().unwrap_or("?").to_owned();
                let _ = output
                    .send(Output::Object(
                        Object::new([
                            "Deserialized.Microsoft.Exchange.Data.Directory.Management.Mailbox",
                            "Deserialized.System.Object",
                        ])
                        .with_to_string(name.clone())
                        .with_adapted("Name", name)
                        .into_value(),
                    ))
                    .await;
                PipelineEnd::Completed
            }
            other => PipelineEnd::Failed(ErrorRecord::command_not_found(other)),
        }
    }

    fn command_metadata(
        &self,
        _caller: &(),
        _query: MetadataQuery,
    ) -> impl Future<Output = Result<Vec<CommandMetadata>, ErrorRecord>> + Send {
        let commands = test_commands();
        async move { Ok(commands) }
    }
}

/// The commands [`TestExec`] publishes metadata for (and binds with).
fn test_commands() -> Vec<CommandMetadata> {
    let param = |name: &str, ty: &str, switch: bool, position: Option<u32>| ParameterMetadata {
        name: name.into(),
        parameter_type: ty.into(),
        aliases: vec![],
        is_switch: switch,
        position,
    };
    const SWITCH: &str = "System.Management.Automation.SwitchParameter";
    vec![
        CommandMetadata {
            name: "Get-Thing".into(),
            namespace: "tmp_exo".into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: vec![
                param("Count", "System.Int32", false, None),
                param("Name", "System.String", false, None),
                param("Light", SWITCH, true, None),
            ],
            supports_should_process: false,
        },
        CommandMetadata {
            name: "Set-Thing".into(),
            namespace: "tmp_exo".into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: vec![
                param("Identity", "System.String", false, None),
                param("Force", SWITCH, true, None),
            ],
            supports_should_process: true,
        },
        CommandMetadata {
            name: "Get-Mailbox".into(),
            namespace: "tmp_exo".into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: vec![param("Identity", "System.String", false, Some(0))],
            supports_should_process: false,
        },
    ]
}

// ---------------------------------------------------------------------------------------
// pypsrp
// ---------------------------------------------------------------------------------------

async fn pypsrp(scenario: &str, settings: Settings) -> (Json, Arc<TestExec>) {
    let rss_before = rss_kib();
    let exec = Arc::new(TestExec::default());
    let server = endpoint::serve(exec.clone(), settings, ()).await;
    let out = python::run_script(
        "session.py",
        vec![
            ("EXO_HOST".into(), "127.0.0.1".into()),
            ("EXO_PORT".into(), server.addr.port().to_string()),
            ("EXO_CA".into(), server.ca_path.display().to_string()),
            ("SCENARIO".into(), scenario.into()),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypsrp {scenario} failed:\n{stdout}\n{stderr}"
    );
    let json: Json =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(
        server.endpoint.shell_count(),
        0,
        "pypsrp closed its pools; no shell may remain"
    );
    eprintln!(
        "pypsrp {scenario}: test process VmRSS {rss_before} KiB before, {} KiB after",
        rss_kib()
    );
    (json, exec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_runs_commands_streams_errors_metadata_and_refuses_scripts() {
    let (r, exec) = pypsrp("basic", Settings::default()).await;
    assert_eq!(r["pool_state"], 2, "{r}");

    // 1 object: types, nested properties and DateTimes as pypsrp sees them.
    let one = &r["one"];
    assert_eq!(one["count"], 1);
    assert_eq!(one["state"], 4);
    let obj = &one["output"][0];
    assert_eq!(
        obj["types"],
        serde_json::json!(["Exo.Test.Thing", "System.Object"])
    );
    assert_eq!(obj["to_string"], "thing-0");
    assert_eq!(obj["adapted"]["Name"], "thing-0");
    assert_eq!(obj["adapted"]["Index"], 0);
    assert_eq!(obj["adapted"]["Enabled"], true);
    assert_eq!(
        obj["adapted"]["Created"],
        "2024-02-29T13:45:00.0000000+01:00"
    );
    assert_eq!(obj["adapted"]["Tags"], serde_json::json!(["a", "b & <c>"]));
    assert_eq!(obj["adapted"]["Nested"]["adapted"]["Inner"], 0);
    assert_eq!(obj["adapted"]["Nested"]["adapted"]["Label"], "inner-0");

    assert_eq!(r["zero"]["count"], 0);
    assert_eq!(r["zero"]["state"], 4);
    assert_eq!(r["zero"]["had_errors"], false);

    let many = &r["many"];
    assert_eq!(many["count"], 20_000);
    assert_eq!(many["state"], 4);
    assert_eq!(many["last"]["adapted"]["Name"], "thing-19999");
    assert_eq!(many["last"]["adapted"]["Index"], 19_999);
    assert_eq!(
        exec.produced.load(Ordering::SeqCst),
        1 + 20_000 + 7,
        "Get-Thing ran for 1, 0, 20000 and 7 objects"
    );

    let st = &r["streams"];
    assert_eq!(
        st["warnings"],
        serde_json::json!(["careful: this is a test warning"])
    );
    assert_eq!(st["verbose"], serde_json::json!(["some details"]));
    assert_eq!(
        st["errors"][0]["fq_error"],
        "[Server=TEST] 8C2B4F1A,Microsoft.Exchange.Management.RecipientTasks.GetMailbox"
    );
    assert_eq!(st["errors"][0]["category"], 13);
    assert_eq!(st["output"][0], "done");
    assert_eq!(st["state"], 4);

    let failed = &r["failed"];
    assert_eq!(failed["state"], 5, "{failed}");
    assert_eq!(failed["had_errors"], true);
    assert!(
        failed["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ghost"),
        "{failed}"
    );

    let script = &r["script"];
    assert_eq!(script["state"], 5, "{script}");
    assert_eq!(
        script["errors"][0]["fq_error"], "ScriptsNotAllowed",
        "{script}"
    );
    assert!(
        script["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no-language mode")
    );

    assert_eq!(r["input"]["count"], 3);
    assert_eq!(r["input"]["output"], serde_json::json!(["a", "b", 3]));

    assert_eq!(r["measure"]["count"], 1, "{r}");
    assert_eq!(r["measure"]["first"]["adapted"]["Count"], 7, "{r}");

    let meta = r["metadata"].as_array().expect("metadata list");
    let names: Vec<&str> = meta.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(
        names,
        ["Get-Thing", "Set-Thing"],
        "the *-Thing wildcard selects two commands"
    );
    let set_params: Vec<&str> = meta[1]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    for p in [
        "Identity",
        "Force",
        "Verbose",
        "ErrorAction",
        "WhatIf",
        "Confirm",
    ] {
        assert!(set_params.contains(&p), "{p} missing from {set_params:?}");
    }
    assert_eq!(r["closed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_ctrl_c_stops_a_long_command() {
    let (r, exec) = pypsrp("stop", Settings::default()).await;
    assert_eq!(r["before_stop"], 1, "{r}");
    assert_eq!(
        r["after"]["count"], 2,
        "the pool keeps working after a stop: {r}"
    );
    assert_eq!(
        exec.cancelled.load(Ordering::SeqCst),
        1,
        "the executor's future was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_two_pools_concurrently() {
    let (r, _) = pypsrp("concurrent", Settings::default()).await;
    assert_eq!(r["ids_differ"], true);
    assert_eq!(r["counts"], serde_json::json!([3000, 3001]), "{r}");
}

// ---------------------------------------------------------------------------------------
// Crafted requests (Windows PowerShell's forms, reference §11 / §2.11)
// ---------------------------------------------------------------------------------------

pub(crate) const SHELL_ID: &str = "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B";
const RPID: &str = "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B";
/// creationXml of reference §11.1 (Windows PowerShell 5.1 style).
pub(crate) const CREATION_XML: &str = include_str!("vectors/creation_xml_11_1.b64");
/// rsp:Arguments of reference §11.4 (`Get-Mailbox -Identity:AdeleV`).
const GET_MAILBOX_ARGS: &str = include_str!("vectors/get_mailbox_arguments_11_4.b64");

struct Client {
    ep: Arc<Endpoint<TestExec>>,
    exec: Arc<TestExec>,
    owner: String,
    compression: bool,
    object_id: u64,
}

/// Elements found in a response: (attributes, text).
type Elements = Vec<(Vec<(String, String)>, String)>;

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn texts(&self, local: &str) -> Elements {
        let mut reader = quick_xml::Reader::from_str(&self.body);
        let mut out = Vec::new();
        let mut cur: Option<(Vec<(String, String)>, String)> = None;
        loop {
            match reader.read_event().expect("response XML") {
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)
                    if e.local_name().as_ref() == local.as_bytes() =>
                {
                    let attrs = e
                        .attributes()
                        .filter_map(Result::ok)
                        .map(|a| {
                            (
                                String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                                a.unescape_value().expect("attr").into_owned(),
                            )
                        })
                        .collect();
                    if let Some(c) = cur.take() {
                        out.push(c);
                    }
                    cur = Some((attrs, String::new()));
                }
                quick_xml::events::Event::Text(t) => {
                    if let Some(c) = cur.as_mut() {
                        c.1.push_str(&t.unescape().expect("text"));
                    }
                }
                quick_xml::events::Event::End(e) if e.local_name().as_ref() == local.as_bytes() => {
                    out.extend(cur.take());
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        out.extend(cur);
        out
    }

    fn text(&self, local: &str) -> Option<String> {
        self.texts(local).into_iter().next().map(|(_, t)| t)
    }

    fn fault_code(&self) -> Option<u32> {
        self.texts("WSManFault")
            .into_iter()
            .next()
            .and_then(|(a, _)| {
                a.into_iter()
                    .find(|(k, _)| k == "Code")
                    .and_then(|(_, v)| v.parse().ok())
            })
    }

    fn command_state(&self) -> Option<String> {
        self.texts("CommandState")
            .into_iter()
            .next()
            .and_then(|(a, _)| a.into_iter().find(|(k, _)| k == "State").map(|(_, v)| v))
    }
}

pub(crate) fn envelope(
    action: &str,
    shell: Option<&str>,
    headers: &str,
    body: &str,
    message_id: &str,
) -> String {
    let selector = shell
        .map(|s| {
            format!("<w:SelectorSet><w:Selector Name=\"ShellId\">{s}</w:Selector></w:SelectorSet>")
        })
        .unwrap_or_default();
    format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
         xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
         xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" \
         xmlns:rsp=\"http://schemas.microsoft.com/wbem/wsman/1/windows/shell\"><s:Header>\
         <a:To>https://proxy.example.com/powershell-liveid/</a:To>\
         <w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI>\
         <a:ReplyTo><a:Address s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
         <a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
         <w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>\
         <a:MessageID>{message_id}</a:MessageID>\
         <w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\" />\
         <p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\" />\
         {selector}{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .expect("base64")
}

fn uuid(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).expect("uuid")
}

impl Client {
    fn new(settings: Settings) -> Self {
        let exec = Arc::new(TestExec::default());
        Self {
            ep: Arc::new(Endpoint::new(exec.clone(), settings)),
            exec,
            owner: "admin@contoso.onmicrosoft.com".into(),
            compression: false,
            object_id: 100,
        }
    }

    async fn post(&self, xml: String) -> Reply {
        let req = http::Request::post("/powershell-liveid/")
            .body(Bytes::from(xml))
            .expect("request");
        let rsp = self.ep.handle(&self.owner, (), req).await;
        Reply {
            status: rsp.status().as_u16(),
            body: String::from_utf8(rsp.body().to_vec()).expect("UTF-8 response"),
        }
    }

    async fn create(&mut self, compression: bool) -> Reply {
        self.compression = compression;
        let headers = format!(
            "<w:OptionSet s:mustUnderstand=\"true\"><w:Option Name=\"protocolversion\" MustComply=\"true\">2.3</w:Option></w:OptionSet>\
             <w:OperationTimeout>PT180.000S</w:OperationTimeout>{}",
            if compression {
                "<rsp:CompressionType s:mustUnderstand=\"true\">xpress</rsp:CompressionType>"
            } else {
                ""
            }
        );
        let body = format!(
            "<rsp:Shell ShellId=\"{SHELL_ID}\"><rsp:InputStreams>stdin pr</rsp:InputStreams>\
             <rsp:OutputStreams>stdout</rsp:OutputStreams>\
             <creationXml xmlns=\"http://schemas.microsoft.com/powershell\">{}</creationXml></rsp:Shell>",
            CREATION_XML.trim()
        );
        self.post(envelope(
            wsman::ACTION_CREATE,
            None,
            &headers,
            &body,
            "uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B",
        ))
        .await
    }

    async fn receive(&self, command_id: Option<&str>, timeout: &str, max_env: usize) -> Reply {
        let attr = command_id
            .map(|c| format!(" CommandId=\"{c}\""))
            .unwrap_or_default();
        let headers = format!(
            "<w:OptionSet><w:Option Name=\"WSMAN_CMDSHELL_OPTION_KEEPALIVE\">TRUE</w:Option></w:OptionSet>\
             <w:OperationTimeout>{timeout}</w:OperationTimeout>"
        );
        let xml = envelope(
            wsman::ACTION_RECEIVE,
            Some(SHELL_ID),
            &headers,
            &format!("<rsp:Receive SequenceId=\"0\"><rsp:DesiredStream{attr}>stdout</rsp:DesiredStream></rsp:Receive>"),
            &format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase()),
        )
        .replace("<w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>", &format!("<w:MaxEnvelopeSize s:mustUnderstand=\"true\">{max_env}</w:MaxEnvelopeSize>"));
        self.post(xml).await
    }

    /// Receives until CommandState Done (or, for the pool, until `want` messages arrived).
    async fn drain(&self, command_id: Option<&str>, want: usize) -> Vec<Message> {
        let mut defrag = Defragmenter::new(64 << 20);
        let mut msgs = Vec::new();
        for _ in 0..10_000 {
            let r = self.receive(command_id, "PT5S", 512_000).await;
            assert_eq!(r.status, 200, "{}", r.body);
            for (_, data) in r.texts("Stream") {
                let mut raw = unb64(&data);
                if self.compression {
                    raw = exo_authproxy::remoting::xpress::decompress_stream(&raw, 1 << 20)
                        .expect("stored chunks");
                }
                for m in defrag.push(&raw).expect("fragments") {
                    msgs.push(Message::decode(&m).expect("message"));
                }
            }
            let done = r.command_state().as_deref() == Some(wsman::COMMAND_STATE_DONE);
            if done || (command_id.is_none() && msgs.len() >= want) {
                return msgs;
            }
        }
        panic!("no end after 10000 receives");
    }

    async fn command(&mut self, command_id: &str, arguments_b64: &str) -> Reply {
        let body = format!(
            "<rsp:CommandLine CommandId=\"{command_id}\"><rsp:Command>x</rsp:Command><rsp:Arguments>{arguments_b64}</rsp:Arguments></rsp:CommandLine>"
        );
        let r = self
            .post(envelope(wsman::ACTION_COMMAND, Some(SHELL_ID), "<w:OptionSet><w:Option Name=\"WINRS_SKIP_CMD_SHELL\">False</w:Option></w:OptionSet>", &body, "uuid:11111111-1111-4111-8111-111111111111"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.text("CommandId").as_deref(), Some(command_id));
        r
    }

    fn client_fragments(&mut self, message_type: MessageType, pid: &str, data: &str) -> Vec<u8> {
        let msg = Message {
            destination: Destination::Server,
            message_type,
            rpid: uuid(RPID),
            pid: if pid.is_empty() {
                uuid::Uuid::nil()
            } else {
                uuid(pid)
            },
            data: data.as_bytes().to_vec(),
        };
        self.object_id += 1;
        fragment(self.object_id, &msg.encode(), 32 * 1024).concat()
    }

    async fn send(&self, command_id: Option<&str>, stream_data: &[u8]) -> Reply {
        let attr = command_id
            .map(|c| format!(" CommandId=\"{c}\""))
            .unwrap_or_default();
        self.post(envelope(
            wsman::ACTION_SEND,
            Some(SHELL_ID),
            "",
            &format!(
                "<rsp:Send><rsp:Stream Name=\"stdin\"{attr}>{}</rsp:Stream></rsp:Send>",
                b64(stream_data)
            ),
            "uuid:22222222-2222-4222-8222-222222222222",
        ))
        .await
    }

    async fn signal(&self, command_id: &str, code: &str) -> Reply {
        self.post(envelope(
            wsman::ACTION_SIGNAL,
            Some(SHELL_ID),
            "",
            &format!(
                "<rsp:Signal CommandId=\"{command_id}\"><rsp:Code>{code}</rsp:Code></rsp:Signal>"
            ),
            "uuid:33333333-3333-4333-8333-333333333333",
        ))
        .await
    }
}

fn body_of(m: &Message) -> Value {
    let data = m.data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&m.data);
    if data.is_empty() {
        return Value::Nil;
    }
    clixml::from_xml(std::str::from_utf8(data).expect("UTF-8")).expect("CLIXML")
}

fn prop<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.as_object()
        .and_then(|o| o.property(name))
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

/// One command for [`create_pipeline_xml`]: name and (N, V-element) arguments.
type Cmd<'a> = (&'a str, &'a [(Option<&'a str>, &'a str)]);

/// A CREATE_PIPELINE body the way Windows PowerShell builds it (§11.4), for `cmds`.
fn create_pipeline_xml(cmds: &[Cmd<'_>], no_input: bool) -> String {
    let mut ref_id = 3;
    let mut list = String::new();
    for (name, args) in cmds {
        let mut a = String::new();
        for (n, v) in *args {
            ref_id += 1;
            let n = n.map_or("<Nil N=\"N\" />".to_owned(), |n| {
                format!("<S N=\"N\">{n}</S>")
            });
            a.push_str(&format!("<Obj RefId=\"{ref_id}\"><MS>{n}{v}</MS></Obj>"));
        }
        ref_id += 2;
        list.push_str(&format!(
            "<Obj RefId=\"{}\"><MS><S N=\"Cmd\">{name}</S><B N=\"IsScript\">false</B><Nil N=\"UseLocalScope\" />\
             <Obj N=\"MergeMyResult\" RefId=\"{}\"><TN RefId=\"1\"><T>System.Management.Automation.Runspaces.PipelineResultTypes</T><T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN><ToString>None</ToString><I32>0</I32></Obj>\
             <Obj N=\"Args\" RefId=\"{ref_id}\"><TNRef RefId=\"0\" /><LST>{a}</LST></Obj></MS></Obj>",
            ref_id - 1,
            ref_id + 100
        ));
    }
    format!(
        "<Obj RefId=\"0\"><MS><Obj N=\"PowerShell\" RefId=\"1\"><MS><Obj N=\"Cmds\" RefId=\"2\"><TN RefId=\"0\">\
         <T>System.Collections.Generic.List`1[[System.Management.Automation.PSObject, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]</T><T>System.Object</T></TN>\
         <LST>{list}</LST></Obj><B N=\"IsNested\">false</B><Nil N=\"History\" /><B N=\"RedirectShellErrorOutputPipe\">true</B></MS></Obj>\
         <B N=\"NoInput\">{no_input}</B><B N=\"AddToHistory\">true</B><B N=\"IsNested\">false</B></MS></Obj>"
    )
}

async fn open_pool(c: &mut Client, compression: bool) -> Vec<Message> {
    let r = c.create(compression).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.text("RelatesTo").as_deref(),
        Some("uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B")
    );
    assert_eq!(r.text("ShellId").as_deref(), Some(SHELL_ID));
    assert_eq!(r.text("Selector").as_deref(), Some(SHELL_ID));
    assert_eq!(
        r.text("CompressionMode").as_deref(),
        Some(if compression {
            "XpressCompression"
        } else {
            "NoCompression"
        })
    );
    c.drain(None, 3).await
}

#[tokio::test]
async fn windows_pool_open_echoes_rpid_and_claims_powershell_5_1() {
    let mut c = Client::new(Settings::default());
    let msgs = open_pool(&mut c, false).await;
    let types: Vec<_> = msgs.iter().map(|m| m.message_type).collect();
    assert_eq!(
        types,
        [
            MessageType::SessionCapability,
            MessageType::ApplicationPrivateData,
            MessageType::RunspacePoolState
        ]
    );
    assert_eq!(
        msgs[1].rpid,
        uuid(RPID),
        "the RPID the client sent is echoed"
    );
    assert_eq!(msgs[2].rpid, uuid(RPID));
    let state = body_of(&msgs[2]);
    assert_eq!(prop(&state, "RunspaceState").as_i64(), Some(2));
    let apd = body_of(&msgs[1]);
    let dict = prop(&apd, "ApplicationPrivateData");
    let version = dict
        .as_object()
        .and_then(|o| o.entry("PSVersionTable"))
        .and_then(|t| t.as_object())
        .and_then(|t| t.entry("PSVersion"));
    assert_eq!(version, Some(&Value::Version("5.1.17763.6414".into())));
    assert!(matches!(prop(&body_of(&msgs[0]), "protocolversion"), Value::Version(v) if v == "2.3"));
}

#[tokio::test]
async fn windows_import_pssession_sequence_completes() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;

    // 1. GET_COMMAND_METADATA with CommandType as the enum Obj Windows sends (399).
    let meta_pid = "7B2D3E4F-5A6B-4C7D-8E9F-0A1B2C3D4E5F";
    let query = "<Obj RefId=\"0\"><MS><Obj N=\"Name\" RefId=\"1\"><TN RefId=\"0\"><T>System.String[]</T><T>System.Array</T><T>System.Object</T></TN><LST><S>*</S></LST></Obj>\
        <Obj N=\"CommandType\" RefId=\"2\"><TN RefId=\"1\"><T>System.Management.Automation.CommandTypes</T><T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>\
        <ToString>Alias, Function, Filter, Cmdlet, Workflow, Configuration</ToString><I32>399</I32></Obj>\
        <Nil N=\"Namespace\" /><Nil N=\"ArgumentList\" /></MS></Obj>";
    let frag = c.client_fragments(MessageType::GetCommandMetadata, meta_pid, query);
    c.command(meta_pid, &b64(&frag)).await;
    let msgs = c.drain(Some(meta_pid), 0).await;
    let outputs: Vec<Value> = msgs
        .iter()
        .filter(|m| m.message_type == MessageType::PipelineOutput)
        .map(body_of)
        .collect();
    assert_eq!(
        prop(&outputs[0], "Count").as_i64(),
        Some(3),
        "count object first"
    );
    assert_eq!(outputs.len(), 4);
    assert_eq!(prop(&outputs[1], "Name").as_str(), Some("Get-Thing"));
    assert!(
        msgs.iter().all(|m| m.pid == uuid(meta_pid)),
        "the PID the client sent is echoed"
    );
    let last = msgs.last().expect("state");
    assert_eq!(last.message_type, MessageType::PipelineState);
    assert_eq!(prop(&body_of(last), "PipelineState").as_i64(), Some(4));

    // 2. Get-FormatData -TypeName * -PowerShellVersion 5.1 | Measure-Object, then alone.
    let fmt_args: &[(Option<&str>, &str)] = &[
        (Some("-TypeName:"), "<S N=\"V\">*</S>"),
        (
            Some("-PowerShellVersion:"),
            "<Version N=\"V\">5.1.17763.6414</Version>",
        ),
    ];
    let measure_pid = "8C3E4F50-6B7C-4D8E-9FA0-1B2C3D4E5F60";
    let xml = create_pipeline_xml(
        &[("Get-FormatData", fmt_args), ("Measure-Object", &[])],
        true,
    );
    let frag = c.client_fragments(MessageType::CreatePipeline, measure_pid, &xml);
    c.command(measure_pid, &b64(&frag)).await;
    let msgs = c.drain(Some(measure_pid), 0).await;
    let outputs: Vec<Value> = msgs
        .iter()
        .filter(|m| m.message_type == MessageType::PipelineOutput)
        .map(body_of)
        .collect();
    assert_eq!(outputs.len(), 1);
    assert_eq!(prop(&outputs[0], "Count").as_i64(), Some(0));
    assert_eq!(
        prop(&body_of(msgs.last().expect("state")), "PipelineState").as_i64(),
        Some(4),
        "Completed"
    );

    let fmt_pid = "9D4F5061-7C8D-4E9F-A0B1-2C3D4E5F6071";
    let xml = create_pipeline_xml(&[("Get-FormatData", fmt_args)], true);
    let frag = c.client_fragments(MessageType::CreatePipeline, fmt_pid, &xml);
    c.command(fmt_pid, &b64(&frag)).await;
    let msgs = c.drain(Some(fmt_pid), 0).await;
    assert_eq!(msgs.len(), 1, "no objects, just the final state");
    assert_eq!(
        prop(&body_of(&msgs[0]), "PipelineState").as_i64(),
        Some(4),
        "Completed: Import-PSSession goes on"
    );
    assert!(
        c.exec.last.lock().expect("lock").is_none(),
        "Get-FormatData never reached the executor"
    );

    // 3. A proxied call exactly as reference §11.4 carries it.
    c.command(
        "6A1C9E3B-2F47-4D85-9B0E-7C4D2A1F8E63",
        GET_MAILBOX_ARGS.trim(),
    )
    .await;
    let msgs = c
        .drain(Some("6A1C9E3B-2F47-4D85-9B0E-7C4D2A1F8E63"), 0)
        .await;
    let out = body_of(&msgs[0]);
    assert_eq!(
        out.as_object().and_then(|o| o.to_string.as_deref()),
        Some("AdeleV")
    );
    let last = c.exec.last.lock().expect("lock").clone().expect("ran");
    assert_eq!(
        last.statements[0].commands[0].args[0].name.as_deref(),
        Some("-Identity:")
    );
}

/// The mailbox CLIXML prefix that reference xpress-vectors.md §3 compresses (398 bytes).
const VECTOR_PLAIN: &str = "PE9iaiBSZWZJZD0iMCI+PFROIFJlZklkPSIwIj48VD5EZXNlcmlhbGl6ZWQuTWljcm9zb2Z0LkV4Y2hhbmdlLkRhdGEuRGlyZWN0b3J5Lk1hbmFnZW1lbnQuTWFpbGJveDwvVD48VD5EZXNlcmlhbGl6ZWQuTWljcm9zb2Z0LkV4Y2hhbmdlLkRhdGEuRGlyZWN0b3J5Lk1hbmFnZW1lbnQuTWFpbEVuYWJsZWRPcmdQZXJzb248L1Q+PFQ+RGVzZXJpYWxpemVkLk1pY3Jvc29mdC5FeGNoYW5nZS5EYXRhLkRpcmVjdG9yeS5BRFByZXNlbnRhdGlvbk9iamVjdDwvVD48VD5EZXNlcmlhbGl6ZWQuU3lzdGVtLk9iamVjdDwvVD48L1ROPjxUb1N0cmluZz51c2VyMDAwMDA8L1RvU3RyaW5nPjxQcm9wcz48UyBOPSJOYW1lIj51c2VyMDAwMDA8L1M+PFMgTj0iQWxpYXMiPnVzZXIwMDAwMDwvUz48UyBOPSJEaXNwbGE=";
/// The same bytes as one real Xpress-Huffman chunk (header included).
const VECTOR_CHUNK: &str = "jQGHAQAAAAAAAAAAAAAAAAAAAAAHBgAAAAAAdQcAAAAAAHUGYABlAHAAYGYGZwYAAAAAAEBmRmZHB2VVBlR1AGYHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAdwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABwAAAAAHAAAGAHcAAAAAcAYAAAB3AAAAAAAAAAAAAGAHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADVTNlzbcRm4Tf4CkGXaYXO4UIFMlGXErFmFTbXotdrPAzkULh4oEQhW2N52kAiXGCLN+Ef6pIpbk7bRqSpwDBkY3THbuI1ayVWJHpOj0mTB/9Zcc5UqedkAuiNHfrLtJuhzEN0mTQ97mbH+Uy03OYKHdlo+C4LJQ/Go8fE1AeypXywEwN2WAAA";

fn stored_chunk(data: &[u8]) -> Vec<u8> {
    exo_authproxy::remoting::xpress::store_stream(data)
}

#[tokio::test]
async fn windows_xpress_create_and_compressed_send() {
    let mut c = Client::new(Settings::default());
    let msgs = open_pool(&mut c, true).await;
    assert_eq!(
        msgs.len(),
        3,
        "pool-open replies arrive as stored Xpress chunks"
    );

    let pid = "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D";
    let xml = create_pipeline_xml(&[("Echo-Input", &[])], false);
    let frag = c.client_fragments(MessageType::CreatePipeline, pid, &xml);
    c.command(pid, &b64(&frag)).await; // rsp:Arguments are never compressed

    // PIPELINE_INPUT whose data is the mailbox CLIXML, sent the way WinRM compresses Send
    // data: the decompressed stream is one fragment = header chunk (stored) + the real
    // compressed chunk of the first 398 bytes + the rest (stored).
    let plain = unb64(VECTOR_PLAIN);
    let rest = b"yName\">User Zero</S></Props></Obj>";
    let message_header = Message {
        destination: Destination::Server,
        message_type: MessageType::PipelineInput,
        rpid: uuid(RPID),
        pid: uuid(pid),
        data: Vec::new(),
    }
    .encode();
    let blob_len = message_header.len() + plain.len() + rest.len();
    let mut head = Vec::new();
    head.extend_from_slice(&777u64.to_be_bytes());
    head.extend_from_slice(&0u64.to_be_bytes());
    head.push(0x03);
    head.extend_from_slice(&u32::try_from(blob_len).expect("small").to_be_bytes());
    head.extend_from_slice(&message_header);
    let mut stream = stored_chunk(&head);
    stream.extend_from_slice(&unb64(VECTOR_CHUNK));
    stream.extend_from_slice(&stored_chunk(rest));
    let end = Message {
        destination: Destination::Server,
        message_type: MessageType::EndOfPipelineInput,
        rpid: uuid(RPID),
        pid: uuid(pid),
        data: Vec::new(),
    };
    stream.extend_from_slice(&stored_chunk(
        &fragment(778, &end.encode(), 32 * 1024).concat(),
    ));
    let r = c.send(Some(pid), &stream).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let msgs = c.drain(Some(pid), 0).await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let echoed = body_of(&msgs[0]);
    let o = echoed.as_object().expect("object");
    assert_eq!(o.to_string.as_deref(), Some("user00000"));
    assert_eq!(
        o.property("DisplayName").and_then(Value::as_str),
        Some("User Zero")
    );
    assert_eq!(
        o.type_names[0],
        "Deserialized.Microsoft.Exchange.Data.Directory.Management.Mailbox"
    );
    assert_eq!(prop(&body_of(&msgs[1]), "PipelineState").as_i64(), Some(4));
}

#[tokio::test]
async fn windows_misspelled_crtl_c_stops_the_pipeline() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let pid = "B2C3D4E5-F6A7-4B8C-9DAE-1F2A3B4C5D6E";
    let frag = c.client_fragments(
        MessageType::CreatePipeline,
        pid,
        &create_pipeline_xml(&[("Wait-Long", &[])], true),
    );
    c.command(pid, &b64(&frag)).await;
    let first = c.receive(Some(pid), "PT5S", 512_000).await;
    assert_eq!(
        first.command_state().as_deref(),
        Some(wsman::COMMAND_STATE_RUNNING)
    );
    let r = c.signal(pid, "powershell/signal/crtl_c").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("SignalResponse"));
    let msgs = c.drain(Some(pid), 0).await;
    let last = msgs.last().expect("state");
    let state = body_of(last);
    assert_eq!(prop(&state, "PipelineState").as_i64(), Some(3), "Stopped");
    let err = prop(&state, "ExceptionAsErrorRecord");
    assert_eq!(
        prop(err, "FullyQualifiedErrorId").as_str(),
        Some("PipelineStopped")
    );
    assert_eq!(
        c.exec.cancelled.load(Ordering::SeqCst),
        1,
        "the executor's future was dropped"
    );
    // Terminate after the end is accepted silently, as Windows does.
    assert_eq!(c.signal(pid, wsman::SIGNAL_TERMINATE).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn receive_long_poll_answers_timed_out_in_time() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let started = tokio::time::Instant::now();
    let r = c.receive(None, "PT20S", 512_000).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 500);
    assert_eq!(r.fault_code(), Some(2_150_858_793), "{}", r.body);
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(20),
        "answered after {waited:?}"
    );
    // A client asking for more than the cap is answered at the cap.
    let started = tokio::time::Instant::now();
    let r = c.receive(None, "PT3600S", 512_000).await;
    assert_eq!(r.fault_code(), Some(2_150_858_793));
    assert!(started.elapsed() <= Settings::default().max_operation_timeout);
}

#[tokio::test]
async fn faults_for_unknown_shell_unsupported_action_malformed_and_oversize() {
    let mut c = Client::new(Settings {
        max_envelope_size: 64 * 1024,
        ..Settings::default()
    });
    open_pool(&mut c, false).await;

    let r = c
        .post(envelope(
            wsman::ACTION_RECEIVE,
            Some("00000000-0000-4000-8000-000000000000"),
            "",
            "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
            "uuid:AAAA",
        ))
        .await;
    assert_eq!((r.status, r.fault_code()), (500, Some(2_150_858_843)));
    assert_eq!(r.text("RelatesTo").as_deref(), Some("uuid:AAAA"));
    assert!(r.text("Value").is_some());

    for action in [
        "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate",
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Disconnect",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Reconnect",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Connect",
    ] {
        let r = c
            .post(envelope(action, Some(SHELL_ID), "", "", "uuid:BBBB"))
            .await;
        assert_eq!(
            (r.status, r.fault_code()),
            (500, Some(2_150_858_771)),
            "{action}"
        );
        assert!(r.body.contains("ActionNotSupported"));
    }

    let r = c
        .post("<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Header>".into())
        .await;
    assert_eq!(
        (r.status, r.fault_code()),
        (500, Some(2_150_858_819)),
        "{}",
        r.body
    );
    let r = c.post("not xml at all".into()).await;
    assert_eq!(r.status, 500);

    let big = envelope(
        wsman::ACTION_SEND,
        Some(SHELL_ID),
        "",
        &"A".repeat(70 * 1024),
        "uuid:CCCC",
    );
    let r = c.post(big).await;
    assert_eq!(
        (r.status, r.fault_code()),
        (500, Some(2_150_858_805)),
        "{}",
        r.body
    );

    // Shells are only visible to their owner.
    c.owner = "someone-else@contoso.onmicrosoft.com".into();
    let r = c.receive(None, "PT1S", 512_000).await;
    assert_eq!(r.fault_code(), Some(2_150_858_843));

    // Garbage fragments in a Send are a clear fault, not a panic.
    c.owner = "admin@contoso.onmicrosoft.com".into();
    let r = c.send(None, b"\x00\x01garbage").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("could not be read"), "{}", r.body);

    // Delete, then the shell is gone.
    let r = c
        .post(envelope(
            wsman::ACTION_DELETE,
            Some(SHELL_ID),
            "",
            "",
            "uuid:DDDD",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.ep.shell_count(), 0);
    let r = c.receive(None, "PT1S", 512_000).await;
    assert_eq!(r.fault_code(), Some(2_150_858_843));
}

#[tokio::test]
async fn shells_per_owner_are_limited() {
    let mut c = Client::new(Settings {
        max_shells_per_owner: 1,
        ..Settings::default()
    });
    open_pool(&mut c, false).await;
    let again = c.create(false).await;
    assert_eq!(again.status, 500, "{}", again.body);
    c.owner = "other@contoso.onmicrosoft.com".into();
    let r = c.create(false).await;
    // Same ShellId: refused as already existing, not served to another owner.
    assert_eq!(r.status, 500);
    assert_eq!(c.ep.shell_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_shells_are_deleted() {
    let mut c = Client::new(Settings {
        idle_timeout: Duration::from_secs(60),
        ..Settings::default()
    });
    open_pool(&mut c, false).await;
    // A client that disconnects in the middle of a long poll: the request future is dropped.
    let ep = c.ep.clone();
    let abandoned = tokio::spawn(async move {
        let xml = envelope(
            wsman::ACTION_RECEIVE,
            Some(SHELL_ID),
            "<w:OperationTimeout>PT30S</w:OperationTimeout>",
            "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
            "uuid:ABAB",
        );
        let req = http::Request::post("/")
            .body(Bytes::from(xml))
            .expect("request");
        ep.handle("admin@contoso.onmicrosoft.com", (), req).await
    });
    tokio::task::yield_now().await;
    abandoned.abort();
    let _ = abandoned.await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let r = c.receive(None, "PT1S", 512_000).await;
    assert_eq!(r.fault_code(), Some(2_150_858_843), "{}", r.body);
    assert_eq!(c.ep.shell_count(), 0);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn slow_reader_keeps_buffering_bounded() {
    let settings = Settings {
        output_buffer: 64,
        ..Settings::default()
    };
    let mut c = Client::new(settings);
    open_pool(&mut c, false).await;
    let pid = "C3D4E5F6-A7B8-4C9D-AEBF-2A3B4C5D6E7F";
    let args: &[(Option<&str>, &str)] = &[(Some("-Count:"), "<I32 N=\"V\">20000</I32>")];
    let frag = c.client_fragments(
        MessageType::CreatePipeline,
        pid,
        &create_pipeline_xml(&[("Get-Thing", args)], true),
    );
    c.command(pid, &b64(&frag)).await;

    let rss_before = rss_kib();
    let mut defrag = Defragmenter::new(64 << 20);
    let mut received = 0u64;
    let mut max_ahead = 0u64;
    let mut max_rss = rss_before;
    let mut receives = 0;
    loop {
        // A slow reader: small envelopes, and the producer gets time to run ahead if it could.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let ahead = c
            .exec
            .produced
            .load(Ordering::SeqCst)
            .saturating_sub(received);
        max_ahead = max_ahead.max(ahead);
        let r = c.receive(Some(pid), "PT5S", 32_768).await;
        assert!(
            r.body.len() <= 32_768,
            "response of {} bytes exceeds MaxEnvelopeSize",
            r.body.len()
        );
        receives += 1;
        for (_, data) in r.texts("Stream") {
            for m in defrag.push(&unb64(&data)).expect("fragments") {
                if Message::decode(&m).expect("message").message_type == MessageType::PipelineOutput
                {
                    received += 1;
                }
            }
        }
        if receives % 100 == 0 {
            max_rss = max_rss.max(rss_kib());
        }
        if r.command_state().as_deref() == Some(wsman::COMMAND_STATE_DONE) {
            break;
        }
    }
    assert_eq!(received, 20_000);
    let rss_after = rss_kib();
    eprintln!(
        "slow reader: {receives} receives of <=32 KiB; producer at most {max_ahead} objects ahead of the reader \
         (output_buffer 64); VmRSS before {rss_before} KiB, peak {max_rss} KiB, after {rss_after} KiB"
    );
    // Outputs queued (64) + ones already encoded into the pending envelope + one in flight.
    assert!(
        max_ahead <= 64 + 40,
        "the producer ran {max_ahead} objects ahead: buffering is not bounded"
    );
}

#[tokio::test]
async fn big_object_spans_fragments_and_receives() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let pid = "D4E5F6A7-B8C9-4DAE-BF01-3B4C5D6E7F80";
    let frag = c.client_fragments(
        MessageType::CreatePipeline,
        pid,
        &create_pipeline_xml(&[("Get-Big", &[])], true),
    );
    c.command(pid, &b64(&frag)).await;
    let mut defrag = Defragmenter::new(64 << 20);
    let mut msgs = Vec::new();
    let mut responses = 0;
    loop {
        let r = c.receive(Some(pid), "PT5S", 32_768).await;
        assert!(r.body.len() <= 32_768, "{} bytes", r.body.len());
        responses += 1;
        for (_, data) in r.texts("Stream") {
            let raw = unb64(&data);
            assert!(
                raw.len() <= 32 * 1024,
                "one fragment per stream, at most 32 KiB"
            );
            for m in defrag.push(&raw).expect("fragments") {
                msgs.push(Message::decode(&m).expect("message"));
            }
        }
        if r.command_state().as_deref() == Some(wsman::COMMAND_STATE_DONE) {
            break;
        }
    }
    assert!(
        responses >= 12,
        "300 KiB in 32 KiB envelopes takes many responses, got {responses}"
    );
    assert_eq!(msgs.len(), 2);
    assert_eq!(body_of(&msgs[0]).as_str().map(str::len), Some(300 * 1024));
    assert_eq!(prop(&body_of(&msgs[1]), "PipelineState").as_i64(), Some(4));
}

#[tokio::test]
async fn create_pipeline_split_across_command_and_send() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let pid = "E5F6A7B8-C9DA-4EBF-8012-4C5D6E7F8091";
    let args: &[(Option<&str>, &str)] = &[
        (Some("-Count"), "<Nil N=\"V\" />"),
        (None, "<I32 N=\"V\">2</I32>"),
    ];
    let msg = Message {
        destination: Destination::Server,
        message_type: MessageType::CreatePipeline,
        rpid: uuid(RPID),
        pid: uuid(pid),
        data: create_pipeline_xml(&[("Get-Thing", args)], true).into_bytes(),
    };
    let frags = fragment(900, &msg.encode(), 300);
    assert!(frags.len() > 3);
    // pypsrp's way: the first fragment in rsp:Arguments, the others by Send.
    c.command(pid, &b64(&frags[0])).await;
    for f in &frags[1..] {
        let r = c.send(Some(pid), f).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let msgs = c.drain(Some(pid), 0).await;
    let outputs = msgs
        .iter()
        .filter(|m| m.message_type == MessageType::PipelineOutput)
        .count();
    assert_eq!(
        outputs, 2,
        "-Count 2 as separate token and value binds like PowerShell"
    );
}

#[tokio::test]
async fn runspace_count_messages_and_declined_key_exchange() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let set = c.client_fragments(
        MessageType::SetMaxRunspaces,
        "",
        "<Obj RefId=\"0\"><MS><I32 N=\"MaxRunspaces\">5</I32><I64 N=\"ci\">1</I64></MS></Obj>",
    );
    let get = c.client_fragments(
        MessageType::GetAvailableRunspaces,
        "",
        "<Obj RefId=\"0\"><MS><I64 N=\"ci\">2</I64></MS></Obj>",
    );
    let r = c.send(None, &[set, get].concat()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let msgs = c.drain(None, 2).await;
    assert!(
        msgs.iter()
            .all(|m| m.message_type == MessageType::RunspaceAvailability)
    );
    assert_eq!(
        prop(&body_of(&msgs[0]), "SetMinMaxRunspacesResponse"),
        &Value::Bool(true)
    );
    assert_eq!(prop(&body_of(&msgs[0]), "ci").as_i64(), Some(1));
    assert_eq!(
        prop(&body_of(&msgs[1]), "SetMinMaxRunspacesResponse").as_i64(),
        Some(5)
    );
    assert_eq!(prop(&body_of(&msgs[1]), "ci").as_i64(), Some(2));

    let key = c.client_fragments(
        MessageType::PublicKey,
        "",
        "<Obj RefId=\"0\"><MS><S N=\"PublicKey\">BgIAAACkAABSU0ExAAgAAAEAAQA=</S></MS></Obj>",
    );
    c.send(None, &key).await;
    let msgs = c.drain(None, 1).await;
    assert_eq!(msgs[0].message_type, MessageType::RunspacePoolState);
    let state = body_of(&msgs[0]);
    assert_eq!(
        prop(&state, "RunspaceState").as_i64(),
        Some(5),
        "Broken, at once, with the reason"
    );
    let err = prop(&state, "ExceptionAsErrorRecord");
    assert!(prop(err, "ErrorCategory_Message").as_str().is_some());
    assert!(
        err.as_object()
            .and_then(|o| o.to_string.as_deref())
            .is_some_and(|t| t.contains("SecureString"))
    );
}

#[tokio::test]
async fn deleting_a_shell_ends_its_pipelines_and_pending_receives() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let pid = "F6A7B8C9-DAEB-4FC0-9123-5D6E7F8091A2";
    let frag = c.client_fragments(
        MessageType::CreatePipeline,
        pid,
        &create_pipeline_xml(&[("Wait-Long", &[])], true),
    );
    c.command(pid, &b64(&frag)).await;
    let _ = c.receive(Some(pid), "PT5S", 512_000).await; // "started"
    let ep = c.ep.clone();
    let pending = tokio::spawn(async move {
        let xml = envelope(
            wsman::ACTION_RECEIVE,
            Some(SHELL_ID),
            "<w:OperationTimeout>PT30S</w:OperationTimeout>",
            "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
            "uuid:EEEE",
        );
        let req = http::Request::post("/")
            .body(Bytes::from(xml))
            .expect("request");
        ep.handle("admin@contoso.onmicrosoft.com", (), req).await
    });
    tokio::task::yield_now().await;
    let r = c
        .post(envelope(
            wsman::ACTION_DELETE,
            Some(SHELL_ID),
            "",
            "",
            "uuid:FFFF",
        ))
        .await;
    assert_eq!(r.status, 200);
    let rsp = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("woken at once")
        .expect("task");
    assert_eq!(
        rsp.status(),
        500,
        "the pool Receive of a deleted shell is answered with a fault"
    );
    for _ in 0..100 {
        if c.exec.cancelled.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        c.exec.cancelled.load(Ordering::SeqCst),
        1,
        "the running command was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_rich_objects_through_full_envelopes() {
    let mut c = Client::new(Settings::default());
    open_pool(&mut c, false).await;
    let pid = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D";
    let args: &[(Option<&str>, &str)] = &[(Some("-Count:"), "<I32 N=\"V\">20000</I32>")];
    let frag = c.client_fragments(
        MessageType::CreatePipeline,
        pid,
        &create_pipeline_xml(&[("Get-Thing", args)], true),
    );
    c.command(pid, &b64(&frag)).await;
    let started = tokio::time::Instant::now();
    let msgs = c.drain(Some(pid), 0).await;
    let elapsed = started.elapsed();
    let outputs: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.message_type == MessageType::PipelineOutput)
        .collect();
    assert_eq!(outputs.len(), 20_000);
    let last = body_of(outputs[19_999]);
    assert_eq!(prop(&last, "Name").as_str(), Some("thing-19999"));
    assert_eq!(
        prop(&body_of(msgs.last().expect("state")), "PipelineState").as_i64(),
        Some(4)
    );
    eprintln!(
        "20,000 rich objects streamed and decoded client-side in {elapsed:?} ({:.0} objects/s, debug build)",
        20_000.0 / elapsed.as_secs_f64()
    );
}
