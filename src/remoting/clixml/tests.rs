use proptest::prelude::*;

use super::*;

fn dt(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

#[test]
fn primitives_encode_like_windows() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::Nil, "<Nil />"),
        (Value::from("a<b>&c"), "<S>a&lt;b&gt;&amp;c</S>"),
        (Value::from(""), "<S></S>"),
        (Value::Bool(true), "<B>true</B>"),
        (Value::Char(97), "<C>97</C>"),
        (Value::I8(-5), "<SB>-5</SB>"),
        (Value::U8(255), "<By>255</By>"),
        (Value::I16(-300), "<I16>-300</I16>"),
        (Value::U16(65535), "<U16>65535</U16>"),
        (Value::I32(i32::MIN), "<I32>-2147483648</I32>"),
        (Value::U32(u32::MAX), "<U32>4294967295</U32>"),
        (Value::I64(i64::MIN), "<I64>-9223372036854775808</I64>"),
        (Value::U64(u64::MAX), "<U64>18446744073709551615</U64>"),
        (Value::Float(1.5), "<Sg>1.5</Sg>"),
        (Value::Double(1e20), "<Db>1E+20</Db>"),
        (
            Value::Decimal("79228162514264337593543950335".into()),
            "<D>79228162514264337593543950335</D>",
        ),
        (
            Value::DateTime(dt("2024-05-21T14:03:11.1234567+02:00")),
            "<DT>2024-05-21T14:03:11.1234567+02:00</DT>",
        ),
        (
            Value::UtcDateTime(dt("2024-04-10T08:56:22Z").to_utc()),
            "<DT>2024-04-10T08:56:22.0000000Z</DT>",
        ),
        (Value::Duration(90_269_026), "<TS>PT9.0269026S</TS>"),
        (
            Value::Guid("8C2F1A5E-6B1D-4F0E-9A77-2D3C4B5A6F70".parse().unwrap()),
            "<G>8c2f1a5e-6b1d-4f0e-9a77-2d3c4b5a6f70</G>",
        ),
        (Value::Bytes(vec![1, 2, 3, 255]), "<BA>AQID/w==</BA>"),
        (
            Value::Uri("https://x/?a=1&b=2".into()),
            "<URI>https://x/?a=1&amp;b=2</URI>",
        ),
        (
            Value::Version("5.1.17763.6414".into()),
            "<Version>5.1.17763.6414</Version>",
        ),
        (Value::XmlDocument("<a/>".into()), "<XD>&lt;a/&gt;</XD>"),
        (Value::ScriptBlock("gci\n".into()), "<SBK>gci_x000A_</SBK>"),
    ];
    for (value, xml) in cases {
        assert_eq!(to_xml(&value), xml);
        assert_eq!(from_xml(xml).unwrap(), value, "{xml}");
    }
}

#[test]
fn text_and_elements_read_names_and_lists_as_powershell_enumerates_them() {
    assert_eq!(Value::from("Name").as_text(), Some("Name"));
    assert_eq!(
        Object::new(["System.String"])
            .with_primitive("Name")
            .into_value()
            .as_text(),
        Some("Name")
    );
    let enum_obj = Value::enum_of("System.Management.Automation.ActionPreference", "Stop", 1);
    assert_eq!(enum_obj.as_text(), Some("Stop"));
    assert_eq!(Value::Version("5.1".into()).as_text(), None);
    assert_eq!(Value::Version("5.1".into()).as_str(), Some("5.1"));

    assert!(Value::Nil.elements().is_empty());
    assert_eq!(Value::I32(3).elements(), vec![&Value::I32(3)]);
    let list = Value::string_array(["a", "b"]);
    assert_eq!(list.elements(), vec![&Value::from("a"), &Value::from("b")]);
    let table = Value::hashtable([("k", Value::I32(1))]);
    assert_eq!(table.elements(), vec![&table]);
}

