//! The objects a local command has to keep until later (`Select-Object -Last`, `-SkipLast`,
//! `-Unique`), bounded by count and by estimated bytes.
//!
//! Everything else the endpoint does streams: an object is converted, sent and forgotten. These
//! few options cannot stream, and `Get-Mailbox -ResultSize Unlimited | Select-Object -Last
//! 1000000` would otherwise hold a tenant's whole directory in the proxy's memory on behalf of
//! one script. Both limits are generous for real use (the count is ten times a large tenant's
//! `-Last`; the bytes are what 100,000 typical mailbox objects take) and small enough that a
//! few such pipelines at once cannot take the proxy down. Past either, the pipeline fails with
//! an error that names the limit and what to do instead.

use std::collections::VecDeque;

use crate::remoting::clixml::Value;
use crate::remoting::executor::{ErrorCategory, ErrorRecord};

/// Most objects one local command keeps at once.
pub const MAX_BUFFERED_OBJECTS: usize = 100_000;
/// Most estimated bytes one local command keeps at once (64 MiB).
pub const MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// A bounded FIFO of objects with their estimated sizes.
#[derive(Debug)]
pub(super) struct Buffer {
    command: &'static str,
    option: &'static str,
    items: VecDeque<(Value, usize)>,
    bytes: usize,
    max_objects: usize,
    max_bytes: usize,
}

impl Buffer {
    /// An empty buffer for `command`'s `option` (named in the error), with the default limits.
    pub(super) fn new(command: &'static str, option: &'static str) -> Self {
        Self::with_limits(command, option, MAX_BUFFERED_OBJECTS, MAX_BUFFERED_BYTES)
    }

    /// An empty buffer with these limits.
    pub(super) fn with_limits(
        command: &'static str,
        option: &'static str,
        max_objects: usize,
        max_bytes: usize,
    ) -> Self {
        Self {
            command,
            option,
            items: VecDeque::new(),
            bytes: 0,
            max_objects,
            max_bytes,
        }
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// The record the pipeline fails with when the buffer would exceed a limit.
    pub(super) fn push(&mut self, value: Value) -> Result<(), ErrorRecord> {
        let size = estimated_size(&value);
        if self.items.len() >= self.max_objects || self.bytes.saturating_add(size) > self.max_bytes
        {
            return Err(self.exceeded());
        }
        self.bytes += size;
        self.items.push_back((value, size));
        Ok(())
    }

    /// Removes the oldest object.
    pub(super) fn pop_front(&mut self) -> Option<Value> {
        let (value, size) = self.items.pop_front()?;
        self.bytes -= size;
        Some(value)
    }

    /// Objects held.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The object at `index` (oldest is 0).
    pub(super) fn get(&self, index: usize) -> Option<&Value> {
        self.items.get(index).map(|(v, _)| v)
    }

    /// Everything held, oldest first.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Value> + '_ {
        self.bytes = 0;
        self.items.drain(..).map(|(v, _)| v)
    }

    fn exceeded(&self) -> ErrorRecord {
        ErrorRecord {
            activity: self.command.into(),
            ..ErrorRecord::new(
                format!(
                    "{} {} would keep more than {} objects or {} MiB in the proxy's memory \
                     (it holds {} objects, about {} MiB). Narrow the result on the server \
                     instead (-Filter, -ResultSize, -Identity), or use -First.",
                    self.command,
                    self.option,
                    self.max_objects,
                    self.max_bytes / (1024 * 1024),
                    self.items.len(),
                    self.bytes / (1024 * 1024),
                ),
                "System.InvalidOperationException",
                format!(
                    "LocalBufferLimitExceeded,{}",
                    super::class_name(self.command)
                ),
                ErrorCategory::LimitsExceeded,
            )
        }
    }
}

/// A value's approximate size in memory: its heap data plus a fixed cost per value. Walks the
/// value without recursion (depth is the sender's choice).
pub(super) fn estimated_size(value: &Value) -> usize {
    const PER_VALUE: usize = std::mem::size_of::<Value>();
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        total = total.saturating_add(PER_VALUE);
        match v {
            Value::String(s)
            | Value::Decimal(s)
            | Value::Uri(s)
            | Value::Version(s)
            | Value::XmlDocument(s)
            | Value::ScriptBlock(s) => total = total.saturating_add(s.len()),
            Value::Bytes(b) => total = total.saturating_add(b.len()),
            Value::Object(o) => {
                total = total.saturating_add(std::mem::size_of_val(&**o));
                for t in &o.type_names {
                    total = total.saturating_add(t.len() + 24);
                }
                total = total.saturating_add(o.to_string.as_ref().map_or(0, String::len));
                for (name, _) in o.adapted.iter().chain(&o.extended) {
                    total = total.saturating_add(name.len() + 24);
                }
                pending.extend(super::children(o));
            }
            _ => {}
        }
    }
    total
}
