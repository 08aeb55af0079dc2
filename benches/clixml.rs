//! CLIXML encode rate for Get-Mailbox-sized objects (issue #4: ≥ 100,000 objects/s on one
//! core in release). Run: `cargo bench --bench clixml` (figures go to BENCHMARKS.md).
//!
//! A plain timing loop (harness = false) rather than a framework: the question is one
//! number, objects per second, measured the way the endpoint encodes output.

use std::hint::black_box;
use std::time::Duration;

// tokio's Instant is std's outside a paused test runtime; clippy.toml bans the std one.
use tokio::time::Instant;

use chrono::{DateTime, FixedOffset};
use exo_authproxy::remoting::clixml::{self, Object, Value};
use exo_authproxy::remoting::message::{Message, MessageType};
use exo_authproxy::remoting::{fragment, xpress};

/// A mailbox shaped like reference §11.5, widened to ~60 properties as Get-Mailbox returns.
fn mailbox(i: usize) -> Value {
    let when: DateTime<FixedOffset> =
        DateTime::parse_from_rfc3339("2024-05-21T14:03:11.1234567+00:00").expect("valid date");
    let name = format!("user{i:05}");
    let mut obj = Object::exchange(
        [
            "Microsoft.Exchange.Data.Directory.Management.Mailbox",
            "Microsoft.Exchange.Data.Directory.Management.MailEnabledOrgPerson",
            "Microsoft.Exchange.Data.Directory.Management.MailEnabledRecipient",
            "Microsoft.Exchange.Data.Directory.ADPresentationObject",
            "Microsoft.Exchange.Data.ConfigurableObject",
        ],
        name.clone(),
    );
    for key in ["Name", "Identity", "Alias", "DisplayName", "SamAccountName"] {
        obj.push_adapted(key, name.as_str());
    }
    obj.push_adapted(
        "UserPrincipalName",
        format!("{name}@contoso.onmicrosoft.com"),
    );
    obj.push_adapted("PrimarySmtpAddress", format!("{name}@contoso.com"));
    obj.push_adapted("WindowsEmailAddress", format!("{name}@contoso.com"));
    obj.push_adapted(
        "EmailAddresses",
        Value::array_list([
            format!("SMTP:{name}@contoso.com"),
            format!("smtp:{name}@contoso.onmicrosoft.com"),
            format!(
                "X500:/o=ExchangeLabs/ou=Exchange Administrative Group/cn=Recipients/cn={name}"
            ),
        ]),
    );
    obj.push_adapted("Languages", Value::array_list(["en-US"]));
    obj.push_adapted(
        "ExtensionCustomAttribute1",
        Value::array_list(Vec::<Value>::new()),
    );
    obj.push_adapted(
        "Guid",
        uuid::Uuid::from_u128(0x8c2f1a5e_6b1d_4f0e_9a77_2d3c4b5a6f70 + i as u128),
    );
    obj.push_adapted(
        "ExchangeGuid",
        uuid::Uuid::from_u128(0x0d4e5f60_7182_4394_a5b6_c7d8e9f00112),
    );
    obj.push_adapted(
        "ExternalDirectoryObjectId",
        "5f0e9d8c-7b6a-4594-8372-6150a4b3c2d1",
    );
    for key in ["RecipientType", "RecipientTypeDetails"] {
        obj.push_adapted(key, "UserMailbox");
    }
    for key in [
        "HiddenFromAddressListsEnabled",
        "LitigationHoldEnabled",
        "DeliverToMailboxAndForward",
        "IsInactiveMailbox",
        "AuditEnabled",
        "MessageCopyForSentAsEnabled",
        "SingleItemRecoveryEnabled",
        "RetentionHoldEnabled",
    ] {
        obj.push_adapted(key, false);
    }
    for key in [
        "LitigationHoldDate",
        "ForwardingSmtpAddress",
        "ForwardingAddress",
        "ArchiveDatabase",
    ] {
        obj.push_adapted(key, Value::Nil);
    }
    for key in [
        "ProhibitSendQuota",
        "ProhibitSendReceiveQuota",
        "IssueWarningQuota",
        "RecoverableItemsQuota",
    ] {
        obj.push_adapted(key, "99 GB (106,300,440,576 bytes)");
    }
    obj.push_adapted("RetainDeletedItemsFor", "14.00:00:00");
    obj.push_adapted("Notes", "R&D _xmas list \u{7}");
    for key in [
        "WhenCreated",
        "WhenCreatedUTC",
        "WhenChanged",
        "WhenChangedUTC",
        "WhenMailboxCreated",
    ] {
        obj.push_adapted(key, when);
    }
    for (k, v) in [
        ("Database", "EURPR01DG001-db042"),
        ("ServerName", "am0pr01mb0001"),
        ("Office", "Building 4"),
        ("UsageLocation", "United States"),
        ("RetentionPolicy", "Default MRM Policy"),
        ("AddressBookPolicy", ""),
        ("SharingPolicy", "Default Sharing Policy"),
        ("RoleAssignmentPolicy", "Default Role Assignment Policy"),
        (
            "DistinguishedName",
            "CN=user,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=EURPR01A001,DC=PROD,DC=OUTLOOK,DC=COM",
        ),
        (
            "LegacyExchangeDN",
            "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=abc",
        ),
        (
            "OrganizationalUnit",
            "eurpr01a001.prod.outlook.com/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com",
        ),
        ("CustomAttribute1", ""),
        ("CustomAttribute2", ""),
        ("ObjectState", "Unchanged"),
        (
            "OriginatingServer",
            "AM0PR01A001DC01.EURPR01A001.PROD.OUTLOOK.COM",
        ),
        ("ArchiveStatus", "None"),
    ] {
        obj.push_adapted(k, v);
    }
    for (k, v) in [
        ("MaxSendSize", 35),
        ("MaxReceiveSize", 36),
        ("RecipientLimits", 500),
    ] {
        obj.push_adapted(k, v);
    }
    obj.push_adapted("MailboxSizeBytes", 123_456_789_i64);
    obj.push_adapted("IsValid", true);
    obj.into_value()
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds on CPU).
/// The machine is shared, so wall time undercounts what one core does; both are printed.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Times `f`, which processes `objects` objects producing `bytes` bytes.
fn measure(label: &str, objects: usize, f: impl FnOnce() -> usize) {
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let bytes = f();
    let wall = wall0.elapsed();
    let cpu = cpu0.zip(thread_cpu()).map(|(a, b)| b - a);
    let per = |d: Duration| objects as f64 / d.as_secs_f64();
    match cpu {
        Some(cpu) => println!(
            "{label:<46} {:>9.0} objects/s CPU  {:>9.0} objects/s wall  {:>7.1} MB/s CPU  ({objects} objects, {:.2} s CPU, {:.2} s wall)",
            per(cpu),
            per(wall),
            bytes as f64 / cpu.as_secs_f64() / 1e6,
            cpu.as_secs_f64(),
            wall.as_secs_f64()
        ),
        None => println!("{label:<46} {:>9.0} objects/s wall", per(wall)),
    }
}

