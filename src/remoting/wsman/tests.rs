//! Unit tests for envelope parsing and response building, with real clients' envelopes.

use std::time::Duration;

use super::*;

const CREATE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
    xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
    xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
    xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">
  <s:Header>
    <a:To>https://proxy.example.com/powershell-liveid/</a:To>
    <w:ResourceURI s:mustUnderstand="true">http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI>
    <a:ReplyTo><a:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>
    <a:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action>
    <w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize>
    <a:MessageID>uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B</a:MessageID>
    <w:Locale xml:lang="en-US" s:mustUnderstand="false" />
    <w:OptionSet xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" s:mustUnderstand="true">
      <w:Option Name="protocolversion" MustComply="true">2.3</w:Option>
    </w:OptionSet>
    <w:OperationTimeout>PT180.000S</w:OperationTimeout>
    <rsp:CompressionType s:mustUnderstand="true" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">xpress</rsp:CompressionType>
  </s:Header>
  <s:Body>
    <rsp:Shell xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
               ShellId="1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B">
      <rsp:InputStreams>stdin pr</rsp:InputStreams>
      <rsp:OutputStreams>stdout</rsp:OutputStreams>
      <creationXml xmlns="http://schemas.microsoft.com/powershell">AAAA</creationXml>
    </rsp:Shell>
  </s:Body>
</s:Envelope>"#;

#[test]
fn parses_windows_create() {
    let r = parse_request(CREATE.as_bytes(), 1 << 20).unwrap();
    assert_eq!(r.action, ACTION_CREATE);
    assert_eq!(
        r.message_id.as_deref(),
        Some("uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B")
    );
    assert_eq!(r.max_envelope_size, Some(512_000));
    assert_eq!(r.operation_timeout, Some(Duration::from_secs(180)));
    assert_eq!(r.compression_type.as_deref(), Some("xpress"));
    assert_eq!(
        r.options,
        vec![("protocolversion".to_owned(), "2.3".to_owned())]
    );
    assert_eq!(r.reply_to.as_deref(), Some(ANONYMOUS));
    let Body::Shell(s) = r.body else {
        panic!("not a shell body")
    };
    assert_eq!(
        s.shell_id.as_deref(),
        Some("1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B")
    );
    assert_eq!(s.creation_xml.as_deref(), Some("AAAA"));
    assert_eq!(s.input_streams.as_deref(), Some("stdin pr"));
}

#[test]
fn other_prefixes_same_namespaces() {
    let x = CREATE
        .replace("<s:", "<env:")
        .replace("</s:", "</env:")
        .replace(" s:mustUnderstand", " env:mustUnderstand")
        .replace("xmlns:s=", "xmlns:env=")
        .replace("<a:", "<wsa:")
        .replace("</a:", "</wsa:")
        .replace("xmlns:a=", "xmlns:wsa=");
    let r = parse_request(x.as_bytes(), 1 << 20).unwrap();
    assert_eq!(r.action, ACTION_CREATE);
}

#[test]
fn wrong_namespace_is_not_read() {
    let x = CREATE.replace(
        "xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\"",
        "xmlns:a=\"urn:other\"",
    );
    assert_eq!(
        parse_request(x.as_bytes(), 1 << 20),
        Err(ParseError::NoAction)
    );
}

#[test]
fn refuses_oversize_malformed_and_deep() {
    assert!(matches!(
        parse_request(CREATE.as_bytes(), 100),
        Err(ParseError::TooLarge { .. })
    ));
    assert!(matches!(
        parse_request(b"<s:Envelope", 1000),
        Err(ParseError::Malformed(_))
    ));
    assert!(matches!(
        parse_request(b"", 1000),
        Err(ParseError::Malformed(_))
    ));
    assert!(matches!(
        parse_request(b"<x/>", 1000),
        Err(ParseError::NotEnvelope(_))
    ));
    let cut = &CREATE[..CREATE.len() - 20];
    assert!(matches!(
        parse_request(cut.as_bytes(), 1 << 20),
        Err(ParseError::Malformed(_))
    ));
    let deep = format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP}\">{}{}</s:Envelope>",
        "<a>".repeat(40),
        "</a>".repeat(40)
    );
    assert_eq!(
        parse_request(deep.as_bytes(), 1 << 20),
        Err(ParseError::TooDeep)
    );
    let mismatched = format!("<s:Envelope xmlns:s=\"{NS_SOAP}\"><a></b></s:Envelope>");
    assert!(matches!(
        parse_request(mismatched.as_bytes(), 1 << 20),
        Err(ParseError::Malformed(_))
    ));
}

