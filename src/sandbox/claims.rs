//! The claims the simulators put in and check on an Exchange app-only token, written from the
//! reference (exo-access-token.md §2–§4), not taken from `token::claims`.
//!
//! The proxy's own diagnosis (`token::claims`) reads these same claims; if the simulators
//! imported its constants, a wrong id there would be agreed with here and no test would
//! notice. So the simulators keep their own copy, each value next to the reference section
//! it comes from.

/// Exchange Online's resource: the token's `aud` (exo-access-token.md §2, `aud`).
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

/// Security & Compliance's resource: the `aud` of its tokens (scc-rest-adminapi.md §1, §3).
pub const COMPLIANCE_RESOURCE: &str = "https://ps.compliance.protection.outlook.com";

/// Role template ids S&C accepts for app-only access (scc-rest-adminapi.md §1: Compliance
/// Administrator, Global Administrator, Global Reader, Security Administrator, Security
/// Reader; not Exchange Administrator, Exchange Recipient Administrator, Helpdesk
/// Administrator).
pub const COMPLIANCE_ROLES: [&str; 5] = [
    "17315797-102d-40b4-93e0-432062caca18",
    "62e90394-69f5-4237-9190-012177145e10",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "5d6b6bb7-de71-4623-b4af-96380a352509",
];

/// The application permission an app-only token must carry in `roles`
/// (exo-access-token.md §2 `roles`, §3 layer 3).
pub const MANAGE_AS_APP: &str = "Exchange.ManageAsApp";

/// Present in the `wids` of every app-only token, role or not; it is not a role template id
/// (exo-access-token.md §4, second bullet).
pub const APP_ONLY_MARKER: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";

/// Exchange Administrator's role template id (exo-access-token.md §4.1).
pub const EXCHANGE_ADMINISTRATOR: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";

/// Role template ids Exchange accepts for app-only access, in the order of the table in
/// exo-access-token.md §4.1: Exchange Administrator, Global Administrator, Global Reader,
/// Compliance Administrator, Exchange Recipient Administrator, Helpdesk Administrator,
/// Security Administrator, Security Reader.
pub const SUPPORTED_ROLES: [&str; 8] = [
    EXCHANGE_ADMINISTRATOR,
    "62e90394-69f5-4237-9190-012177145e10",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "17315797-102d-40b4-93e0-432062caca18",
    "31392ffb-586c-42d1-9346-e59415a2cc4e",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "5d6b6bb7-de71-4623-b4af-96380a352509",
];
