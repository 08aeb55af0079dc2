//! Client data on its way in: base64 → Xpress → fragments → PSRP messages → CLIXML, decoded
//! off the async workers and outside the shell's locks.
//!
//! Decoding is the CPU-heavy part of a request (a 1 MB envelope is a megabyte of base64, maybe
//! Xpress, and a CLIXML document), and it used to run on the async worker, partly under the
//! shell's `std::sync::Mutex`, so one user's large request stalled everyone's. Here a blob
//! above [`OFFLOAD_THRESHOLD`] is decoded on the blocking pool (`spawn_blocking`), everything
//! else inline; either way no `std::sync::Mutex` is held. The fragment reassembler of a shell
//! or pipeline is behind an async mutex, because fragments must be fed in order; the caller
//! then applies the decoded messages to the shell's state in a short critical section.
//!
//! A client that goes away cancels its work between messages: the request future is dropped,
//! which sets the flag the blocking task checks (the message in progress finishes; each is
//! bounded by `MAX_CLIENT_MESSAGE` and the CLIXML limits).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;

use super::clixml::Value;
use super::executor::{MetadataQuery, Pipeline};
use super::fragment::{Defragmenter, FragmentError};
use super::message::{Destination, Message, MessageType};
use super::psrp::{self, BodyError};
use super::shell::{MAX_CLIENT_MESSAGE, bad_data};
use super::wsman::Fault;
use super::xpress;

/// Inputs larger than this (base64 bytes) are decoded on the blocking pool: below it the
/// decoding takes well under a millisecond and a thread hop would cost more than it saves.
pub const OFFLOAD_THRESHOLD: usize = 64 * 1024;

/// A shell's or pipeline's fragment reassembler: fed in order by one request at a time.
pub(crate) type Reassembler = Arc<tokio::sync::Mutex<Defragmenter>>;

/// Which level a blob is for: the messages each accepts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Runspace-pool messages (creationXml, shell-level Send).
    Pool,
    /// Pipeline messages (Command arguments, Send with a CommandId).
    Pipeline,
}

/// One client message with its body decoded as far as the endpoint needs.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The message; `data` is emptied once decoded.
    pub msg: Message,
    /// The decoded body.
    pub body: Decoded,
}

/// A message body, decoded.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A CLIXML value and its decoded size (pool messages, PIPELINE_INPUT).
    Value(Result<(Value, usize), BodyError>),
    /// CREATE_PIPELINE.
    CreatePipeline(Result<Pipeline, BodyError>),
    /// GET_COMMAND_METADATA.
    Metadata(Result<MetadataQuery, BodyError>),
    /// A message the endpoint acts on without its body, or ignores.
    Unread,
}

/// What the bytes were called in the request, for fault texts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    /// `creationXml`, `rsp:Arguments`, `rsp:Stream`.
    pub element: &'static str,
    /// The data is Xpress-compressed (a Send on a compressed shell).
    pub compressed: bool,
}

/// Sets the flag when dropped: the request that started the work is gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Decodes one base64 blob of fragments for `level`, feeding `reassembler`.
///
/// # Errors
/// A fault for data that is not base64, not Xpress, malformed fragments or messages, a
/// message addressed to the client, or a half-received message over the owner's memory
/// budget.
///
/// # Cancel safety
/// Dropping the future stops the decoding between messages; fragments already fed stay fed
/// (the client that went away cannot resume that stream anyway).
pub(crate) async fn decode(
    reassembler: &Reassembler,
    data: &str,
    source: Source,
    level: Level,
) -> Result<Vec<Inbound>, Fault> {
    let mut defrag = reassembler.clone().lock_owned().await;
    if data.len() <= OFFLOAD_THRESHOLD {
        return decode_blocking(&mut defrag, data, source, level, &AtomicBool::new(false));
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(cancelled.clone());
    let data = data.to_owned();
    tokio::task::spawn_blocking(move || {
        decode_blocking(&mut defrag, &data, source, level, &cancelled)
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "decoding client data panicked");
        Err(bad_data("the data could not be decoded"))
    })
}

fn decode_blocking(
    defrag: &mut Defragmenter,
    data: &str,
    source: Source,
    level: Level,
    cancelled: &AtomicBool,
) -> Result<Vec<Inbound>, Fault> {
    let mut blob = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad_data(&format!("{} is not base64: {e}", source.element)))?;
    if source.compressed && !blob.is_empty() {
        blob = xpress::decompress_stream(&blob, MAX_CLIENT_MESSAGE)
            .map_err(|e| bad_data(&format!("compressed Send data: {e}")))?;
    }
    let what = match level {
        Level::Pool => "pool",
        Level::Pipeline => "pipeline",
    };
    let messages = defrag.push(&blob).map_err(|e| match e {
        FragmentError::OverBudget(over) => super::memory_fault(&over),
        e => bad_data(&format!("{what} fragments: {e}")),
    })?;
    drop(blob);
    let mut out = Vec::with_capacity(messages.len());
    for raw in messages {
        if cancelled.load(Ordering::Relaxed) {
            break;
        }
        let mut msg =
            Message::decode(&raw).map_err(|e| bad_data(&format!("{what} message: {e}")))?;
        drop(raw);
        if msg.destination != Destination::Server {
            return Err(bad_data(
                "a message addressed to the client was sent to the server",
            ));
        }
        let body = decode_body(&msg, level);
        msg.data = Vec::new();
        out.push(Inbound { msg, body });
    }
    Ok(out)
}

