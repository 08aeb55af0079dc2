//! The state a tenant stores (mailboxes, organization config) and how it is generated.
//!
//! Everything is derived from the tenant id and organization alone (seeded GUIDs, fixed
//! dates), so every run and both upstream modes see the same objects.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use uuid::Uuid;

use super::Tenant;
use super::tenant::State;

/// One mailbox's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Mailbox {
    /// Name = Alias = Identity.
    pub name: String,
    /// DisplayName.
    pub display_name: String,
    /// UPN (`alias@<organization>`).
    pub upn: String,
    /// Primary SMTP address.
    pub primary_smtp: String,
    /// `SMTP:`/`smtp:` proxy addresses.
    pub email_addresses: Vec<String>,
    /// `UserMailbox` / `SharedMailbox`.
    pub recipient_type_details: String,
    /// Guid.
    pub guid: Uuid,
    /// ExchangeGuid.
    pub exchange_guid: Uuid,
    /// ExternalDirectoryObjectId.
    pub external_id: Uuid,
    /// HiddenFromAddressListsEnabled.
    pub hidden: bool,
    /// LitigationHoldEnabled.
    pub litigation_hold: bool,
    /// LitigationHoldDate.
    pub litigation_hold_date: Option<DateTime<FixedOffset>>,
    /// ForwardingSmtpAddress.
    pub forwarding_smtp: Option<String>,
    /// DeliverToMailboxAndForward.
    pub deliver_and_forward: bool,
    /// CustomAttribute1..15.
    pub custom: [String; 15],
    /// ProhibitSendQuota.
    pub prohibit_send_quota: String,
    /// RetainDeletedItemsFor.
    pub retain_deleted_items_for: String,
    /// Languages.
    pub languages: Vec<String>,
    /// Item count (statistics).
    pub item_count: i32,
    /// WhenCreated.
    pub created: DateTime<FixedOffset>,
    /// WhenChanged.
    pub changed: DateTime<FixedOffset>,
}

/// Organization config state.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgConfig {
    /// AuditDisabled.
    pub audit_disabled: bool,
    /// OAuth2ClientProfileEnabled.
    pub oauth2_client_profile: bool,
    /// FocusedInboxOn.
    pub focused_inbox: bool,
    /// WhenChanged.
    pub changed: DateTime<FixedOffset>,
}

const FIRST_NAMES: &[(&str, &str)] = &[
    ("AdeleV", "Adele Vance"),
    ("AlexW", "Alex Wilber"),
    ("DiegoS", "Diego Siciliani"),
    ("GradyA", "Grady Archie"),
    ("IsaiahL", "Isaiah Langer"),
    ("JohannaL", "Johanna Lorenz"),
    ("LeeG", "Lee Gu"),
    ("MeganB", "Megan Bowen"),
    ("info", "Info (shared)"),
];

pub(super) fn seeded_uuid(seed: &str) -> Uuid {
    use sha2::Digest;
    let d = sha2::Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

fn utc(y: i32, mo: u32, d: u32) -> DateTime<FixedOffset> {
    Utc.with_ymd_and_hms(y, mo, d, 0, 0, 0)
        .single()
        .unwrap_or_default()
        .fixed_offset()
}

pub(super) fn base_domain(organization: &str) -> String {
    let label = organization.split('.').next().unwrap_or(organization);
    format!("{label}.com")
}

impl Tenant {
    pub(super) fn generate(tenant_id: &str, organization: &str, count: usize) -> Self {
        let domain = base_domain(organization);
        let start = utc(2024, 1, 1);
        let mailboxes = (0..count)
            .map(|i| {
                let (name, display) = match FIRST_NAMES.get(i) {
                    Some((n, d)) => ((*n).to_owned(), (*d).to_owned()),
                    None => (format!("user{i:05}"), format!("User {i:05}")),
                };
                let seed = |k: &str| seeded_uuid(&format!("{tenant_id}/{k}/{i}"));
                let created = start
                    + Duration::minutes(37 * i as i64)
                    + Duration::nanoseconds((i as i64 % 7) * 123_456_700);
                let mut custom: [String; 15] = Default::default();
                custom[0] = if i % 2 == 0 {
                    "Sales".into()
                } else {
                    "Engineering".into()
                };
                Arc::new(Mailbox {
                    upn: format!("{name}@{organization}"),
                    primary_smtp: format!("{name}@{domain}"),
                    email_addresses: vec![
                        format!("SMTP:{name}@{domain}"),
                        format!("smtp:{name}@{organization}"),
                    ],
                    recipient_type_details: if name == "info" {
                        "SharedMailbox".into()
                    } else {
                        "UserMailbox".into()
                    },
                    guid: seed("guid"),
                    exchange_guid: seed("exchange"),
                    external_id: seed("aad"),
                    hidden: name == "info",
                    litigation_hold: i == 2,
                    litigation_hold_date: (i == 2).then(|| utc(2024, 3, 15)),
                    forwarding_smtp: (i == 5).then(|| format!("smtp:archive@{domain}")),
                    deliver_and_forward: i == 5,
                    custom,
                    prohibit_send_quota: "99 GB (106,300,440,576 bytes)".into(),
                    retain_deleted_items_for: "14.00:00:00".into(),
                    languages: vec!["en-US".into()],
                    item_count: (i as i32 * 7919) % 50_000,
                    created,
                    changed: created + Duration::days(30),
                    name,
                    display_name: display,
                })
            })
            .collect();
        Self {
            tenant_id: tenant_id.into(),
            organization: organization.into(),
            server: {
                let tag = seeded_uuid(&format!("{tenant_id}/server"));
                let [a, b, ..] = *tag.as_bytes();
                format!("AM0PR01MB{a:02X}{b:02X}.eurprd01.prod.outlook.com")
            },
            state: RwLock::new(State {
                mailboxes,
                org: OrgConfig {
                    audit_disabled: false,
                    oauth2_client_profile: true,
                    focused_inbox: true,
                    changed: utc(2024, 2, 1),
                },
            }),
        }
    }
}