#[test]
fn objects_number_refids_and_reuse_type_names() {
    let inner = || Value::array_list(["a", "b"]);
    let value = Object::new(["My.Type", "System.Object"])
        .with_to_string("me")
        .with_adapted("Name", "x")
        .with_adapted("List", inner())
        .with_adapted("Empty", Value::array_list(Vec::<Value>::new()))
        .with_property("Note_x", inner())
        .with_property("Map", Value::hashtable([("k", 1)]))
        .into_value();
    let xml = to_xml(&value);
    assert_eq!(
        xml,
        "<Obj RefId=\"0\"><TN RefId=\"0\"><T>My.Type</T><T>System.Object</T></TN><ToString>me</ToString>\
         <Props><S N=\"Name\">x</S><Obj N=\"List\" RefId=\"1\"><TN RefId=\"1\"><T>System.Collections.ArrayList</T>\
         <T>System.Object</T></TN><LST><S>a</S><S>b</S></LST></Obj><Obj N=\"Empty\" RefId=\"2\"><TNRef RefId=\"1\" />\
         <LST /></Obj></Props><MS><Obj N=\"Note_x005F_x\" RefId=\"3\"><TNRef RefId=\"1\" /><LST><S>a</S><S>b</S></LST>\
         </Obj><Obj N=\"Map\" RefId=\"4\"><TN RefId=\"2\"><T>System.Collections.Hashtable</T><T>System.Object</T></TN>\
         <DCT><En><S N=\"Key\">k</S><I32 N=\"Value\">1</I32></En></DCT></Obj></MS></Obj>"
    );
    assert_eq!(from_xml(&xml).unwrap(), value);
    // Every document restarts at 0: encoding one object never depends on another.
    assert_eq!(to_xml(&value), xml);
}

#[test]
fn more_than_eight_type_lists_spill_and_still_dedupe() {
    let mut obj = Object::new(["Root"]);
    for i in 0..12 {
        obj.push_property(format!("a{i}"), Object::new([format!("T{i}")]));
        obj.push_property(format!("b{i}"), Object::new([format!("T{i}")]));
    }
    let xml = to_xml(&obj.clone().into_value());
    assert!(xml.contains("<TN RefId=\"12\"><T>T11</T></TN>"));
    assert!(xml.contains("<TNRef RefId=\"12\" />"));
    assert!(xml.contains("<TNRef RefId=\"9\" />"));
    assert_eq!(from_xml(&xml).unwrap(), obj.into_value());
}

#[test]
fn containers_enums_and_extended_primitives() {
    let value = Object::default()
        .with_property(
            "Stack",
            Object::new(["System.Collections.Stack"])
                .with_container(Container::Stack(vec![1.into()])),
        )
        .with_property(
            "Queue",
            Object::new(["System.Collections.Queue"])
                .with_container(Container::Queue(vec![2.into()])),
        )
        .with_property(
            "IE",
            Object::new(["X"]).with_container(Container::Enumerable(vec![Value::Nil])),
        )
        .with_property("Enum", Value::enum_of("System.ConsoleColor", "Red", 12))
        .with_property(
            "Note",
            Object::default()
                .with_primitive("text")
                .with_property("Extra", 1),
        )
        .into_value();
    let xml = to_xml(&value);
    assert!(xml.contains("<STK><I32>1</I32></STK>"));
    assert!(xml.contains("<QUE><I32>2</I32></QUE>"));
    assert!(xml.contains("<IE><Nil /></IE>"));
    assert!(xml.contains("<ToString>Red</ToString><I32>12</I32>"));
    let back = from_xml(&xml).unwrap();
    assert_eq!(back, value);
    assert_eq!(back.property("enum").unwrap().as_i64(), Some(12));
    assert_eq!(back.property("Note").unwrap().as_str(), Some("text"));
}

#[test]
fn readers_are_lenient_like_clients_need() {
    let obj = Object::default()
        .with_property("Name", "ms")
        .with_adapted("Name", "props")
        .with_adapted("Only", 5u32);
    assert_eq!(obj.property("NAME").unwrap().as_str(), Some("ms"));
    assert_eq!(
        obj.adapted_property("name").unwrap().as_str(),
        Some("props")
    );
    assert_eq!(obj.property("only").unwrap().as_i64(), Some(5));
    assert_eq!(Value::U64(u64::MAX).as_i64(), None);
    assert_eq!(Value::I64(1 << 40).as_i32(), None);
    let switch = Object::new(["System.Management.Automation.SwitchParameter"])
        .with_to_string("True")
        .with_adapted("IsPresent", true)
        .into_value();
    assert_eq!(switch.as_bool(), Some(true));
    assert!(Object::new(["Deserialized.A.B"]).is_type("A.B"));
    assert!(Object::new(["A.B"]).is_type("Deserialized.A.B"));
    let ex = Object::exchange(
        ["Microsoft.Exchange.Data.Directory.Management.Mailbox"],
        "AdeleV",
    );
    assert_eq!(
        ex.type_names.last().map(String::as_str),
        Some("System.Object")
    );
    assert_eq!(
        ex.clone()
            .with_adapted("Inner", Object::new(["X"]))
            .into_deserialized()
            .adapted[0]
            .1
            .as_object()
            .unwrap()
            .type_names,
        ["Deserialized.X"]
    );
    assert_eq!(
        ex.deserialized_type_names()[1],
        "Deserialized.System.Object"
    );
}

