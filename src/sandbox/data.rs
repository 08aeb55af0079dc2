//! The simulated Exchange Online's tenant data and cmdlets.
//!
//! One deterministic in-memory data set per tenant id (mailboxes — as many as configured,
//! e.g. 10,000 for paging tests — recipients, organization config, accepted domains), made
//! on first use from the tenant id and organization alone, so every run and both upstream
//! modes see the same objects. Both simulated endpoints run their commands here: the RPS
//! endpoint (`rps.rs`, winrm mode) and the REST admin API (`adminapi.rs`, rest mode) — which
//! is what makes the compatibility test (same script, same objects through either mode)
//! meaningful. State changes (`Set-Mailbox`) are visible to later `Get-*`s of either.
//!
//! Cmdlets take REST-style parameters (a JSON object, reference exo-rest-adminapi.md §5);
//! the RPS side binds its CLIXML arguments with the shared binder and converts them with the
//! bridge's converter first. Results are [`Item`]s (cheap `Arc` snapshots) that become
//! [`ExObject`]s only when a page is written, so paging 10,000 mailboxes stays linear.
//! Errors and warnings use Exchange's own texts.
//!
//! Thread-safe: a tenant's state is behind an `RwLock`; `Get-*` share it, `Set-*` take it
//! briefly and replace the changed mailbox's `Arc`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::bridge::catalog::{Catalog, wildcard_match};
use crate::bridge::convert::datetime_to_exchange;
use crate::bridge::errors::ExchangeError;

/// One property value of an Exchange object, typed as Exchange's serializer typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    /// null
    Null,
    /// A string (also enums, sizes, TimeSpans, linked identities).
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Int16.
    I16(i16),
    /// Int32.
    I32(i32),
    /// Int64.
    I64(i64),
    /// Guid.
    Guid(Uuid),
    /// DateTime; `utc` for the `…UTC` properties (sent with `Z`).
    Date(DateTime<FixedOffset>, bool),
    /// Multi-valued string property.
    Multi(Vec<String>),
}

impl Prop {
    fn text(&self) -> String {
        match self {
            Prop::Null => String::new(),
            Prop::Str(s) => s.clone(),
            Prop::Bool(b) => {
                if *b {
                    "True".into()
                } else {
                    "False".into()
                }
            }
            Prop::I16(n) => n.to_string(),
            Prop::I32(n) => n.to_string(),
            Prop::I64(n) => n.to_string(),
            Prop::Guid(g) => g.to_string(),
            Prop::Date(d, utc) => datetime_to_exchange(d, *utc),
            Prop::Multi(v) => v.join(" "),
        }
    }
}

/// An Exchange object as the service produced it: type hierarchy and ordered properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ExObject {
    /// Most derived first (no `Deserialized.`).
    pub type_names: Vec<String>,
    /// Properties in Exchange's order.
    pub props: Vec<(String, Prop)>,
}

impl ExObject {
    /// A property by name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Prop> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The REST JSON form with annotations (reference exo-rest-adminapi.md §7.2).
    pub fn to_json(&self) -> Map<String, Json> {
        let mut m = Map::new();
        for (k, v) in &self.props {
            match v {
                Prop::Null => {
                    m.insert(k.clone(), Json::Null);
                }
                Prop::Str(s) => {
                    m.insert(k.clone(), Json::from(s.as_str()));
                }
                Prop::Bool(b) => {
                    m.insert(k.clone(), Json::Bool(*b));
                }
                Prop::I16(n) => {
                    m.insert(format!("{k}@data.type"), "System.Int16".into());
                    m.insert(format!("{k}@odata.type"), "#Int16".into());
                    m.insert(k.clone(), Json::from(*n));
                }
                Prop::I32(n) => {
                    m.insert(format!("{k}@data.type"), "System.Int32".into());
                    m.insert(k.clone(), Json::from(*n));
                }
                Prop::I64(n) => {
                    m.insert(format!("{k}@data.type"), "System.Int64".into());
                    m.insert(format!("{k}@odata.type"), "#Int64".into());
                    m.insert(k.clone(), Json::from(*n));
                }
                Prop::Guid(g) => {
                    m.insert(format!("{k}@data.type"), "System.Guid".into());
                    m.insert(format!("{k}@odata.type"), "#Guid".into());
                    m.insert(k.clone(), Json::from(g.to_string()));
                }
                Prop::Date(d, utc) => {
                    m.insert(format!("{k}@data.type"), "System.DateTime".into());
                    m.insert(k.clone(), Json::from(datetime_to_exchange(d, *utc)));
                }
                Prop::Multi(v) => {
                    m.insert(format!("{k}@odata.type"), "#Collection(String)".into());
                    m.insert(k.clone(), Json::from(v.clone()));
                }
            }
        }
        m
    }
}

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