fn main() {
    let objects: Vec<Value> = (0..1000).map(mailbox).collect();
    let sample = clixml::to_xml(&objects[0]);
    let properties = objects[0].as_object().map_or(0, |o| o.adapted.len());
    println!(
        "object: {properties} properties, {} bytes of CLIXML",
        sample.len()
    );
    let rounds = 200;
    let total = rounds * objects.len();

    // Warm up.
    let mut buf = String::with_capacity(8192);
    for o in &objects {
        buf.clear();
        clixml::write_xml(o, &mut buf);
    }

    measure("write_xml (reused buffer)", total, || {
        let mut bytes = 0;
        for _ in 0..rounds {
            for o in &objects {
                buf.clear();
                clixml::write_xml(black_box(o), &mut buf);
                bytes += buf.len();
            }
        }
        bytes
    });

    measure("to_xml (new String per object)", total, || {
        let mut bytes = 0;
        for _ in 0..rounds {
            for o in &objects {
                bytes += black_box(clixml::to_xml(black_box(o))).len();
            }
        }
        bytes
    });

    let rpid = uuid::Uuid::from_u128(1);
    let pid = uuid::Uuid::from_u128(2);
    measure("PIPELINE_OUTPUT message + fragment + stored", total, || {
        let mut bytes = 0;
        for _ in 0..rounds {
            for (i, o) in objects.iter().enumerate() {
                let msg = Message::to_client(MessageType::PipelineOutput, rpid, pid, black_box(o));
                for f in fragment::fragment(i as u64, &msg.encode(), 32 * 1024) {
                    bytes += xpress::store_stream(&f).len();
                }
            }
        }
        bytes
    });

    let parse_rounds = 20;
    measure(
        "from_xml (parse, for reference)",
        parse_rounds * objects.len(),
        || {
            for _ in 0..parse_rounds * objects.len() {
                black_box(clixml::from_xml(black_box(&sample)).expect("own output parses"));
            }
            parse_rounds * objects.len() * sample.len()
        },
    );
}
