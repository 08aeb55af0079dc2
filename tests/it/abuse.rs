//! Issue 12 (and 11/14): what one authenticated user can make the remoting endpoint hold, sent
//! through the real listener in `rest` mode over TLS, scaled down from the measured rows:
//!
//! | row | shape | expected |
//! |---|---|---|
//! | 1 | creationXml / CREATE_PIPELINE holding one large string and thousands of `<Ref>`s to it | refused, saying the document decodes to more than the limit |
//! | 2 | unfinished PSRP messages (no end fragment) across many pipelines of one shell | `memory-budget` fault; deleting the shell gives every byte back |
//! | 3 | a shell opened for one tenant, then requests naming another (`DelegatedOrg`) | `w:AccessDenied` naming both tenants |
//! | 4 | sessions never closed, up to the quota | refused with how many are open and how to close them; a shell idle for the reclaim period is closed to make room |
//!
//! Each row also runs a second user's real pypsrp session and the admin liveness probe while
//! the hostile requests are served, and checks the endpoint's memory accounting (not RSS).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use exo_authproxy::bridge::{RestExecutor, RestSettings};
use exo_authproxy::listener::basic_auth::Credentials;
use exo_authproxy::remoting::executor::{
    CommandMetadata, ErrorRecord, InputStream, MetadataQuery, OutputSink, Pipeline, PipelineEnd,
};
use exo_authproxy::remoting::fragment::{Fragment, fragment};
use exo_authproxy::remoting::message::{Destination, Message, MessageType};
use exo_authproxy::remoting::{Endpoint, Executor, Settings, wsman};
use exo_authproxy::token::TokenEngine;
use exo_authproxy::{Listeners, Services};
use tokio::net::TcpListener;

use crate::remoting::{CREATION_XML, SHELL_ID, envelope};
use crate::support::harness::{Logs, PASSWORD, USER, admin_get, world_tenants};
use crate::support::python;

/// The second local user (same password), whose session must keep working.
const OTHER: &str = "other";

type RestEndpoint = Endpoint<RestExecutor<TokenEngine>>;