fn decode_body(msg: &Message, level: Level) -> Decoded {
    use MessageType as T;
    let data = &msg.data;
    match (level, msg.message_type) {
        (Level::Pool, T::SessionCapability) => {
            Decoded::Value(psrp::decode_value_sized("SESSION_CAPABILITY", data))
        }
        (Level::Pool, T::InitRunspacePool) => {
            Decoded::Value(psrp::decode_value_sized("INIT_RUNSPACEPOOL", data))
        }
        (
            Level::Pool,
            T::SetMaxRunspaces
            | T::SetMinRunspaces
            | T::ResetRunspaceState
            | T::GetAvailableRunspaces,
        ) => Decoded::Value(psrp::decode_value_sized("runspace count request", data)),
        (Level::Pipeline, T::CreatePipeline) => {
            Decoded::CreatePipeline(psrp::parse_create_pipeline(data))
        }
        (Level::Pipeline, T::GetCommandMetadata) => {
            Decoded::Metadata(psrp::parse_metadata_query(data))
        }
        (Level::Pipeline, T::PipelineInput) => {
            Decoded::Value(psrp::decode_value_sized("PIPELINE_INPUT", data))
        }
        _ => Decoded::Unread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::fragment::fragment;
    use crate::remoting::memory::MemoryBudget;

    fn blob(object_id: u64, message_type: MessageType, xml: &str) -> String {
        let msg = Message {
            destination: Destination::Server,
            message_type,
            rpid: uuid::Uuid::nil(),
            pid: uuid::Uuid::nil(),
            data: xml.as_bytes().to_vec(),
        };
        base64::engine::general_purpose::STANDARD
            .encode(fragment(object_id, &msg.encode(), 32 * 1024).concat())
    }

    fn reassembler(budget: &Arc<MemoryBudget>) -> Reassembler {
        Arc::new(tokio::sync::Mutex::new(Defragmenter::with_charge(
            MAX_CLIENT_MESSAGE,
            budget.empty(),
        )))
    }

    const PIPELINE: Source = Source {
        element: "rsp:Stream",
        compressed: false,
    };

    /// A large input is decoded on the blocking pool: on a single-threaded runtime another
    /// task runs while it is decoded (inline decoding would finish before it got a turn).
    #[tokio::test(flavor = "current_thread")]
    async fn large_input_is_decoded_off_the_async_worker() {
        let budget = MemoryBudget::new("ops", 64 << 20);
        let r = reassembler(&budget);
        let xml = format!("<S>{}</S>", "y".repeat(600 * 1024));
        let data = blob(1, MessageType::PipelineInput, &xml);
        assert!(data.len() > OFFLOAD_THRESHOLD);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(());
        });
        let got = decode(&r, &data, PIPELINE, Level::Pipeline).await.unwrap();
        assert!(
            rx.try_recv().is_ok(),
            "the other task ran during the decode"
        );
        let [
            Inbound {
                msg,
                body: Decoded::Value(Ok((value, size))),
            },
        ] = &got[..]
        else {
            panic!("{got:?}");
        };
        assert_eq!(msg.message_type, MessageType::PipelineInput);
        assert!(msg.data.is_empty(), "the raw bytes are not kept");
        assert_eq!(value, &Value::String("y".repeat(600 * 1024)));
        assert!(*size >= 600 * 1024);
        assert_eq!(budget.used(), 0, "nothing half-received is left");

        // Small inputs stay inline: the other task has not run yet when the decode returns.
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(());
        });
        let small = blob(2, MessageType::PipelineInput, "<S>z</S>");
        decode(&r, &small, PIPELINE, Level::Pipeline).await.unwrap();
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn bad_input_is_a_fault_that_says_what() {
        let budget = MemoryBudget::new("ops", 1 << 20);
        let r = reassembler(&budget);
        let err = decode(&r, "not base64!", PIPELINE, Level::Pipeline)
            .await
            .unwrap_err();
        assert!(
            err.message.contains("rsp:Stream is not base64"),
            "{}",
            err.message
        );
        assert_eq!(err.proxy_code.0, "bad-request-data");
        // A half-received message over the owner's budget: the memory fault.
        let mut frag = Vec::new();
        crate::remoting::fragment::Fragment {
            object_id: 9,
            fragment_id: 0,
            start: true,
            end: false,
            blob: &vec![1; 2 << 20],
        }
        .encode_into(&mut frag);
        let data = base64::engine::general_purpose::STANDARD.encode(frag);
        let err = decode(&r, &data, PIPELINE, Level::Pipeline)
            .await
            .unwrap_err();
        assert_eq!(err.proxy_code.0, "memory-budget", "{}", err.message);
        assert!(
            err.message.contains("more than the 1 MiB"),
            "{}",
            err.message
        );
        // A message addressed to the client.
        let mut msg = Message::to_client(
            MessageType::PipelineInput,
            uuid::Uuid::nil(),
            uuid::Uuid::nil(),
            &Value::Nil,
        );
        msg.destination = Destination::Client;
        let data = base64::engine::general_purpose::STANDARD
            .encode(fragment(3, &msg.encode(), 32 * 1024).concat());
        let err = decode(&r, &data, PIPELINE, Level::Pipeline)
            .await
            .unwrap_err();
        assert!(
            err.message.contains("addressed to the client"),
            "{}",
            err.message
        );
    }
}
