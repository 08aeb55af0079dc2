//! Bridge benchmark: 10,000 mailboxes through the REST bridge vs fetching the same pages
//! directly from the (simulated) admin API over the same HTTPS connection pool.
//!
//! "direct" = POST InvokeCommand, follow every `@odata.nextLink`, parse each page's JSON
//! (what any REST client must do at least). "bridge" = `RestExecutor::run` for
//! `Get-Mailbox -ResultSize Unlimited`, i.e. binding, paging, JSON → CLIXML objects, into the
//! bounded output queue the remoting endpoint reads. Reported: time to the first object,
//! total time, objects/s; median of several runs. Run: `cargo bench --bench bridge`.

#[path = "../tests/it/bridge/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use exo_authproxy::bridge::{RestExecutor, RestSettings};
use exo_authproxy::remoting::clixml::Value;
use exo_authproxy::remoting::executor::{
    Argument, Command, Executor, Output, OutputSink, Pipeline, PipelineEnd, Statement,
};
use exo_authproxy::sandbox::data::ExchangeData;

const MAILBOXES: usize = 10_000;
const RUNS: usize = 7;

struct Sample {
    first: Duration,
    total: Duration,
    objects: usize,
}

async fn direct(http: &reqwest::Client, url: &url::Url) -> Sample {
    let start = Instant::now();
    let body = serde_json::json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {"ResultSize": "Unlimited"}}});
    let mut next = Some(format!(
        "{url}adminapi/beta/{}/InvokeCommand",
        server::TENANT_ID
    ));
    let mut first = None;
    let mut objects = 0;
    while let Some(u) = next.take() {
        let rsp = http
            .post(&u)
            .header("Authorization", "Bearer bench")
            .header("Prefer", "odata.maxpagesize=1000")
            .json(&body)
            .send()
            .await
            .expect("page");
        let page: serde_json::Value = rsp.json().await.expect("json");
        let n = page["value"].as_array().map_or(0, Vec::len);
        if n > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        objects += n;
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    Sample {
        first: first.unwrap_or_default(),
        total: start.elapsed(),
        objects,
    }
}

async fn bridge(exec: &RestExecutor<server::TestTokens>) -> Sample {
    let start = Instant::now();
    let (sink, mut rx) = OutputSink::channel(256);
    let (_tx, input) = tokio::sync::mpsc::channel(1);
    let pipeline = Pipeline {
        statements: vec![Statement {
            commands: vec![Command {
                name: "Get-Mailbox".into(),
                is_script: false,
                args: vec![Argument {
                    name: Some("ResultSize".into()),
                    value: Value::String("Unlimited".into()),
                }],
                merge_errors_into_output: false,
            }],
        }],
        no_input: true,
        origin: Default::default(),
    };
    let caller = server::caller();
    let read = async {
        let mut first = None;
        let mut objects = 0;
        while let Some(o) = rx.recv().await {
            if let Output::Object(_) = o {
                if first.is_none() {
                    first = Some(start.elapsed());
                }
                objects += 1;
            }
        }
        (first, objects)
    };
    let (end, (first, objects)) = tokio::join!(exec.run(&caller, pipeline, input, sink), read);
    assert_eq!(end, PipelineEnd::Completed);
    Sample {
        first: first.unwrap_or_default(),
        total: start.elapsed(),
        objects,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, samples: &[Sample]) -> (Duration, Duration) {
    let first = median(samples.iter().map(|s| s.first).collect());
    let total = median(samples.iter().map(|s| s.total).collect());
    let n = samples[0].objects;
    println!(
        "{name:<7} objects {n:>6}  first object {:>8.1} ms  total {:>8.1} ms  {:>9.0} objects/s",
        first.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        n as f64 / total.as_secs_f64()
    );
    (first, total)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let api = server::AdminApi::start(Arc::new(ExchangeData::new(MAILBOXES))).await;
    let http = api.http_client();
    let mut settings = RestSettings::new(api.url.clone());
    settings.fetch_exported_cmdlets = false;
    let exec = RestExecutor::new(
        http.clone(),
        Arc::new(server::TestTokens::default()),
        settings,
    );
    // Warm up connections and the tenant's data.
    let _ = direct(&http, &api.url).await;
    let _ = bridge(&exec).await;
    let mut d = Vec::new();
    let mut b = Vec::new();
    for _ in 0..RUNS {
        d.push(direct(&http, &api.url).await);
        b.push(bridge(&exec).await);
    }
    assert!(d.iter().chain(&b).all(|s| s.objects == MAILBOXES));
    println!(
        "bridge benchmark: Get-Mailbox -ResultSize Unlimited, {MAILBOXES} mailboxes, pages of 1000, median of {RUNS}"
    );
    let (df, dt) = report("direct", &d);
    let (bf, bt) = report("bridge", &b);
    println!(
        "bridge vs direct: total {:+.1}%  first object {:+.1} ms",
        (bt.as_secs_f64() / dt.as_secs_f64() - 1.0) * 100.0,
        (bf.as_secs_f64() - df.as_secs_f64()) * 1e3
    );
}