/// The sandbox world with the real `serve(...)` in rest mode, two local users and a rest
/// endpoint built with the test's [`Settings`] (so limits can be scaled down).
struct Proxy {
    world: exo_authproxy::sandbox::World,
    proxy: SocketAddr,
    admin: SocketAddr,
    url: String,
    cert: PathBuf,
    endpoint: Arc<RestEndpoint>,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    async fn start(settings: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let (_data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(20);
        let mut world = exo_authproxy::sandbox::World::start(
            dir.path(),
            exo_authproxy::sandbox::WorldOptions {
                mode: exo_authproxy::config::Mode::Rest,
                password: PASSWORD.into(),
                listen: proxy,
                tenants: world_tenants(),
                rps,
                adminapi: Some(adminapi),
                audit_file: false,
                extra_users: Vec::new(),
                compliance_admins: Vec::new(),
            },
        )
        .await
        .expect("sandbox world");
        let mut other = world.config.users[0].clone();
        other.name = OTHER.into();
        world.config.users.push(other);

        let tokens = Arc::new(TokenEngine::new(&world.config, &HashMap::new()).unwrap());
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(
                exo_authproxy::forward::client::client_tls(
                    world.config.exchange.ca_file.as_deref(),
                )
                .unwrap(),
            )
            .http1_only()
            .no_proxy()
            .build()
            .unwrap();
        let exchange = url::Url::parse(&world.config.exchange.endpoint).unwrap();
        let executor = RestExecutor::new(http, tokens.clone(), RestSettings::new(exchange));
        let endpoint = Arc::new(Endpoint::new(Arc::new(executor), settings));
        let prepared = exo_authproxy::Prepared::new(
            &world.config,
            Services {
                tokens,
                rest: Some(endpoint.clone()),
                metrics: Arc::new(exo_authproxy::metrics::Metrics::new()),
                audit: Default::default(),
                sessions: Default::default(),
            },
        )
        .unwrap();
        let cert = prepared.tls().expect("tls").cert_path().to_path_buf();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(exo_authproxy::serve_with_grace(
            prepared,
            Listeners {
                proxy: listener,
                admin: Some(admin_listener),
            },
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(exo_authproxy::forward::client::client_tls(Some(&cert)).unwrap())
            .no_proxy()
            .build()
            .unwrap();
        Self {
            world,
            proxy,
            admin,
            url: format!("https://127.0.0.1:{}/powershell-liveid", proxy.port()),
            cert,
            endpoint,
            client,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// POSTs an envelope as `user` with `query`: (status, body).
    async fn post(&self, user: &str, query: &str, body: String) -> (u16, String) {
        let url = if query.is_empty() {
            self.url.clone()
        } else {
            format!("{}?{query}", self.url)
        };
        let rsp = self
            .client
            .post(url)
            .header("content-type", "application/soap+xml;charset=UTF-8")
            .header("authorization", Credentials::encode(user, PASSWORD))
            .body(body)
            .send()
            .await
            .expect("request to the proxy");
        (rsp.status().as_u16(), rsp.text().await.unwrap())
    }

    /// A Create of shell `id` with `creation` (base64) as creationXml.
    async fn create(&self, user: &str, id: &str, creation: &str) -> (u16, String) {
        let body = format!(
            "<rsp:Shell ShellId=\"{id}\"><rsp:InputStreams>stdin pr</rsp:InputStreams>\
             <rsp:OutputStreams>stdout</rsp:OutputStreams>\
             <creationXml xmlns=\"http://schemas.microsoft.com/powershell\">{creation}</creationXml></rsp:Shell>"
        );
        let xml = envelope(wsman::ACTION_CREATE, None, "", &body, "uuid:C1");
        self.post(user, "", xml).await
    }

    /// A Command in shell `id` whose rsp:Arguments is `arguments` (base64).
    async fn command(
        &self,
        query: &str,
        id: &str,
        command: &str,
        arguments: &str,
    ) -> (u16, String) {
        let body = format!(
            "<rsp:CommandLine CommandId=\"{command}\"><rsp:Command>Invoke-Expression</rsp:Command>\
             <rsp:Arguments>{arguments}</rsp:Arguments></rsp:CommandLine>"
        );
        let xml = envelope(wsman::ACTION_COMMAND, Some(id), "", &body, "uuid:C2");
        self.post(USER, query, xml).await
    }

    async fn delete(&self, id: &str) -> (u16, String) {
        let xml = envelope(wsman::ACTION_DELETE, Some(id), "", "", "uuid:C3");
        self.post(USER, "", xml).await
    }

    /// The other user's whole pypsrp session (open, two commands, close).
    async fn other_users_session(&self) -> serde_json::Value {
        let env = vec![
            ("PROXY_HOST".into(), "127.0.0.1".into()),
            ("PROXY_PORT".into(), self.proxy.port().to_string()),
            ("PROXY_USER".into(), OTHER.into()),
            ("PROXY_PASSWORD".into(), PASSWORD.into()),
            ("PROXY_CA".into(), self.cert.display().to_string()),
            ("PROXY_QUERY".into(), String::new()),
            ("MAILBOXES".into(), "20".into()),
        ];
        let out = python::run_script("proxy_session.py", env).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pypsrp failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// The admin liveness probe, asked repeatedly while the hostile requests are served.
    async fn liveness_meanwhile(&self) {
        for _ in 0..10 {
            assert_eq!(admin_get(self.admin, "/healthz/liveness").await.0, 200);
            tokio::task::yield_now().await;
        }
    }

    /// The other user's session worked and the admin probe answers.
    async fn assert_others_served(&self, session: serde_json::Value) {
        assert_eq!(session["ok"], true, "{session}");
        assert_eq!(session["mailboxes"], 20, "{session}");
        assert_eq!(admin_get(self.admin, "/healthz/liveness").await.0, 200);
        assert_eq!(
            self.endpoint.memory_in_use(OTHER),
            0,
            "pypsrp closed its pool"
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = &self.world;
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One client→server PSRP message as fragments of at most 32 KiB.
fn client_message(
    object_id: u64,
    message_type: MessageType,
    pid: uuid::Uuid,
    data: &str,
) -> Vec<u8> {
    let msg = Message {
        destination: Destination::Server,
        message_type,
        rpid: uuid::Uuid::parse_str(SHELL_ID).unwrap(),
        pid,
        data: data.as_bytes().to_vec(),
    };
    fragment(object_id, &msg.encode(), 32 * 1024).concat()
}

/// CLIXML: one `len`-byte string and `copies` `<Ref>`s to the object holding it.
fn ref_copies(len: usize, copies: usize) -> String {
    let mut doc = format!(
        "<Obj RefId=\"0\"><MS><Obj N=\"big\" RefId=\"1\"><MS><S N=\"s\">{}</S></MS></Obj><Obj N=\"copies\" RefId=\"2\"><LST>",
        "x".repeat(len)
    );
    for _ in 0..copies {
        doc.push_str("<Ref RefId=\"1\" />");
    }
    doc.push_str("</LST></Obj></MS></Obj>");
    doc
}

fn fault_text(body: &str) -> String {
    let start = body
        .find("<f:Message>")
        .map_or(0, |i| i + "<f:Message>".len());
    let end = body[start..]
        .find("</f:Message>")
        .map_or(body.len(), |i| start + i);
    body[start..end].to_owned()
}

/// Row 1: creationXml and CREATE_PIPELINE arguments holding one 100 KiB string and 2,000
/// `<Ref>`s to it (200 MB decoded) are refused at once; memory goes back to zero; another
/// user's session and liveness are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_copies_are_refused_issue_12_row_1() {
    let p = Proxy::start(Settings::default()).await;
    let bomb = ref_copies(100 * 1024, 2_000);
    let hostile = async {
        // In creationXml (SESSION_CAPABILITY), several at once.
        let creation = b64(&client_message(
            1,
            MessageType::SessionCapability,
            uuid::Uuid::nil(),
            &bomb,
        ));
        let ids = [
            "A0000000-0000-4000-8000-000000000001",
            "A0000000-0000-4000-8000-000000000002",
            "A0000000-0000-4000-8000-000000000003",
        ];
        let replies =
            futures_util::future::join_all(ids.iter().map(|id| p.create(USER, id, &creation)))
                .await;
        for (status, body) in replies {
            assert_eq!(status, 500, "{body}");
            let text = fault_text(&body);
            assert!(
                text.contains("decodes to more than 16777216 bytes"),
                "{text}"
            );
            assert!(
                text.contains("each &lt;Ref&gt; copy counts in full")
                    || text.contains("each <Ref> copy counts in full"),
                "{text}"
            );
        }
        assert_eq!(p.endpoint.shell_count(), 0);
        // In CREATE_PIPELINE arguments of an open shell: the command fails, saying why.
        let (status, body) = p.create(USER, SHELL_ID, CREATION_XML.trim()).await;
        assert_eq!(status, 200, "{body}");
        let pid = uuid::Uuid::new_v4();
        let args = b64(&client_message(10, MessageType::CreatePipeline, pid, &bomb));
        let (status, body) = p
            .command("", SHELL_ID, "B0000000-0000-4000-8000-000000000001", &args)
            .await;
        assert_eq!(status, 200, "{body}");
        let receive = envelope(
            wsman::ACTION_RECEIVE,
            Some(SHELL_ID),
            "<w:OperationTimeout>PT20S</w:OperationTimeout>",
            "<rsp:Receive><rsp:DesiredStream CommandId=\"B0000000-0000-4000-8000-000000000001\">stdout</rsp:DesiredStream></rsp:Receive>",
            "uuid:R1",
        );
        let (status, body) = p.post(USER, "", receive).await;
        assert_eq!(status, 200, "{body}");
        let streams: Vec<u8> = body
            .split("<rsp:Stream ")
            .skip(1)
            .filter_map(|s| s.split('>').nth(1)?.split('<').next())
            .flat_map(|d| base64::engine::general_purpose::STANDARD.decode(d).unwrap())
            .collect();
        let text = String::from_utf8_lossy(&streams);
        assert!(
            text.contains("decodes to more than 16777216 bytes"),
            "{text}"
        );
        assert!(body.contains("CommandState/Done"), "{body}");
        assert_eq!(p.delete(SHELL_ID).await.0, 200);
        assert_eq!(p.endpoint.memory_in_use(USER), 0);
    };
    let (_, session, ()) = tokio::join!(hostile, p.other_users_session(), p.liveness_meanwhile());
    p.assert_others_served(session).await;
}

/// Row 2: fragments that never end, eight per command across many commands of one shell, are
/// charged to the user's budget (8 MiB here) and refused past it with a fault that says so;
/// deleting the shell releases every byte. Meanwhile another user's session is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_hit_the_memory_budget_and_delete_frees_it_issue_12_row_2() {
    let p = Proxy::start(Settings {
        memory_per_user: 8 * 1024 * 1024,
        ..Settings::default()
    })
    .await;
    let hostile = async {
        let (status, body) = p.create(USER, SHELL_ID, CREATION_XML.trim()).await;
        assert_eq!(status, 200, "{body}");
        let base = p.endpoint.memory_in_use(USER);
        assert!(base > 0 && base < 64 * 1024, "{base}");
        let blob = vec![0x5a; 64 * 1024];
        let mut refused = None;
        for command in 0..64u64 {
            let mut args = Vec::new();
            for object in 0..8 {
                Fragment {
                    object_id: 100 + command * 8 + object,
                    fragment_id: 0,
                    start: true,
                    end: false,
                    blob: &blob,
                }
                .encode_into(&mut args);
            }
            let cid = format!("C0000000-0000-4000-8000-{command:012}");
            let (status, body) = p.command("", SHELL_ID, &cid, &b64(&args)).await;
            if status != 200 {
                refused = Some((command, body));
                break;
            }
        }
        let (commands, body) = refused.expect("the budget refuses before 64 commands (32 MiB)");
        assert!(
            (14..=16).contains(&commands),
            "refused after {commands} commands"
        );
        let text = fault_text(&body);
        assert!(
            text.contains("more than the 8 MiB the proxy keeps per user"),
            "{text}"
        );
        assert!(text.contains("a half-received PSRP message"), "{text}");
        assert!(text.contains("Get-PSSession | Remove-PSSession"), "{text}");
        let held = p.endpoint.memory_in_use(USER);
        assert!(held > 7 * 1024 * 1024 && held <= 8 * 1024 * 1024, "{held}");
        // The user's other requests are refused too, until memory is given back ...
        let (status, _) = p
            .create(
                USER,
                "D0000000-0000-4000-8000-000000000001",
                CREATION_XML.trim(),
            )
            .await;
        assert_eq!(status, 200, "a shell costs 16 KiB: still fits");
        assert_eq!(
            p.delete("D0000000-0000-4000-8000-000000000001").await.0,
            200
        );
        // ... and deleting the shell gives all of it back.
        assert_eq!(p.delete(SHELL_ID).await.0, 200);
        assert_eq!(p.endpoint.memory_in_use(USER), 0);
        assert_eq!(p.endpoint.shell_count(), 0);
    };
    let (_, session, ()) = tokio::join!(hostile, p.other_users_session(), p.liveness_meanwhile());
    p.assert_others_served(session).await;
}

/// Row 3: a shell opened for contoso serves no request naming fabrikam (Command, Send,
/// Delete): one session never mixes tenants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_serves_only_the_tenant_it_was_opened_for_issue_12_row_3() {
    let p = Proxy::start(Settings::default()).await;
    let (status, body) = p.create(USER, SHELL_ID, CREATION_XML.trim()).await;
    assert_eq!(status, 200, "{body}");
    let fabrikam = "DelegatedOrg=fabrikam.onmicrosoft.com";
    let args = b64(&client_message(
        10,
        MessageType::EndOfPipelineInput,
        uuid::Uuid::new_v4(),
        "",
    ));
    let (status, body) = p
        .command(
            fabrikam,
            SHELL_ID,
            "E0000000-0000-4000-8000-000000000001",
            &args,
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("w:AccessDenied"), "{body}");
    let text = fault_text(&body);
    assert!(
        text.contains(&format!(
            "shell {SHELL_ID} was opened for tenant contoso.onmicrosoft.com; this request is for tenant fabrikam.onmicrosoft.com"
        )),
        "{text}"
    );
    assert!(
        text.contains("DelegatedOrg=fabrikam.onmicrosoft.com"),
        "{text}"
    );
    let send = envelope(
        wsman::ACTION_SEND,
        Some(SHELL_ID),
        "",
        &format!("<rsp:Send><rsp:Stream Name=\"stdin\">{args}</rsp:Stream></rsp:Send>"),
        "uuid:S1",
    );
    let (status, body) = p.post(USER, fabrikam, send).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("w:AccessDenied"), "{body}");
    let delete = envelope(wsman::ACTION_DELETE, Some(SHELL_ID), "", "", "uuid:D1");
    assert_eq!(p.post(USER, fabrikam, delete).await.0, 500);
    // The same tenant, named explicitly, is the same caller.
    let (status, body) = p
        .command(
            "DelegatedOrg=contoso.onmicrosoft.com",
            SHELL_ID,
            "E0000000-0000-4000-8000-000000000002",
            &args,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Another user does not see the shell at all.
    let delete = envelope(wsman::ACTION_DELETE, Some(SHELL_ID), "", "", "uuid:D2");
    let (status, body) = p.post(OTHER, "", delete).await;
    assert_eq!(status, 500);
    assert!(body.contains("w:InvalidSelectors"), "{body}");
    assert_eq!(p.delete(SHELL_ID).await.0, 200);
    assert_eq!(p.endpoint.memory_in_use(USER), 0);
}

/// Row 4 through the listener: at the quota a new session is refused with the count and the
/// way out, while the other user is unaffected; with a shell idle for the reclaim period, the
/// new session is opened in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_left_open_are_refused_with_the_way_out_issue_12_row_4() {
    let p = Proxy::start(Settings {
        max_shells_per_owner: 3,
        ..Settings::default()
    })
    .await;
    for i in 1..=3 {
        let (status, body) = p
            .create(
                USER,
                &format!("F0000000-0000-4000-8000-00000000000{i}"),
                CREATION_XML.trim(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = p
        .create(
            USER,
            "F0000000-0000-4000-8000-000000000004",
            CREATION_XML.trim(),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("w:QuotaLimit"), "{body}");
    let text = fault_text(&body);
    assert!(
        text.contains("user reporting already has 3 open sessions"),
        "{text}"
    );
    assert!(text.contains("Get-PSSession | Remove-PSSession"), "{text}");
    let session = p.other_users_session().await;
    p.assert_others_served(session).await;
    assert_eq!(p.endpoint.shell_count(), 3);
}

/// An executor with nothing to run: the quota tests only open and close shells.
struct Idle;

impl Executor for Idle {
    type Caller = ();

    async fn run(&self, _: &(), _: Pipeline, _: InputStream, _: OutputSink) -> PipelineEnd {
        PipelineEnd::Completed
    }

    async fn command_metadata(
        &self,
        _: &(),
        _: MetadataQuery,
    ) -> Result<Vec<CommandMetadata>, ErrorRecord> {
        Ok(Vec::new())
    }
}

async fn handle(ep: &Endpoint<Idle>, owner: &str, xml: String) -> (u16, String) {
    let req = http::Request::post("/").body(Bytes::from(xml)).unwrap();
    let rsp = ep.handle(owner, (), req).await;
    let code = rsp.extensions().get::<wsman::FaultCode>().map(|c| c.0);
    let status = rsp.status().as_u16();
    let body = String::from_utf8_lossy(rsp.body()).into_owned();
    assert_eq!(
        status == 500,
        code.is_some(),
        "every fault carries its code: {body}"
    );
    (status, format!("{}|{body}", code.unwrap_or("")))
}

fn create_xml(id: &str) -> String {
    let body = format!(
        "<rsp:Shell ShellId=\"{id}\"><creationXml xmlns=\"http://schemas.microsoft.com/powershell\">{}</creationXml></rsp:Shell>",
        CREATION_XML.trim()
    );
    envelope(wsman::ACTION_CREATE, None, "", &body, "uuid:Q")
}

/// Row 4, the reclaim rule (paused time, no sockets): a script that crashed 16 times without
/// Remove-PSSession used to lock its user out for the 15-minute idle timeout. A session idle
/// for two minutes is now closed (and audited as closed) to make room; one in use is not.
#[test]
fn the_longest_idle_session_is_reclaimed_at_the_quota_issue_12_row_4() {
    let (logs, _guard) = Logs::capture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        // The audit trail's session registry, told of each opening as the listener does.
        let sessions = Arc::new(exo_authproxy::audit::sessions::SessionLog::default());
        let opened = |id: &str| {
            sessions.opened(&exo_authproxy::audit::sessions::Opened {
                session: id,
                user: USER,
                tenant: "contoso",
                client: std::net::IpAddr::from([127, 0, 0, 1]),
                mode: "rest",
                endpoint: "exchange",
                client_kind: "pypsrp",
                client_version: None,
            });
        };
        let ep = Endpoint::new(
            Arc::new(Idle),
            Settings {
                max_shells_per_owner: 2,
                ..Settings::default()
            },
        )
        .with_sessions(sessions.clone(), "exchange");
        let ids = [
            "10000000-0000-4000-8000-000000000001",
            "10000000-0000-4000-8000-000000000002",
            "10000000-0000-4000-8000-000000000003",
        ];
        for id in ids {
            opened(id);
        }
        assert_eq!(handle(&ep, USER, create_xml(ids[0])).await.0, 200);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(handle(&ep, USER, create_xml(ids[1])).await.0, 200);
        // Both in use recently: refused, with the count and the way out.
        let (status, body) = handle(&ep, USER, create_xml(ids[2])).await;
        assert_eq!(status, 500);
        assert!(body.starts_with("shell-quota|"), "{body}");
        assert!(body.contains("already has 2 open sessions"), "{body}");
        assert!(body.contains("Get-PSSession | Remove-PSSession"), "{body}");
        // Another owner is not affected.
        assert_eq!(
            handle(
                &ep,
                OTHER,
                create_xml("20000000-0000-4000-8000-000000000001")
            )
            .await
            .0,
            200
        );
        // Two minutes later the first is idle long enough and is closed in favour of the new.
        tokio::time::advance(Duration::from_secs(100)).await;
        let (status, body) = handle(&ep, USER, create_xml(ids[2])).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ep.shell_count(), 3);
        let gone = envelope(wsman::ACTION_DELETE, Some(ids[0]), "", "", "uuid:G");
        let (status, body) = handle(&ep, USER, gone).await;
        assert_eq!(status, 500);
        assert!(body.starts_with("unknown-shell|"), "{body}");
        let kept = envelope(wsman::ACTION_DELETE, Some(ids[1]), "", "", "uuid:K");
        assert_eq!(handle(&ep, USER, kept).await.0, 200);
        let before = ep.memory_in_use(USER);
        assert!(before > 0);
        let last = envelope(wsman::ACTION_DELETE, Some(ids[2]), "", "", "uuid:L");
        assert_eq!(handle(&ep, USER, last).await.0, 200);
        assert_eq!(ep.memory_in_use(USER), 0);
    });
    let text = logs.text();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(exo_authproxy::audit::TARGET) && l.contains("session-closed"))
        .collect();
    assert_eq!(audit.len(), 1, "{}", audit.join("\n"));
    for field in [
        "event=\"session-closed\"",
        "reason=\"reclaimed\"",
        "user=\"reporting\"",
        "session=\"10000000-0000-4000-8000-000000000001\"",
        "duration_ms=130000",
    ] {
        assert!(audit[0].contains(field), "{field} missing: {}", audit[0]);
    }
}

/// Issue 14: pypsrp sends `<wsa:Action s:mustUnderstand="true">`; the listener now recognises
/// its Create and Delete, so the session is audited as opened and closed (rest mode).
#[test]
fn pypsrp_sessions_are_audited_as_opened_and_closed_issue_14() {
    let (logs, _guard) = Logs::capture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let p = Proxy::start(Settings::default()).await;
        let session = p.other_users_session().await;
        assert_eq!(session["ok"], true, "{session}");
    });
    let text = logs.text();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(exo_authproxy::audit::TARGET) && l.contains("event=\"session-"))
        .collect();
    assert_eq!(audit.len(), 2, "opened and closed:\n{}", audit.join("\n"));
    assert!(
        audit[0].contains("event=\"session-opened\""),
        "{}",
        audit[0]
    );
    assert!(
        audit[1].contains("event=\"session-closed\""),
        "{}",
        audit[1]
    );
    for line in &audit {
        for field in ["user=\"other\"", "tenant=contoso", "mode=\"rest\""] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    assert!(
        !text.contains("action=\"-\""),
        "every request's action is recognised:\n{text}"
    );
}