#[test]
fn parser_tolerates_what_clients_send() {
    let xml = "\u{FEFF}<?xml version=\"1.0\"?>\n<!-- c -->\n<Obj RefId=\"0\">\n  <MS>\n    <S N=\"A\"> spaced </S>\n    <Unknown N=\"U\">text<b/>more</Unknown>\n  </MS>\n  <Weird><x/></Weird>\n</Obj>\n";
    let v = from_xml(xml).unwrap();
    assert_eq!(v.property("A").unwrap().as_str(), Some(" spaced "));
    assert_eq!(v.property("U").unwrap().as_str(), Some("textmore"));
    // Empty elements, CDATA, entities, case of booleans, Ref and TNRef.
    let xml = r#"<Obj RefId="0"><MS><S N="E" /><S N="C"><![CDATA[<raw>]]></S><S N="Ent">&#x41;&lt;</S><B N="T">True</B>
        <Obj N="First" RefId="1"><TN RefId="0"><T>A</T></TN><ToString>f</ToString></Obj>
        <Ref N="Again" RefId="1" /><Obj N="Typed" RefId="2"><TNRef RefId="0" /></Obj></MS></Obj>"#;
    let v = from_xml(xml).unwrap();
    assert_eq!(v.property("E").unwrap().as_str(), Some(""));
    assert_eq!(v.property("C").unwrap().as_str(), Some("<raw>"));
    assert_eq!(v.property("Ent").unwrap().as_str(), Some("A<"));
    assert_eq!(v.property("T"), Some(&Value::Bool(true)));
    assert_eq!(v.property("Again"), v.property("First"));
    assert_eq!(
        v.property("Typed").unwrap().as_object().unwrap().type_names,
        ["A"]
    );
    // File-format wrapper.
    let doc = r#"<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S>a</S><I32>2</I32></Objs>"#;
    assert_eq!(
        from_xml_document(doc).unwrap(),
        vec![Value::from("a"), Value::I32(2)]
    );
    assert!(matches!(
        from_xml(doc),
        Err(ClixmlError::MultipleRoots { .. })
    ));
    assert_eq!(
        from_xml(r#"<Objs Version="1.1.0.1"><S>a</S></Objs>"#).unwrap(),
        Value::from("a")
    );
}

#[test]
fn parser_errors_say_what_is_wrong() {
    let err = |xml: &str| from_xml(xml).unwrap_err();
    assert_eq!(err(""), ClixmlError::Empty);
    assert_eq!(err("  \n"), ClixmlError::Empty);
    assert!(
        matches!(err("<S>a</S><S>b</S>"), ClixmlError::MultipleRoots { element } if element == "S")
    );
    assert!(
        matches!(err("<I32>x</I32>"), ClixmlError::InvalidValue { tag, text, .. } if tag == "I32" && text == "x")
    );
    assert!(matches!(
        err("<I32>99999999999</I32>"),
        ClixmlError::InvalidValue { .. }
    ));
    assert!(
        matches!(err("<DT>yesterday</DT>"), ClixmlError::InvalidValue { tag, .. } if tag == "DT")
    );
    assert!(matches!(
        err("<G>nope</G>"),
        ClixmlError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("<BA>!!</BA>"),
        ClixmlError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("<B>yes</B>"),
        ClixmlError::InvalidValue { .. }
    ));
    assert!(
        matches!(err("<S><b/></S>"), ClixmlError::UnexpectedElement { element, parent } if element == "b" && parent == "S")
    );
    assert!(matches!(
        err("<Obj><MS><S N=\"a\">x</MS></Obj>"),
        ClixmlError::Xml { .. }
    ));
    assert!(matches!(err("<Obj><MS>"), ClixmlError::Xml { .. }));
    assert!(matches!(err("<S>&bogus;</S>"), ClixmlError::Xml { .. }));
    assert!(matches!(err("text"), ClixmlError::Xml { .. }));
    assert_eq!(
        err("<Ref RefId=\"9\" />"),
        ClixmlError::UnknownRef { ref_id: "9".into() }
    );
    assert_eq!(
        err("<Obj><TNRef RefId=\"3\" /></Obj>"),
        ClixmlError::UnknownTypeRef { ref_id: "3".into() }
    );
    assert_eq!(
        err("<Obj><MS><SS N=\"Password\">AAAA</SS></MS></Obj>"),
        ClixmlError::SecureString
    );
    assert!(
        ClixmlError::SecureString
            .to_string()
            .contains("plain string")
    );
}

#[test]
fn limits_stop_deep_large_and_exploding_documents() {
    let deep = "<Obj><MS>".repeat(100) + &"</MS></Obj>".repeat(100);
    assert_eq!(from_xml(&deep), Err(ClixmlError::TooDeep { limit: 64 }));
    let limits = Limits {
        max_len: 10,
        ..Limits::default()
    };
    assert_eq!(
        from_xml_with("<S>0123456789</S>", &limits),
        Err(ClixmlError::TooLarge { len: 17, limit: 10 })
    );
    // Each level refers to the previous one twice: 2^40 values if expanded naively.
    let mut bomb = String::from(
        "<Obj RefId=\"0\"><MS><Obj N=\"l0\" RefId=\"1\"><MS><S N=\"x\">x</S></MS></Obj>",
    );
    for i in 1..40 {
        bomb += &format!(
            "<Obj N=\"l{i}\" RefId=\"{}\"><MS><Ref N=\"a\" RefId=\"{i}\" /><Ref N=\"b\" RefId=\"{i}\" /></MS></Obj>",
            i + 1
        );
    }
    bomb += "</MS></Obj>";
    let limits = Limits {
        max_values: 100_000,
        ..Limits::default()
    };
    assert_eq!(
        from_xml_with(&bomb, &limits),
        Err(ClixmlError::TooManyValues { limit: 100_000 })
    );
}

/// Issue 12: one large string and thousands of `<Ref>`s to it (few values, huge copies). The
/// copies cost their bytes, so the document is refused long before it is expanded.
fn ref_copies(string_len: usize, copies: usize) -> String {
    let mut doc = format!(
        "<Obj RefId=\"0\"><MS><Obj N=\"big\" RefId=\"1\"><MS><S N=\"s\">{}</S></MS></Obj><Obj N=\"copies\" RefId=\"2\"><LST>",
        "x".repeat(string_len)
    );
    for _ in 0..copies {
        doc.push_str("<Ref RefId=\"1\" />");
    }
    doc.push_str("</LST></Obj></MS></Obj>");
    doc
}

#[test]
fn ref_copies_cost_the_bytes_they_copy_issue_12() {
    let limits = Limits {
        max_bytes: 1024 * 1024,
        ..Limits::default()
    };
    // 64 KiB × 2,000 copies = 128 MiB if expanded: refused at the 1 MiB budget.
    let bomb = ref_copies(64 * 1024, 2_000);
    assert!(bomb.len() < 128 * 1024);
    assert_eq!(
        from_xml_with(&bomb, &limits),
        Err(ClixmlError::TooExpanded { limit: 1024 * 1024 })
    );
    let text = ClixmlError::TooExpanded { limit: 1 }.to_string();
    assert!(text.contains("<Ref> copy counts in full"), "{text}");
    // A few copies fit, and the decoded size counts each of them.
    let (value, size) = from_xml_sized(&ref_copies(64 * 1024, 4), &limits).unwrap();
    assert!(size >= 5 * 64 * 1024, "{size}");
    assert!(size < 6 * 64 * 1024, "{size}");
    let big = "x".repeat(64 * 1024);
    assert_eq!(
        format!("{value:?}").matches(&big).count(),
        5,
        "the string and 4 copies"
    );
    // The default limits refuse the table's 256 KiB × 26,000 shape (scaled to 5,000).
    assert_eq!(
        from_xml(&ref_copies(256 * 1024, 5_000)),
        Err(ClixmlError::TooExpanded {
            limit: Limits::default().max_bytes
        })
    );
}

#[test]
fn escaped_member_names_and_text_round_trip() {
    let tricky = "tab\there _x0041_ \u{1F600} \u{85} <&> \"q\"";
    let value = Object::default()
        .with_property(tricky, tricky)
        .with_to_string(tricky)
        .into_value();
    let xml = to_xml(&value);
    assert!(!xml.contains('\t'));
    assert!(xml.contains("_x005F_x0041_"));
    assert!(xml.contains("_xD83D__xDE00_"));
    assert_eq!(from_xml(&xml).unwrap(), value);
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('_'),
                Just('x'),
                Just('X'),
                Just('0'),
                Just('\r'),
                Just('\u{85}'),
                Just('😀'),
                Just('<'),
                Just('&'),
                Just('"')
            ],
            0..10
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
}