/// What a cmdlet returned, as cheap snapshots.
#[derive(Debug, Clone)]
pub enum Item {
    /// Get-Mailbox
    Mailbox(Arc<Mailbox>),
    /// Get-Recipient
    Recipient(Arc<Mailbox>),
    /// Get-MailboxStatistics
    Statistics(Arc<Mailbox>),
    /// Get-OrganizationConfig
    Organization(OrgConfig),
    /// Get-AcceptedDomain: (domain, default, initial)
    Domain(String, bool, bool),
}

/// A cmdlet's result.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Output objects, in order.
    pub items: Vec<Item>,
    /// Warnings (after the objects).
    pub warnings: Vec<String>,
}

/// Fault knobs and counters for tests (all atomics: set them while the server runs).
#[derive(Debug, Default)]
pub struct Knobs {
    /// Answer this many upcoming InvokeCommand requests with 429.
    pub throttle_next: AtomicU32,
    /// Retry-After seconds on those 429s.
    pub retry_after_secs: AtomicU32,
    /// Answer this many upcoming requests with 503.
    pub unavailable_next: AtomicU32,
    /// Answer this many upcoming requests with 401 (as for an expired token).
    pub unauthorized_next: AtomicU32,
    /// Delay before answering each InvokeCommand request, in milliseconds.
    pub latency_ms: AtomicU64,
    /// Delay before answering follow-up pages (`$skiptoken`) only, in milliseconds.
    pub page_latency_ms: AtomicU64,
    /// The cmdlet list EXOModuleFile publishes (None: every cmdlet of the built-in table).
    pub exported_cmdlets: Mutex<Option<Vec<String>>>,
}

/// A request as received: headers (lower-case names) and JSON body.
pub type SeenRequest = (Vec<(String, String)>, Json);

/// Counters for tests (requests as received).
#[derive(Debug, Default)]
pub struct Stats {
    /// Every InvokeCommand request (first pages and follow-ups, retries included).
    pub invoke_requests: AtomicU64,
    /// Follow-up page requests (`@odata.nextLink`).
    pub page_requests: AtomicU64,
    /// Follow-up page requests that got past the simulated latency (answered: a page or an error).
    pub pages_answered: AtomicU64,
    /// Requests whose client went away while the simulated latency held them.
    pub abandoned_requests: AtomicU64,
    /// EXOModuleFile requests.
    pub module_file_requests: AtomicU64,
    /// The last InvokeCommand request: headers (lower-case names) and JSON body.
    pub last_request: Mutex<Option<SeenRequest>>,
    /// Every InvokeCommand body received, in order (bounded to the last 1,000).
    pub bodies: Mutex<Vec<Json>>,
    /// Woken whenever a request counter moves ([`Stats::count`]).
    changed: tokio::sync::Notify,
}

impl Stats {
    /// Adds one to `counter` (one of this struct's) and wakes [`Stats::until`] waiters.
    pub fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Resolves once `done` holds for the counters: lets a test wait for what the
    /// simulator saw (a request arriving, a client going away) without sleeping.
    pub async fn until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// All tenants' data, knobs and counters.
#[derive(Debug)]
pub struct ExchangeData {
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    mailboxes_per_tenant: usize,
    /// Fault knobs.
    pub knobs: Knobs,
    /// Counters.
    pub stats: Stats,
}

impl ExchangeData {
    /// Data where each tenant has `mailboxes_per_tenant` mailboxes.
    pub fn new(mailboxes_per_tenant: usize) -> Self {
        Self {
            tenants: Mutex::new(HashMap::new()),
            mailboxes_per_tenant,
            knobs: Knobs::default(),
            stats: Stats::default(),
        }
    }

    /// The tenant (made on first use, deterministically).
    pub fn tenant(&self, tenant_id: &str, organization: &str) -> Arc<Tenant> {
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(tenant_id.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(Tenant::generate(
                    tenant_id,
                    organization,
                    self.mailboxes_per_tenant,
                ))
            })
            .clone()
    }
}

/// One tenant.
#[derive(Debug)]
pub struct Tenant {
    /// Directory id.
    pub tenant_id: String,
    /// `contoso.onmicrosoft.com`
    pub organization: String,
    /// The back-end server name Exchange's texts mention.
    pub server: String,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    mailboxes: Vec<Arc<Mailbox>>,
    org: OrgConfig,
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

fn seeded_uuid(seed: &str) -> Uuid {
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

/// Now, truncated to 100 ns (DateTime precision on both wires).
fn now() -> DateTime<FixedOffset> {
    let n = Utc::now();
    let ns = n.timestamp_subsec_nanos() / 100 * 100;
    n.with_nanosecond_trunc(ns).fixed_offset()
}

trait Trunc {
    fn with_nanosecond_trunc(self, ns: u32) -> Self;
}
impl Trunc for DateTime<Utc> {
    fn with_nanosecond_trunc(self, ns: u32) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(ns).unwrap_or(self)
    }
}

fn base_domain(organization: &str) -> String {
    let label = organization.split('.').next().unwrap_or(organization);
    format!("{label}.com")
}

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(Catalog::builtin)
}