#[test]
fn parses_send_receive_signal() {
    let env = |body: &str| {
        format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\" \
                 xmlns:rsp=\"{NS_SHELL}\"><s:Header><a:Action>{ACTION_SEND}</a:Action>\
                 <w:SelectorSet><w:Selector Name=\"ShellId\">S1</w:Selector></w:SelectorSet>\
                 </s:Header><s:Body>{body}</s:Body></s:Envelope>"
        )
    };
    let r = parse_request(
        env(
            "<rsp:Send><rsp:Stream Name=\"stdin\" CommandId=\"C1\" End=\"true\">QUJD</rsp:Stream>\
                 <rsp:Stream Name=\"pr\">REVG</rsp:Stream></rsp:Send>",
        )
        .as_bytes(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(r.shell_id.as_deref(), Some("S1"));
    assert_eq!(
        r.body,
        Body::Send(vec![
            SendStream {
                name: "stdin".into(),
                command_id: Some("C1".into()),
                end: true,
                data: "QUJD".into()
            },
            SendStream {
                name: "pr".into(),
                command_id: None,
                end: false,
                data: "REVG".into()
            },
        ])
    );
    let r = parse_request(
        env("<rsp:Receive SequenceId=\"0\"><rsp:DesiredStream CommandId=\"C1\">stdout</rsp:DesiredStream></rsp:Receive>").as_bytes(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        r.body,
        Body::Receive(ReceiveBody {
            desired_stream: Some("stdout".into()),
            command_id: Some("C1".into())
        })
    );
    let r = parse_request(
        env("<rsp:Signal CommandId=\"C1\"><rsp:Code>powershell/signal/crtl_c</rsp:Code></rsp:Signal>").as_bytes(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        r.body,
        Body::Signal(SignalBody {
            command_id: Some("C1".into()),
            code: "powershell/signal/crtl_c".into()
        })
    );
    let r = parse_request(env("<rsp:Disconnect/>").as_bytes(), 1 << 20).unwrap();
    assert_eq!(r.body, Body::Other("Disconnect".into()));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
    assert_eq!(parse_duration("PT180.000S"), Some(Duration::from_secs(180)));
    assert_eq!(parse_duration("P0DT0H3M0S"), Some(Duration::from_secs(180)));
    assert_eq!(parse_duration("PT0.5S"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("PT1M30S"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("P1D"), Some(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("-PT5S"), None);
    assert_eq!(parse_duration("PT5"), None);
    assert_eq!(parse_duration("20"), None);
    assert_eq!(parse_duration("PTxS"), None);
    assert_eq!(
        format_duration(Duration::from_millis(900_500)),
        "PT900.500S"
    );
}

#[test]
fn fault_has_relates_to_code_and_text() {
    let rsp = fault_response(&Fault::unknown_shell("ABC<"), Some("uuid:1"));
    assert_eq!(rsp.status(), 500);
    let body = std::str::from_utf8(rsp.body()).unwrap();
    assert!(body.contains("<a:RelatesTo>uuid:1</a:RelatesTo>"));
    assert!(body.contains("Code=\"2150858843\""));
    assert!(body.contains("w:InvalidSelectors"));
    assert!(body.contains("ABC&lt;"));
    // The fault itself is a parseable envelope.
    let parsed = parse_request(rsp.body(), 1 << 20).unwrap();
    assert_eq!(parsed.action, ACTION_FAULT);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let _ = parse_request(&bytes, 4096);
    }

    #[test]
    fn mutated_envelopes_never_panic(cut in 0usize..2000, pos in 0usize..2000, byte in proptest::num::u8::ANY) {
        let mut b = CREATE.as_bytes().to_vec();
        let pos = pos % b.len();
        b[pos] = byte;
        b.truncate(cut.max(1).min(b.len()));
        if let Ok(r) = parse_request(&b, 1 << 20) {
            let _ = fault_response(&Fault::unknown_shell(r.shell_id.as_deref().unwrap_or("")), r.message_id.as_deref());
        }
    }
}

/// pypsrp 0.9's envelope shape: `wsa:`/`wsman:`/`wsmv:` prefixes, `s:mustUnderstand` on Action.
const PYPSRP_DELETE: &str = r#"<s:Envelope xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:wsmv="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"><s:Header><wsa:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete</wsa:Action><wsmv:DataLocale s:mustUnderstand="false" xml:lang="en-US" /><wsman:Locale s:mustUnderstand="false" xml:lang="en-US" /><wsman:MaxEnvelopeSize s:mustUnderstand="true">512000</wsman:MaxEnvelopeSize><wsa:MessageID>uuid:8F1C3B7E-7B67-4B5B-9C46-5C2B4A3F2E11</wsa:MessageID><wsman:OperationTimeout>PT20S</wsman:OperationTimeout><wsa:ReplyTo><wsa:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address></wsa:ReplyTo><wsman:ResourceURI s:mustUnderstand="true">http://schemas.microsoft.com/powershell/Microsoft.Exchange</wsman:ResourceURI><wsmv:SessionId s:mustUnderstand="false">uuid:1E2D3C4B-5A69-4877-8695-A4B3C2D1E0F9</wsmv:SessionId><wsa:To>https://127.0.0.1:8443/powershell-liveid</wsa:To><wsman:SelectorSet><wsman:Selector Name="ShellId">1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B</wsman:Selector></wsman:SelectorSet></s:Header><s:Body /></s:Envelope>"#;

/// Issue 14: `Action>` sniffing missed `<a:Action s:mustUnderstand="true">`, so every request
/// logged `action="-"` and no session was audited.
#[test]
fn peek_reads_windows_and_pypsrp_headers_issue_14() {
    let h = peek(CREATE.as_bytes());
    assert_eq!(h.operation(), "Create");
    assert_eq!(h.action.as_deref(), Some(ACTION_CREATE));
    assert_eq!(
        h.message_id.as_deref(),
        Some("uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B")
    );
    assert_eq!(h.operation_timeout, Some(Duration::from_secs(180)));
    assert_eq!(h.max_envelope_size, Some(512_000));
    assert_eq!(action_name(CREATE.as_bytes()), "Create");

    let h = peek(PYPSRP_DELETE.as_bytes());
    assert_eq!(h.operation(), "Delete");
    assert_eq!(
        h.shell_id.as_deref(),
        Some("1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B")
    );
    assert_eq!(h.operation_timeout, Some(Duration::from_secs(20)));
    assert_eq!(action_name(PYPSRP_DELETE.as_bytes()), "Delete");
    for (action, name) in [
        (ACTION_COMMAND, "Command"),
        (ACTION_SEND, "Send"),
        (ACTION_RECEIVE, "Receive"),
        (ACTION_SIGNAL, "Signal"),
    ] {
        let env = PYPSRP_DELETE.replace(ACTION_DELETE, action);
        assert_eq!(action_name(env.as_bytes()), name);
    }
}

#[test]
fn peek_reads_only_the_header_and_never_fails() {
    // A MessageID-looking text in the body is not the header's.
    let env = CREATE.replace(
        "<a:MessageID>uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B</a:MessageID>",
        "",
    );
    let env = env.replace("AAAA", "<a:MessageID>uuid:forged</a:MessageID>");
    assert_eq!(peek(env.as_bytes()).message_id, None);
    // The body is not read at all: an envelope cut in the body still has its header.
    let cut = &CREATE.as_bytes()[..CREATE.find("<rsp:InputStreams>").unwrap()];
    assert_eq!(peek(cut).operation(), "Create");
    // Unprefixed default namespace.
    let plain = r#"<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header><Action xmlns="http://schemas.xmlsoap.org/ws/2004/08/addressing">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive</Action></Header></Envelope>"#;
    assert_eq!(action_name(plain.as_bytes()), "Receive");
    // Garbage, the wrong namespace, an Action past the byte cap.
    assert_eq!(peek(b"garbage"), Head::default());
    let wrong_ns = CREATE.replace(NS_ADDRESSING, "urn:not-addressing");
    assert_eq!(action_name(wrong_ns.as_bytes()), "-");
    let padded = CREATE.replace(
        "<a:To>",
        &format!("<!--{}--><a:To>", "x".repeat(PEEK_LIMIT)),
    );
    assert_eq!(action_name(padded.as_bytes()), "-");
}

/// Fuzz finding (`fuzz/` target `wsman`): a second `s:Header` after `s:Body` was read by
/// `parse_request` but not by `peek`, so the listener routed and audited one shell while the
/// endpoint acted on another. Such an envelope is refused.
#[test]
fn fuzz_wsman_second_header_after_body_is_refused() {
    let second = r#"</s:Body><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete</a:Action><w:SelectorSet><w:Selector Name="ShellId">forged</w:Selector></w:SelectorSet></s:Header><s:Body/>"#;
    let env = CREATE.replace("</s:Body>", second);
    assert!(matches!(
        parse_request(env.as_bytes(), 1 << 20),
        Err(ParseError::Malformed(m)) if m.contains("s:Header out of place")
    ));
    assert_eq!(peek(env.as_bytes()).operation(), "Create");
    // A second Body, and a Body before the Header, likewise.
    let two_bodies = CREATE.replace("</s:Body>", "</s:Body><s:Body/>");
    assert!(parse_request(two_bodies.as_bytes(), 1 << 20).is_err());
    let header_last = CREATE
        .replace("<s:Header>", "<s:Body/><s:Header>")
        .replacen("<s:Body>", "<s:Bodx>", 1)
        .replacen("</s:Body>", "</s:Bodx>", 1);
    assert!(parse_request(header_last.as_bytes(), 1 << 20).is_err());
    // The one-Header-one-Body envelope still parses.
    assert!(parse_request(CREATE.as_bytes(), 1 << 20).is_ok());
}

proptest::proptest! {
    #[test]
    fn peek_never_panics(cut in 0usize..3000, pos in 0usize..3000, byte in proptest::num::u8::ANY) {
        let mut b = PYPSRP_DELETE.as_bytes().to_vec();
        let pos = pos % b.len();
        b[pos] = byte;
        b.truncate(cut.min(b.len()));
        let _ = peek(&b).operation();
    }
}