fn arb_datetime() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (0i64..253_402_300_799, 0u32..10_000_000, -50_400i32..50_400).prop_map(|(secs, ticks, off)| {
        let offset = FixedOffset::east_opt(off / 60 * 60).unwrap();
        DateTime::from_timestamp(secs, ticks * 100)
            .unwrap()
            .with_timezone(&offset)
    })
}

fn arb_primitive() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        arb_string().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        any::<u16>().prop_map(Value::Char),
        any::<i8>().prop_map(Value::I8),
        any::<u8>().prop_map(Value::U8),
        any::<i16>().prop_map(Value::I16),
        any::<u16>().prop_map(Value::U16),
        any::<i32>().prop_map(Value::I32),
        any::<u32>().prop_map(Value::U32),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        any::<f32>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::Double),
        "-?[0-9]{1,28}(\\.[0-9]{1,10})?".prop_map(Value::Decimal),
        arb_datetime().prop_map(Value::DateTime),
        arb_datetime().prop_map(|d| Value::UtcDateTime(d.to_utc())),
        any::<i64>().prop_map(Value::Duration),
        any::<u128>().prop_map(|u| Value::Guid(uuid::Uuid::from_u128(u))),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        arb_string().prop_map(Value::Uri),
        "[0-9]{1,3}(\\.[0-9]{1,5}){1,3}".prop_map(Value::Version),
        arb_string().prop_map(Value::XmlDocument),
        arb_string().prop_map(Value::ScriptBlock),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_primitive().prop_recursive(4, 48, 6, |inner| {
        let names = || proptest::collection::vec((arb_string(), inner.clone()), 0..4);
        let container = prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Container::List),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Container::Enumerable),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Container::Stack),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Container::Queue),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..3)
                .prop_map(Container::Dictionary),
        ];
        (
            proptest::collection::vec(prop_oneof!["[A-Za-z.]{1,10}", arb_string()], 0..3),
            proptest::option::of(arb_string()),
            proptest::option::of(
                arb_primitive().prop_filter("an Obj body holds a primitive", |p| !p.is_nil()),
            ),
            proptest::option::of(container),
            names(),
            names(),
        )
            .prop_map(
                |(type_names, to_string, primitive, container, adapted, extended)| {
                    Object {
                        type_names,
                        to_string,
                        primitive,
                        container,
                        adapted,
                        extended,
                    }
                    .into_value()
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_value_round_trips(value in arb_value()) {
        let xml = to_xml(&value);
        prop_assert_eq!(from_xml(&xml), Ok(value));
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = from_xml(&text);
    }

    #[test]
    fn parser_never_panics_on_mangled_clixml(value in arb_value(), cuts in proptest::collection::vec((any::<usize>(), "[<>/\"=a-zA-Z0-9_ &;]{0,3}"), 1..4)) {
        let mut xml = to_xml(&value);
        for (at, insert) in cuts {
            let mut at = at % (xml.len() + 1);
            while !xml.is_char_boundary(at) {
                at -= 1;
            }
            xml.insert_str(at, &insert);
        }
        let _ = from_xml(&xml);
    }

    #[test]
    fn names_escape_and_unescape(s in any::<String>()) {
        prop_assert_eq!(decode_name(&encode_name(&s).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", "\"")), s);
    }

    #[test]
    fn dates_and_durations_round_trip(d in arb_datetime(), ticks in any::<i64>()) {
        prop_assert_eq!(parse_datetime(&format_datetime(&d)), Ok(d));
        prop_assert_eq!(parse_duration(&format_duration(ticks)), Ok(ticks));
    }
}

#[test]
fn floats_keep_their_exact_bits() {
    for v in [
        0.1f32,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-10,
        -3.4e38,
        16_777_217.0,
        1e7,
        9_999_999.0,
    ] {
        let xml = to_xml(&Value::Float(v));
        assert_eq!(from_xml(&xml), Ok(Value::Float(v)), "{xml}");
    }
    for v in [
        0.1f64,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        1e15,
        999_999_999_999_999.9,
    ] {
        let xml = to_xml(&Value::Double(v));
        assert_eq!(from_xml(&xml), Ok(Value::Double(v)), "{xml}");
    }
    assert_eq!(to_xml(&Value::Float(f32::NEG_INFINITY)), "<Sg>-INF</Sg>");
}