/// Parameters every cmdlet accepts (common parameters as REST sends them).
const COMMON: &[&str] = &[
    "ErrorAction",
    "WarningAction",
    "InformationAction",
    "Verbose",
    "Debug",
    "WhatIf",
    "Confirm",
    "ProgressAction",
];

/// The pagination warning.
pub use crate::bridge::rest::MORE_RESULTS;

fn binding_error(message: String) -> ExchangeError {
    ExchangeError::new(
        "System.Management.Automation.ParameterBindingException",
        message,
    )
}

struct Params<'a>(&'a Map<String, Json>);

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Option<&'a Json> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    fn str(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| match v {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    }
    fn bool(&self, name: &str) -> Result<Option<bool>, ExchangeError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(binding_error(format!(
                "Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{}\" to type \
                 \"System.Boolean\". Boolean parameters accept only Boolean values and numbers, such as $True, \
                 $False, 1 or 0.",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned)
            ))),
        }
    }
    fn switch(&self, name: &str) -> bool {
        matches!(self.bool(name), Ok(Some(true)))
    }
}

fn strings(v: &Json) -> Vec<String> {
    match v {
        Json::Array(a) => a.iter().flat_map(strings).collect(),
        Json::String(s) => vec![s.clone()],
        Json::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

impl Tenant {
    fn generate(tenant_id: &str, organization: &str, count: usize) -> Self {
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
            server: format!(
                "AM0PR01MB{}.eurprd01.prod.outlook.com",
                &crate::bridge::errors::short_hash(tenant_id)[..4]
            ),
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The object for one item (`Get-*` output), as Exchange serialized it.
    pub fn object(&self, item: &Item) -> ExObject {
        let types = |cmdlet: &str| {
            catalog()
                .lookup(cmdlet)
                .map(|e| e.output_types.clone())
                .unwrap_or_default()
        };
        match item {
            Item::Mailbox(m) => ExObject {
                type_names: types("Get-Mailbox"),
                props: self.mailbox_props(m),
            },
            Item::Recipient(m) => ExObject {
                type_names: types("Get-Recipient"),
                props: self.recipient_props(m),
            },
            Item::Statistics(m) => ExObject {
                type_names: types("Get-MailboxStatistics"),
                props: vec![
                    ("DisplayName".into(), Prop::Str(m.display_name.clone())),
                    ("MailboxGuid".into(), Prop::Guid(m.exchange_guid)),
                    ("ItemCount".into(), Prop::I32(m.item_count)),
                    ("DeletedItemCount".into(), Prop::I32(m.item_count / 10)),
                    (
                        "TotalItemSize".into(),
                        Prop::Str(size_text(i64::from(m.item_count) * 75_000)),
                    ),
                    (
                        "LastLogonTime".into(),
                        if m.item_count % 3 == 0 {
                            Prop::Null
                        } else {
                            Prop::Date(m.changed, false)
                        },
                    ),
                    ("Identity".into(), Prop::Str(m.exchange_guid.to_string())),
                    ("IsValid".into(), Prop::Bool(true)),
                ],
            },
            Item::Organization(o) => {
                let name = self.organization.clone();
                ExObject {
                    type_names: types("Get-OrganizationConfig"),
                    props: vec![
                        ("Name".into(), Prop::Str(name.clone())),
                        (
                            "DisplayName".into(),
                            Prop::Str(name.split('.').next().unwrap_or_default().to_owned()),
                        ),
                        ("Identity".into(), Prop::Str(name.clone())),
                        (
                            "Guid".into(),
                            Prop::Guid(seeded_uuid(&format!("{}/org", self.tenant_id))),
                        ),
                        ("IsDehydrated".into(), Prop::Bool(false)),
                        ("AuditDisabled".into(), Prop::Bool(o.audit_disabled)),
                        (
                            "OAuth2ClientProfileEnabled".into(),
                            Prop::Bool(o.oauth2_client_profile),
                        ),
                        ("FocusedInboxOn".into(), Prop::Bool(o.focused_inbox)),
                        ("DefaultPublicFolderAgeLimit".into(), Prop::Null),
                        ("WhenChanged".into(), Prop::Date(o.changed, false)),
                        ("WhenChangedUTC".into(), Prop::Date(o.changed, true)),
                        ("IsValid".into(), Prop::Bool(true)),
                        ("ObjectState".into(), Prop::Str("Unchanged".into())),
                    ],
                }
            }
            Item::Domain(d, default, initial) => ExObject {
                type_names: types("Get-AcceptedDomain"),
                props: vec![
                    ("DomainName".into(), Prop::Str(d.clone())),
                    ("DomainType".into(), Prop::Str("Authoritative".into())),
                    ("Default".into(), Prop::Bool(*default)),
                    ("InitialDomain".into(), Prop::Bool(*initial)),
                    ("Name".into(), Prop::Str(d.clone())),
                    ("Identity".into(), Prop::Str(d.clone())),
                    (
                        "Guid".into(),
                        Prop::Guid(seeded_uuid(&format!("{}/domain/{d}", self.tenant_id))),
                    ),
                    ("IsValid".into(), Prop::Bool(true)),
                ],
            },
        }
    }

    fn dn(&self, name: &str) -> String {
        format!(
            "CN={name},OU={},OU=Microsoft Exchange Hosted Organizations,DC=EURPR01A001,DC=prod,DC=outlook,DC=com",
            self.organization
        )
    }

    fn mailbox_props(&self, m: &Mailbox) -> Vec<(String, Prop)> {
        let s = |v: &str| Prop::Str(v.to_owned());
        let mut p = vec![
            ("Name".into(), s(&m.name)),
            ("Identity".into(), s(&m.name)),
            ("Id".into(), s(&m.name)),
            ("Alias".into(), s(&m.name)),
            ("DisplayName".into(), s(&m.display_name)),
            ("UserPrincipalName".into(), s(&m.upn)),
            ("PrimarySmtpAddress".into(), s(&m.primary_smtp)),
            ("WindowsEmailAddress".into(), s(&m.primary_smtp)),
            (
                "EmailAddresses".into(),
                Prop::Multi(m.email_addresses.clone()),
            ),
            ("RecipientType".into(), s("UserMailbox")),
            ("RecipientTypeDetails".into(), s(&m.recipient_type_details)),
            ("Guid".into(), Prop::Guid(m.guid)),
            ("ExchangeGuid".into(), Prop::Guid(m.exchange_guid)),
            (
                "ExternalDirectoryObjectId".into(),
                s(&m.external_id.to_string()),
            ),
            ("DistinguishedName".into(), s(&self.dn(&m.name))),
            ("OrganizationId".into(), s(&self.organization)),
            ("HiddenFromAddressListsEnabled".into(), Prop::Bool(m.hidden)),
            (
                "LitigationHoldEnabled".into(),
                Prop::Bool(m.litigation_hold),
            ),
            (
                "LitigationHoldDate".into(),
                m.litigation_hold_date
                    .map_or(Prop::Null, |d| Prop::Date(d, false)),
            ),
            ("LitigationHoldDuration".into(), s("Unlimited")),
            (
                "ForwardingSmtpAddress".into(),
                m.forwarding_smtp.as_deref().map_or(Prop::Null, s),
            ),
            (
                "DeliverToMailboxAndForward".into(),
                Prop::Bool(m.deliver_and_forward),
            ),
        ];
        for (i, c) in m.custom.iter().enumerate() {
            p.push((format!("CustomAttribute{}", i + 1), s(c)));
        }
        p.extend([
            ("ProhibitSendQuota".into(), s(&m.prohibit_send_quota)),
            (
                "RetainDeletedItemsFor".into(),
                s(&m.retain_deleted_items_for),
            ),
            ("RecipientLimits".into(), s("500")),
            ("PitrCopyIntervalInSeconds".into(), Prop::I16(0)),
            ("RecipientSoftDeletedStatus".into(), Prop::I32(0)),
            ("ArchiveQuota".into(), s("100 GB (107,374,182,400 bytes)")),
            ("Languages".into(), Prop::Multi(m.languages.clone())),
            ("WhenCreated".into(), Prop::Date(m.created, false)),
            ("WhenCreatedUTC".into(), Prop::Date(m.created, true)),
            ("WhenChanged".into(), Prop::Date(m.changed, false)),
            ("WhenChangedUTC".into(), Prop::Date(m.changed, true)),
            ("IsValid".into(), Prop::Bool(true)),
            ("ObjectState".into(), s("Unchanged")),
        ]);
        p
    }

    fn recipient_props(&self, m: &Mailbox) -> Vec<(String, Prop)> {
        let s = |v: &str| Prop::Str(v.to_owned());
        vec![
            ("Name".into(), s(&m.name)),
            ("Identity".into(), s(&m.name)),
            ("Alias".into(), s(&m.name)),
            ("DisplayName".into(), s(&m.display_name)),
            ("PrimarySmtpAddress".into(), s(&m.primary_smtp)),
            (
                "EmailAddresses".into(),
                Prop::Multi(m.email_addresses.clone()),
            ),
            ("RecipientType".into(), s("UserMailbox")),
            ("RecipientTypeDetails".into(), s(&m.recipient_type_details)),
            ("Guid".into(), Prop::Guid(m.guid)),
            (
                "ExternalDirectoryObjectId".into(),
                s(&m.external_id.to_string()),
            ),
            ("HiddenFromAddressListsEnabled".into(), Prop::Bool(m.hidden)),
            ("WhenCreated".into(), Prop::Date(m.created, false)),
            ("WhenChanged".into(), Prop::Date(m.changed, false)),
            ("IsValid".into(), Prop::Bool(true)),
        ]
    }

    fn matches_identity(m: &Mailbox, id: &str) -> bool {
        let id = id.trim();
        let bare = id.split_once(':').map_or(id, |(p, rest)| {
            if p.eq_ignore_ascii_case("smtp") {
                rest
            } else {
                id
            }
        });
        if id.contains('*') {
            return [&m.name, &m.display_name, &m.primary_smtp]
                .iter()
                .any(|v| wildcard_match(id, v));
        }
        m.name.eq_ignore_ascii_case(id)
            || m.display_name.eq_ignore_ascii_case(id)
            || m.upn.eq_ignore_ascii_case(bare)
            || m.primary_smtp.eq_ignore_ascii_case(bare)
            || m.email_addresses.iter().any(|a| {
                a.split_once(':')
                    .is_some_and(|(_, x)| x.eq_ignore_ascii_case(bare))
            })
            || id
                .parse::<Uuid>()
                .is_ok_and(|g| g == m.guid || g == m.exchange_guid || g == m.external_id)
    }

    fn find(&self, state: &State, id: &str) -> Result<(usize, Arc<Mailbox>), ExchangeError> {
        state
            .mailboxes
            .iter()
            .enumerate()
            .find(|(_, m)| Self::matches_identity(m, id))
            .map(|(i, m)| (i, m.clone()))
            .ok_or_else(|| ExchangeError::not_found(id, &self.server))
    }

    fn check_parameters(
        &self,
        cmdlet: &str,
        params: &Map<String, Json>,
    ) -> Result<(), ExchangeError> {
        let Some(entry) = catalog().lookup(cmdlet) else {
            return Err(ExchangeError::command_not_found(cmdlet));
        };
        for key in params.keys().filter(|k| !k.contains('@')) {
            let known = entry
                .metadata
                .parameters
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(key))
                || COMMON.iter().any(|c| c.eq_ignore_ascii_case(key));
            if !known {
                return Err(binding_error(format!(
                    "A parameter cannot be found that matches parameter name '{key}'."
                )));
            }
        }
        Ok(())
    }

    /// Runs one cmdlet with REST-style parameters.
    ///
    /// # Errors
    /// [`ExchangeError`] with Exchange's text: unknown identity, bad parameter, unknown cmdlet.
    pub fn invoke(
        &self,
        cmdlet: &str,
        params: &Map<String, Json>,
    ) -> Result<Outcome, ExchangeError> {
        self.check_parameters(cmdlet, params)?;
        let p = Params(params);
        let canonical = catalog()
            .lookup(cmdlet)
            .map(|e| e.metadata.name.clone())
            .unwrap_or_default();
        match canonical.as_str() {
            "Get-Mailbox" => self.get_mailboxes(&p, Item::Mailbox),
            "Get-Recipient" => self.get_mailboxes(&p, Item::Recipient),
            "Get-MailboxStatistics" => {
                let id = p.str("Identity").ok_or_else(|| {
                    binding_error(
                        "Cannot process command because of one or more missing mandatory parameters: Identity.".into(),
                    )
                })?;
                let state = self.read();
                let (_, m) = self.find(&state, &id)?;
                Ok(Outcome {
                    items: vec![Item::Statistics(m)],
                    warnings: vec![],
                })
            }
            "Set-Mailbox" => self.set_mailbox(&p),
            "Get-OrganizationConfig" => Ok(Outcome {
                items: vec![Item::Organization(self.read().org.clone())],
                warnings: vec![],
            }),
            "Set-OrganizationConfig" => {
                if p.switch("WhatIf") {
                    return Ok(Outcome::default());
                }
                let mut state = self.write();
                let before = state.org.clone();
                if let Some(b) = p.bool("AuditDisabled")? {
                    state.org.audit_disabled = b;
                }
                if let Some(b) = p.bool("OAuth2ClientProfileEnabled")? {
                    state.org.oauth2_client_profile = b;
                }
                if let Some(b) = p.bool("FocusedInboxOn")? {
                    state.org.focused_inbox = b;
                }
                if state.org == before {
                    return Ok(Outcome {
                        items: vec![],
                        warnings: vec![format!(
                            "The command completed successfully but no settings of '{}' have been modified.",
                            self.organization
                        )],
                    });
                }
                state.org.changed = now();
                Ok(Outcome::default())
            }
            "Get-AcceptedDomain" => {
                let domains = [
                    (base_domain(&self.organization), true, false),
                    (self.organization.clone(), false, true),
                ];
                let id = p.str("Identity");
                let items: Vec<Item> = domains
                    .into_iter()
                    .filter(|(d, _, _)| id.as_deref().is_none_or(|i| wildcard_match(i, d)))
                    .map(|(d, a, b)| Item::Domain(d, a, b))
                    .collect();
                if let Some(i) = id
                    && items.is_empty()
                {
                    return Err(ExchangeError::not_found(&i, &self.server));
                }
                Ok(Outcome {
                    items,
                    warnings: vec![],
                })
            }
            other => Ok(Outcome {
                items: vec![],
                warnings: vec![format!(
                    "The simulated Exchange Online does not implement '{other}'; it ran nothing and returned no objects."
                )],
            }),
        }
    }

    fn get_mailboxes(
        &self,
        p: &Params<'_>,
        wrap: fn(Arc<Mailbox>) -> Item,
    ) -> Result<Outcome, ExchangeError> {
        let limit: Option<usize> = match p.get("ResultSize") {
            None => Some(1000),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("Unlimited") => None,
            Some(Json::Number(n)) if n.as_u64().is_some() => n.as_u64().map(|n| n as usize),
            Some(Json::String(s)) if s.parse::<usize>().is_ok() => s.parse().ok(),
            Some(other) => {
                return Err(binding_error(format!(
                    "Cannot process argument transformation on parameter 'ResultSize'. Cannot convert value \"{}\" \
                     to type \"Microsoft.Exchange.Data.Unlimited`1[System.UInt32]\".",
                    other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned)
                )));
            }
        };
        let filter = p.str("Filter").map(|f| Filter::parse(&f)).transpose()?;
        let anr = p.str("Anr");
        let types: Option<Vec<String>> = p.get("RecipientTypeDetails").map(strings);
        let state = self.read();
        let mut all: Vec<Arc<Mailbox>> = if let Some(id) = p.str("Identity") {
            if id.contains('*') {
                state
                    .mailboxes
                    .iter()
                    .filter(|m| Self::matches_identity(m, &id))
                    .cloned()
                    .collect()
            } else {
                vec![self.find(&state, &id)?.1]
            }
        } else {
            state.mailboxes.clone()
        };
        drop(state);
        if let Some(a) = anr {
            let a = a.to_ascii_lowercase();
            all.retain(|m| {
                [&m.name, &m.display_name, &m.primary_smtp]
                    .iter()
                    .any(|v| v.to_ascii_lowercase().starts_with(&a))
            });
        }
        if let Some(t) = types {
            all.retain(|m| {
                t.iter()
                    .any(|t| t.eq_ignore_ascii_case(&m.recipient_type_details))
            });
        }
        if let Some(f) = filter {
            all.retain(|m| {
                f.matches(&ExObject {
                    type_names: vec![],
                    props: self.mailbox_props(m),
                })
            });
        }
        let mut warnings = Vec::new();
        if let Some(n) = limit
            && all.len() > n
        {
            all.truncate(n);
            warnings.push(MORE_RESULTS.to_owned());
        }
        Ok(Outcome {
            items: all.into_iter().map(wrap).collect(),
            warnings,
        })
    }

    fn set_mailbox(&self, p: &Params<'_>) -> Result<Outcome, ExchangeError> {
        let id = p.str("Identity").ok_or_else(|| {
            binding_error("Cannot process command because of one or more missing mandatory parameters: Identity.".into())
        })?;
        let mut state = self.write();
        let (index, current) = self.find(&state, &id)?;
        let mut m = (*current).clone();
        for i in 1..=15 {
            if let Some(v) = p.get(&format!("CustomAttribute{i}")) {
                m.custom[i - 1] = strings(v).join(" ");
            }
        }
        if let Some(v) = p.str("DisplayName") {
            m.display_name = v;
        }
        if let Some(b) = p.bool("HiddenFromAddressListsEnabled")? {
            m.hidden = b;
        }
        if let Some(b) = p.bool("DeliverToMailboxAndForward")? {
            m.deliver_and_forward = b;
        }
        if let Some(b) = p.bool("LitigationHoldEnabled")? {
            if b && !m.litigation_hold {
                m.litigation_hold_date = Some(now());
            }
            if !b {
                m.litigation_hold_date = None;
            }
            m.litigation_hold = b;
        }
        if let Some(v) = p.get("ForwardingSmtpAddress") {
            m.forwarding_smtp = match v {
                Json::Null => None,
                other => strings(other).first().map(|a| {
                    if a.contains(':') {
                        a.clone()
                    } else {
                        format!("smtp:{a}")
                    }
                }),
            };
        }
        if let Some(v) = p.str("ProhibitSendQuota") {
            m.prohibit_send_quota = v;
        }
        if let Some(v) = p.str("RetainDeletedItemsFor") {
            m.retain_deleted_items_for = v;
        }
        if let Some(v) = p.get("Languages") {
            m.languages = strings(v);
        }
        if let Some(v) = p.get("EmailAddresses") {
            let norm = |a: &str| {
                if a.contains(':') {
                    a.to_owned()
                } else {
                    format!("smtp:{a}")
                }
            };
            match v {
                Json::Object(h) => {
                    let h = Params(h);
                    for a in h.get("Add").map(strings).unwrap_or_default() {
                        let a = norm(&a);
                        if !m.email_addresses.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
                            m.email_addresses.push(a);
                        }
                    }
                    for r in h.get("Remove").map(strings).unwrap_or_default() {
                        let r = norm(&r);
                        m.email_addresses.retain(|x| !x.eq_ignore_ascii_case(&r));
                    }
                }
                other => m.email_addresses = strings(other).iter().map(|a| norm(a)).collect(),
            }
        }
        if p.switch("WhatIf") {
            return Ok(Outcome::default());
        }
        if m == *current {
            return Ok(Outcome {
                items: vec![],
                warnings: vec![format!(
                    "The command completed successfully but no settings of '{}' have been modified.",
                    m.name
                )],
            });
        }
        m.changed = now();
        state.mailboxes[index] = Arc::new(m);
        Ok(Outcome::default())
    }
}

