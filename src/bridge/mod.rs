//! REST bridge (`rest` mode): runs remoting pipelines through Exchange Online's REST admin API.
//!
//! Exchange Online turned Remote PowerShell off; the REST admin API
//! (`/adminapi/beta/{tenant}/InvokeCommand`) is what the current module uses. In `rest` mode
//! the proxy is itself the script's remoting endpoint, and [`RestExecutor`] is the
//! `remoting::Executor` behind it: each pipeline's commands are bound like PowerShell would
//! (`remoting::binding`, metadata from [`catalog`]), converted to REST parameters
//! ([`convert`]), run one cmdlet invocation at a time ([`pipeline`]) through the
//! InvokeCommand client ([`rest`]), and the JSON results streamed back as the CLIXML objects,
//! warnings and error records ([`errors`]) RPS produced.
//!
//! Layout: `catalog` (command metadata), `convert` (CLIXML ⇄ JSON), `errors` (REST errors →
//! ErrorRecords), `pipeline` (pipeline semantics over a single-cmdlet backend), `rest`
//! (HTTP: headers, paging, retries, timeouts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use crate::config::{Organization, TenantId, TenantName};
use crate::remoting::executor::{
    CommandMetadata, ErrorRecord, Executor, InputStream, MetadataQuery, OutputSink, Pipeline,
    PipelineEnd,
};

pub mod catalog;
pub mod convert;
pub mod errors;
pub mod pipeline;
pub mod region;
pub mod rest;

pub use rest::{RestClient, RestSettings};

use catalog::Catalog;

/// Who opened a shell in `rest` mode, as the proxy's listener established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestCaller {
    /// The local user (logs).
    pub user: String,
    /// Local tenant name (token engine key).
    pub tenant: TenantName,
    /// Directory id (REST URL path).
    pub tenant_id: TenantId,
    /// Organization domain.
    pub organization: Organization,
    /// The app's client id (for messages: Exchange's refusals name it).
    pub app_id: String,
}

/// How long a failed EXOModuleFile lookup is remembered before it is tried again.
const CATALOG_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// The `rest`-mode executor.
pub struct RestExecutor<T: ?Sized = crate::token::TokenEngine> {
    client: RestClient<T>,
    builtin: Catalog,
    catalogs: Mutex<HashMap<TenantId, (Instant, Catalog)>>,
}

impl<T: crate::token::TokenProvider + ?Sized> RestExecutor<T> {
    /// An executor calling Exchange with `http` (trust roots for the endpoint configured by
    /// the caller) and tokens from `tokens`.
    pub fn new(http: reqwest::Client, tokens: Arc<T>, settings: RestSettings) -> Self {
        Self {
            builtin: Catalog::builtin_for(settings.audience),
            client: RestClient::new(http, tokens, settings),
            catalogs: Mutex::new(HashMap::new()),
        }
    }

    /// Counts cmdlet calls, pages and retries into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::BridgeMetrics) -> Self {
        self.client.metrics = metrics;
        self
    }

    /// Records each cmdlet call into `audit` (default: the log target).
    #[must_use]
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.client.audit = audit;
        self
    }

    /// The caller's tenant's catalog: the built-in table trimmed to the cmdlets Exchange
    /// exports to the app (fetched once per tenant and cached), or the whole built-in table
    /// when the lookup is off or fails (logged; retried after a few minutes).
    pub async fn catalog(&self, caller: &RestCaller) -> Catalog {
        if !self.client.settings().fetch_exported_cmdlets {
            return self.builtin.clone();
        }
        if let Some((until, c)) = self.lock().get(&caller.tenant_id)
            && *until > Instant::now()
        {
            return c.clone();
        }
        let (catalog, ttl) = match self.client.exported_cmdlets(caller).await {
            Ok(names) if !names.is_empty() => (
                self.builtin.restricted_to(&names),
                self.client.settings().catalog_ttl,
            ),
            Ok(_) => (self.builtin.clone(), CATALOG_RETRY),
            Err(e) => {
                tracing::warn!(tenant = %caller.tenant, error = %e,
                    "cannot read the tenant's cmdlet list from Exchange; using the built-in list");
                (self.builtin.clone(), CATALOG_RETRY)
            }
        };
        self.lock().insert(
            caller.tenant_id.clone(),
            (Instant::now() + ttl, catalog.clone()),
        );
        catalog
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Instant, Catalog)>> {
        self.catalogs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: crate::token::TokenProvider + ?Sized> Executor for RestExecutor<T> {
    type Caller = RestCaller;

    /// The pull-based runner puts `Select-Object` & co. in place: `-First n` stops paging.
    const RUNS_LOCAL_COMMANDS: bool = true;

    fn tenant(caller: &RestCaller) -> Option<String> {
        Some(caller.organization.to_string())
    }

    async fn run(
        &self,
        caller: &RestCaller,
        pipeline: Pipeline,
        input: InputStream,
        output: OutputSink,
    ) -> PipelineEnd {
        let catalog = self.catalog(caller).await;
        pipeline::run(&self.client, caller, &catalog, pipeline, input, output).await
    }

    async fn command_metadata(
        &self,
        caller: &RestCaller,
        query: MetadataQuery,
    ) -> Result<Vec<CommandMetadata>, ErrorRecord> {
        Ok(self.catalog(caller).await.query(&query))
    }
}