fn size_text(bytes: i64) -> String {
    let mut grouped = String::new();
    let digits = bytes.to_string();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{:.2} MB ({grouped} bytes)", bytes as f64 / 1_048_576.0)
}

/// A one-clause OPATH filter: `Property -eq|-ne|-like|-notlike 'value'`.
struct Filter {
    property: String,
    op: String,
    value: String,
}

impl Filter {
    fn parse(text: &str) -> Result<Self, ExchangeError> {
        let invalid = || {
            ExchangeError::new(
                "Microsoft.Exchange.Management.Tasks.InvalidFilterException",
                format!(
                    "Cannot bind parameter 'Filter' to the target. Exception setting \"Filter\": \"Invalid filter syntax. \
                     For a description of the filter parameter syntax see the command help.\n\"{text}\" at position 1.\""
                ),
            )
        };
        let t = text
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim();
        let mut parts = t.splitn(3, char::is_whitespace);
        let (Some(prop), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let op = op.to_ascii_lowercase();
        if !["-eq", "-ne", "-like", "-notlike"].contains(&op.as_str()) {
            return Err(invalid());
        }
        let value = value
            .trim()
            .trim_matches(|c| c == '\'' || c == '"')
            .to_owned();
        let value = match value.to_ascii_lowercase().as_str() {
            "$true" => "True".to_owned(),
            "$false" => "False".to_owned(),
            "$null" => String::new(),
            _ => value,
        };
        Ok(Self {
            property: prop.to_owned(),
            op,
            value,
        })
    }

    fn matches(&self, obj: &ExObject) -> bool {
        let actual = obj.get(&self.property).map(|p| match p {
            Prop::Multi(v) => v.clone(),
            other => vec![other.text()],
        });
        let actual = actual.unwrap_or_default();
        let any = |f: &dyn Fn(&str) -> bool| actual.iter().any(|a| f(a));
        match self.op.as_str() {
            "-eq" => any(&|a| a.eq_ignore_ascii_case(&self.value)),
            "-ne" => !any(&|a| a.eq_ignore_ascii_case(&self.value)),
            "-like" => any(&|a| wildcard_match(&self.value, a)),
            _ => !any(&|a| wildcard_match(&self.value, a)),
        }
    }
}

/// Total requests observed (convenience for tests).
pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap()
    }

    fn tenant(n: usize) -> Arc<Tenant> {
        ExchangeData::new(n).tenant(
            "11111111-2222-3333-4444-555555555555",
            "contoso.onmicrosoft.com",
        )
    }

    #[test]
    fn deterministic_per_tenant() {
        let a = tenant(20);
        let b = tenant(20);
        let ga = a
            .invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"Identity": "user00012"})),
            )
            .unwrap();
        let gb = b
            .invoke(
                "get-mailbox",
                &params(serde_json::json!({"identity": "user00012"})),
            )
            .unwrap();
        assert_eq!(a.object(&ga.items[0]), b.object(&gb.items[0]));
        let other = ExchangeData::new(20).tenant("other", "fabrikam.onmicrosoft.com");
        let go = other
            .invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"Identity": "user00012"})),
            )
            .unwrap();
        assert_ne!(
            a.object(&ga.items[0]).get("Guid"),
            other.object(&go.items[0]).get("Guid")
        );
    }

    #[test]
    fn result_size_default_warning_and_unlimited() {
        let t = tenant(1500);
        let o = t.invoke("Get-Mailbox", &Map::new()).unwrap();
        assert_eq!(o.items.len(), 1000);
        assert_eq!(o.warnings, vec![MORE_RESULTS.to_string()]);
        let o = t
            .invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"ResultSize": "Unlimited"})),
            )
            .unwrap();
        assert_eq!(o.items.len(), 1500);
        assert!(o.warnings.is_empty());
        let o = t
            .invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"ResultSize": 10})),
            )
            .unwrap();
        assert_eq!(o.items.len(), 10);
        assert!(
            t.invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"ResultSize": "lots"}))
            )
            .unwrap_err()
            .is_terminating()
        );
    }

    #[test]
    fn unknown_identity_has_exchange_text() {
        let t = tenant(3);
        let e = t
            .invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"Identity": "nosuchuser"})),
            )
            .unwrap_err();
        assert!(e.message.starts_with("The operation couldn't be performed because object 'nosuchuser' couldn't be found on 'AM0PR01MB"), "{}", e.message);
        assert_eq!(e.short_name(), "ManagementObjectNotFoundException");
        assert!(!e.is_terminating());
    }

    #[test]
    fn set_then_get_shows_the_change_and_no_change_warns() {
        let t = tenant(3);
        let set = params(serde_json::json!({
            "Identity": "AdeleV", "CustomAttribute1": "x", "HiddenFromAddressListsEnabled": true,
            "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": ["extra@contoso.com"]},
        }));
        assert!(t.invoke("Set-Mailbox", &set).unwrap().warnings.is_empty());
        let o = t
            .invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"Identity": "adelev@contoso.com"})),
            )
            .unwrap();
        let obj = t.object(&o.items[0]);
        assert_eq!(obj.get("CustomAttribute1"), Some(&Prop::Str("x".into())));
        assert_eq!(
            obj.get("HiddenFromAddressListsEnabled"),
            Some(&Prop::Bool(true))
        );
        let Some(Prop::Multi(addrs)) = obj.get("EmailAddresses") else {
            panic!()
        };
        assert!(addrs.contains(&"smtp:extra@contoso.com".to_string()));
        let again = t.invoke("Set-Mailbox", &set).unwrap();
        assert_eq!(again.warnings, vec!["The command completed successfully but no settings of 'AdeleV' have been modified.".to_string()]);
    }

    #[test]
    fn unknown_parameter_and_cmdlet() {
        let t = tenant(1);
        let e = t
            .invoke("Get-Mailbox", &params(serde_json::json!({"Bogus": 1})))
            .unwrap_err();
        assert_eq!(
            e.message,
            "A parameter cannot be found that matches parameter name 'Bogus'."
        );
        assert!(e.is_terminating());
        assert!(
            t.invoke("Get-Nothing", &Map::new())
                .unwrap_err()
                .is_terminating()
        );
    }

    #[test]
    fn filter_and_json_annotations() {
        let t = tenant(30);
        let o = t
            .invoke("Get-Mailbox", &params(serde_json::json!({"Filter": "CustomAttribute1 -eq 'Sales'", "ResultSize": "Unlimited"})))
            .unwrap();
        assert_eq!(o.items.len(), 15);
        let json = t.object(&o.items[0]).to_json();
        assert_eq!(json["Guid@data.type"], "System.Guid");
        assert_eq!(json["EmailAddresses@odata.type"], "#Collection(String)");
        assert_eq!(json["PitrCopyIntervalInSeconds@odata.type"], "#Int16");
        assert!(json["WhenCreatedUTC"].as_str().unwrap().ends_with('Z'));
        assert!(json["WhenCreated"].as_str().unwrap().ends_with("+00:00"));
        assert!(
            t.invoke(
                "Get-Mailbox",
                &params(serde_json::json!({"Filter": "nonsense"}))
            )
            .is_err()
        );
    }
}
