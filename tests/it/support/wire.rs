//! A raw WS-Man/PSRP client speaking the way Windows PowerShell 5.1 does, through the
//! proxy's real listener (TLS + Basic auth, [`Sandboxed::post`]).
//!
//! pypsrp never sends what Windows sends for the commands scripts run (reference
//! psrp-protocol.md §2.11, §6.2, §7, §11): Xpress-compressed `Send` data, `-Name:` and bare
//! `-Name` parameter tokens, Import-PSSession's metadata query and `Get-FormatData`, splatted
//! `SwitchParameter` objects, piped deserialized objects. This client builds those forms by
//! hand so the rest-mode table's Windows rows are proved on the path users hit. CLIXML
//! arguments are written here, not with the crate's writer, so the proxy's reader meets text
//! it did not produce; replies are read with the crate's reader (as `tests/it/remoting.rs`
//! does) and Windows' own compressed bytes come from `xpress-vectors.md`.
//!
//! Compression: [`Compressor`] is a small MS-XCA LZ77+Huffman *literal* encoder (canonical
//! Huffman code over the bytes present, no matches): real Xpress-Huffman chunks, so the
//! proxy's decoder has to build the table and walk the bit stream, without a full LZ77 search.

use std::collections::{BinaryHeap, HashMap};

use base64::Engine as _;
use exo_authproxy::remoting::clixml::{self, Value};
use exo_authproxy::remoting::fragment::{Defragmenter, fragment};
use exo_authproxy::remoting::message::{Destination, Message, MessageType};
use exo_authproxy::remoting::wsman;

use super::harness::Sandboxed;

/// The shell id Windows proposes (= the pool's RPID in its `creationXml`).
pub const SHELL_ID: &str = "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B";
/// The pool's RPID inside the recorded `creationXml` (reference §11.1).
pub const RPID: &str = "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B";
/// `creationXml` of reference §11.1 (Windows PowerShell 5.1).
const CREATION_XML: &str = include_str!("../vectors/creation_xml_11_1.b64");

/// PIPELINE_STATE values (reference §5.2).
pub mod state {
    /// Completed.
    pub const COMPLETED: i64 = 4;
    /// Failed.
    pub const FAILED: i64 = 5;
    /// Stopped.
    pub const STOPPED: i64 = 3;
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .expect("base64")
}

fn uuid(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).expect("uuid")
}

/// Escapes text for CLIXML (`&`, `<`, `>`; quotes in attributes are never needed here).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------
// Argument values as Windows serializes them.
// ---------------------------------------------------------------------------------------

/// A CLIXML value, written by hand as Windows PowerShell writes it.
#[derive(Debug, Clone)]
pub enum V {
    /// `<S>`
    S(String),
    /// `<I32>`
    I32(i32),
    /// `<B>`
    B(bool),
    /// `<DT>` with the text given (Windows writes local time with offset, 7 fractional digits).
    Dt(String),
    /// `<G>`
    Guid(String),
    /// `<Nil />`
    Nil,
    /// `-Name:$true/$false` as splatted by Import-PSSession proxies: a SwitchParameter Obj.
    Switch(bool),
    /// `@('a','b')`: `System.Object[]`.
    Array(Vec<V>),
    /// `@{Add='a'}`: `System.Collections.Hashtable`.
    Hash(Vec<(String, V)>),
    /// Pre-rendered CLIXML for `<… N="V">` (the `{N}` placeholder is replaced by the name
    /// attribute, `{R}` by a fresh RefId).
    Raw(String),
}

/// Writes values with message-unique RefIds.
#[derive(Default)]
pub struct Writer {
    next_ref: u32,
}

impl Writer {
    fn refid(&mut self) -> u32 {
        self.next_ref += 1;
        self.next_ref + 100
    }

    /// `v` as an element with `N="{name}"` (or without a name attribute).
    pub fn value(&mut self, name: Option<&str>, v: &V) -> String {
        let n = name.map(|n| format!(" N=\"{n}\"")).unwrap_or_default();
        match v {
            V::S(s) => format!("<S{n}>{}</S>", esc(s)),
            V::I32(i) => format!("<I32{n}>{i}</I32>"),
            V::B(b) => format!("<B{n}>{b}</B>"),
            V::Dt(t) => format!("<DT{n}>{t}</DT>"),
            V::Guid(g) => format!("<G{n}>{g}</G>"),
            V::Nil => format!("<Nil{n} />"),
            V::Switch(on) => {
                let r = self.refid();
                let t = self.refid();
                format!(
                    "<Obj{n} RefId=\"{r}\"><TN RefId=\"{t}\"><T>System.Management.Automation.SwitchParameter</T>\
                     <T>System.ValueType</T><T>System.Object</T></TN><ToString>{}</ToString>\
                     <Props><B N=\"IsPresent\">{on}</B></Props></Obj>",
                    if *on { "True" } else { "False" }
                )
            }
            V::Array(items) => {
                let r = self.refid();
                let t = self.refid();
                let inner: String = items.iter().map(|i| self.value(None, i)).collect();
                format!(
                    "<Obj{n} RefId=\"{r}\"><TN RefId=\"{t}\"><T>System.Object[]</T><T>System.Array</T>\
                     <T>System.Object</T></TN><LST>{inner}</LST></Obj>"
                )
            }
            V::Hash(entries) => {
                let r = self.refid();
                let t = self.refid();
                let inner: String = entries
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "<En><S N=\"Key\">{}</S>{}</En>",
                            esc(k),
                            self.value(Some("Value"), v)
                        )
                    })
                    .collect();
                format!(
                    "<Obj{n} RefId=\"{r}\"><TN RefId=\"{t}\"><T>System.Collections.Hashtable</T>\
                     <T>System.Object</T></TN><DCT>{inner}</DCT></Obj>"
                )
            }
            V::Raw(xml) => xml
                .replace("{N}", &n)
                .replace("{R}", &self.refid().to_string()),
        }
    }
}

/// One `Args` element: `N` (None = positional) and `V`.
#[derive(Debug, Clone)]
pub struct Arg {
    /// The `N` member: `-Identity:` (splat), `-ResultSize` (bare token), `Identity` (.NET
    /// API), or None (positional / the value after a bare token).
    pub n: Option<String>,
    /// The `V` member.
    pub v: V,
}

/// `-Name:` + value, as Import-PSSession proxies splat `$PSBoundParameters`.
pub fn colon(name: &str, v: V) -> Arg {
    Arg {
        n: Some(format!("-{name}:")),
        v,
    }
}

/// A bare `-Name` token with Nil value (a switch, or followed by a positional value).
pub fn token(name: &str) -> Arg {
    Arg {
        n: Some(format!("-{name}")),
        v: V::Nil,
    }
}

/// A positional value (`N` Nil).
pub fn positional(v: V) -> Arg {
    Arg { n: None, v }
}

/// `-Name value` as `Invoke-Command { Cmd -Name value }` converts it: two Args.
pub fn spaced(name: &str, v: V) -> [Arg; 2] {
    [token(name), positional(v)]
}

/// A string value.
pub fn s(x: &str) -> V {
    V::S(x.to_owned())
}

/// One command of a pipeline.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Command name, or script text when `is_script`.
    pub name: String,
    /// Whether `name` is script text.
    pub is_script: bool,
    /// Arguments.
    pub args: Vec<Arg>,
}

impl Cmd {
    /// A command with arguments.
    pub fn new(name: &str, args: impl IntoIterator<Item = Arg>) -> Self {
        Self {
            name: name.to_owned(),
            is_script: false,
            args: args.into_iter().collect(),
        }
    }

    /// Script text (`IsScript=true`), what `Invoke-Command` sends when a block does not
    /// convert to commands.
    pub fn script(text: &str) -> Self {
        Self {
            name: text.to_owned(),
            is_script: true,
            args: Vec::new(),
        }
    }
}

const MERGES: [&str; 8] = [
    "MergeMyResult",
    "MergeToResult",
    "MergePreviousResults",
    "MergeError",
    "MergeWarning",
    "MergeVerbose",
    "MergeDebug",
    "MergeInformation",
];

/// A CREATE_PIPELINE body as Windows PowerShell 5.1 builds it (reference §6.1, §11.4).
pub fn create_pipeline(cmds: &[Cmd], no_input: bool, is_nested: bool) -> String {
    let mut w = Writer::default();
    let list_tn = "<TN RefId=\"0\"><T>System.Collections.Generic.List`1[[System.Management.Automation.PSObject, \
         System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]</T>\
         <T>System.Object</T></TN>";
    let mut list = String::new();
    for (ci, cmd) in cmds.iter().enumerate() {
        let mut merges = String::new();
        for (mi, m) in MERGES.iter().enumerate() {
            let r = w.refid();
            let tn = if ci == 0 && mi == 0 {
                "<TN RefId=\"1\"><T>System.Management.Automation.Runspaces.PipelineResultTypes</T>\
                 <T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>"
                    .to_owned()
            } else {
                "<TNRef RefId=\"1\" />".to_owned()
            };
            merges.push_str(&format!(
                "<Obj N=\"{m}\" RefId=\"{r}\">{tn}<ToString>None</ToString><I32>0</I32></Obj>"
            ));
        }
        let mut args = String::new();
        for a in &cmd.args {
            let r = w.refid();
            let n = match &a.n {
                Some(n) => format!("<S N=\"N\">{}</S>", esc(n)),
                None => "<Nil N=\"N\" />".to_owned(),
            };
            let v = w.value(Some("V"), &a.v);
            args.push_str(&format!("<Obj RefId=\"{r}\"><MS>{n}{v}</MS></Obj>"));
        }
        let (r, ar) = (w.refid(), w.refid());
        list.push_str(&format!(
            "<Obj RefId=\"{r}\"><MS><S N=\"Cmd\">{}</S><B N=\"IsScript\">{}</B><Nil N=\"UseLocalScope\" />\
             {merges}<Obj N=\"Args\" RefId=\"{ar}\"><TNRef RefId=\"0\" /><LST>{args}</LST></Obj></MS></Obj>",
            esc(&cmd.name),
            cmd.is_script
        ));
    }
    let (r1, r2, r3, r4, r5) = (w.refid(), w.refid(), w.refid(), w.refid(), w.refid());
    format!(
        "<Obj RefId=\"0\"><MS><Obj N=\"PowerShell\" RefId=\"{r1}\"><MS><Obj N=\"Cmds\" RefId=\"{r2}\">{list_tn}\
         <LST>{list}</LST></Obj><B N=\"IsNested\">{is_nested}</B><Nil N=\"History\" />\
         <B N=\"RedirectShellErrorOutputPipe\">true</B></MS></Obj>\
         <B N=\"NoInput\">{no_input}</B>\
         <Obj N=\"ApartmentState\" RefId=\"{r3}\"><TN RefId=\"2\"><T>System.Threading.ApartmentState</T><T>System.Enum</T>\
         <T>System.ValueType</T><T>System.Object</T></TN><ToString>Unknown</ToString><I32>2</I32></Obj>\
         <Obj N=\"RemoteStreamOptions\" RefId=\"{r4}\"><TN RefId=\"3\"><T>System.Management.Automation.RemoteStreamOptions</T>\
         <T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN><ToString>0</ToString><I32>0</I32></Obj>\
         <B N=\"AddToHistory\">true</B>\
         <Obj N=\"HostInfo\" RefId=\"{r5}\"><MS><B N=\"_isHostNull\">true</B><B N=\"_isHostUINull\">true</B>\
         <B N=\"_isHostRawUINull\">true</B><B N=\"_useRunspaceHost\">true</B></MS></Obj>\
         <B N=\"IsNested\">{is_nested}</B></MS></Obj>"
    )
}

/// Import-PSSession's GET_COMMAND_METADATA query (reference §7.3/§7.4, Windows form: the
/// CommandType as an enum Obj, 399).
pub fn command_metadata_query(pattern: &str) -> String {
    format!(
        "<Obj RefId=\"0\"><MS><Obj N=\"Name\" RefId=\"1\"><TN RefId=\"0\"><T>System.String[]</T><T>System.Array</T>\
         <T>System.Object</T></TN><LST><S>{}</S></LST></Obj>\
         <Obj N=\"CommandType\" RefId=\"2\"><TN RefId=\"1\"><T>System.Management.Automation.CommandTypes</T>\
         <T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>\
         <ToString>Alias, Function, Filter, Cmdlet, Workflow, Configuration</ToString><I32>399</I32></Obj>\
         <Nil N=\"Namespace\" /><Nil N=\"ArgumentList\" /></MS></Obj>",
        esc(pattern)
    )
}

// ---------------------------------------------------------------------------------------
// Xpress (MS-XCA LZ77+Huffman), literal-only encoder.
// ---------------------------------------------------------------------------------------

/// Encodes data as real (not stored) Xpress-Huffman chunks, the way WinRM compresses Send
/// data: one chunk per 64 KiB, each `{u16 original-1, u16 compressed-1}` + a 256-byte
/// code-length table + the bit stream (16-bit little-endian words, most significant bit
/// first). Only literal symbols (and the end-of-data symbol 256) get codes.
pub struct Compressor;

impl Compressor {
    /// `data` as a chunk stream the way WinRM writes it: each 64 KiB compressed when that
    /// makes it smaller, stored otherwise (short messages such as END_OF_PIPELINE_INPUT).
    pub fn stream(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(65_536) {
            let body = Self::block(chunk);
            if body.len() < chunk.len() {
                out.extend_from_slice(&u16::try_from(chunk.len() - 1).unwrap().to_le_bytes());
                out.extend_from_slice(&u16::try_from(body.len() - 1).unwrap().to_le_bytes());
                out.extend_from_slice(&body);
            } else {
                out.extend(stored(chunk));
            }
        }
        out
    }

    /// How many chunks of `stream` are really compressed (sizes differ), not stored.
    pub fn compressed_chunks(stream: &[u8]) -> usize {
        let mut rest = stream;
        let mut n = 0;
        while rest.len() >= 4 {
            let original = usize::from(u16::from_le_bytes([rest[0], rest[1]])) + 1;
            let compressed = usize::from(u16::from_le_bytes([rest[2], rest[3]])) + 1;
            if original != compressed {
                n += 1;
            }
            rest = rest.get(4 + compressed..).unwrap_or_default();
        }
        n
    }

    fn block(data: &[u8]) -> Vec<u8> {
        let mut freq = vec![0u64; 512];
        for &b in data {
            freq[usize::from(b)] += 1;
        }
        freq[256] = 1;
        let lengths = Self::lengths(&freq);
        // Canonical codes: by (length, symbol).
        let mut codes = vec![0u32; 512];
        let mut code = 0u32;
        for len in 1..=15u8 {
            for sym in 0..512 {
                if lengths[sym] == len {
                    codes[sym] = code;
                    code += 1;
                }
            }
            code <<= 1;
        }
        let mut out = Vec::with_capacity(256 + data.len());
        for pair in lengths.chunks(2) {
            out.push(pair[0] | (pair[1] << 4));
        }
        let mut bits = BitWriter::default();
        for &b in data {
            let s = usize::from(b);
            bits.put(&mut out, codes[s], u32::from(lengths[s]));
        }
        bits.put(&mut out, codes[256], u32::from(lengths[256]));
        bits.flush(&mut out);
        // The decoder reads 32 bits ahead.
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    }

    /// Huffman code lengths (at most 15 bits) for the symbols with a non-zero frequency.
    fn lengths(freq: &[u64]) -> Vec<u8> {
        let mut f: Vec<u64> = freq.to_vec();
        loop {
            let lengths = Self::huffman(&f);
            if lengths.iter().all(|&l| l <= 15) {
                return lengths;
            }
            for x in f.iter_mut().filter(|x| **x > 0) {
                *x = (*x).div_ceil(2);
            }
        }
    }

    fn huffman(freq: &[u64]) -> Vec<u8> {
        // Nodes: leaves 0..512, then internal nodes; parent links give depths.
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for (sym, &f) in freq.iter().enumerate() {
            if f > 0 {
                heap.push(std::cmp::Reverse((f, sym)));
            }
        }
        let mut next = 512;
        while heap.len() > 1 {
            let std::cmp::Reverse((fa, a)) = heap.pop().unwrap();
            let std::cmp::Reverse((fb, b)) = heap.pop().unwrap();
            parent.insert(a, next);
            parent.insert(b, next);
            heap.push(std::cmp::Reverse((fa + fb, next)));
            next += 1;
        }
        let mut lengths = vec![0u8; 512];
        for (sym, &f) in freq.iter().enumerate() {
            if f == 0 {
                continue;
            }
            let mut depth = 0u32;
            let mut node = sym;
            while let Some(&p) = parent.get(&node) {
                depth += 1;
                node = p;
            }
            lengths[sym] = u8::try_from(depth.clamp(1, 255)).unwrap();
        }
        lengths
    }
}

/// MS-XCA's bit order: bits fill 16-bit words most significant first; each word is written
/// little-endian.
#[derive(Default)]
struct BitWriter {
    acc: u32,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, out: &mut Vec<u8>, code: u32, len: u32) {
        self.acc = (self.acc << len) | code;
        self.n += len;
        while self.n >= 16 {
            let word = u16::try_from((self.acc >> (self.n - 16)) & 0xFFFF).unwrap();
            out.extend_from_slice(&word.to_le_bytes());
            self.n -= 16;
            self.acc &= (1u32 << self.n) - 1;
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.n > 0 {
            let pad = 16 - self.n;
            self.put(out, 0, pad);
        }
    }
}

/// Reference xpress-vectors.md §3: the mailbox CLIXML prefix a Windows client sends back
/// when it pipes a deserialized mailbox (398 bytes), and the same bytes as the real
/// Windows-made Xpress-Huffman chunk (header included).
pub const VECTOR_PLAIN: &str = "PE9iaiBSZWZJZD0iMCI+PFROIFJlZklkPSIwIj48VD5EZXNlcmlhbGl6ZWQuTWljcm9zb2Z0LkV4Y2hhbmdlLkRhdGEuRGlyZWN0b3J5Lk1hbmFnZW1lbnQuTWFpbGJveDwvVD48VD5EZXNlcmlhbGl6ZWQuTWljcm9zb2Z0LkV4Y2hhbmdlLkRhdGEuRGlyZWN0b3J5Lk1hbmFnZW1lbnQuTWFpbEVuYWJsZWRPcmdQZXJzb248L1Q+PFQ+RGVzZXJpYWxpemVkLk1pY3Jvc29mdC5FeGNoYW5nZS5EYXRhLkRpcmVjdG9yeS5BRFByZXNlbnRhdGlvbk9iamVjdDwvVD48VD5EZXNlcmlhbGl6ZWQuU3lzdGVtLk9iamVjdDwvVD48L1ROPjxUb1N0cmluZz51c2VyMDAwMDA8L1RvU3RyaW5nPjxQcm9wcz48UyBOPSJOYW1lIj51c2VyMDAwMDA8L1M+PFMgTj0iQWxpYXMiPnVzZXIwMDAwMDwvUz48UyBOPSJEaXNwbGE=";
/// See [`VECTOR_PLAIN`].
pub const VECTOR_CHUNK: &str = "jQGHAQAAAAAAAAAAAAAAAAAAAAAHBgAAAAAAdQcAAAAAAHUGYABlAHAAYGYGZwYAAAAAAEBmRmZHB2VVBlR1AGYHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAdwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABwAAAAAHAAAGAHcAAAAAcAYAAAB3AAAAAAAAAAAAAGAHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADVTNlzbcRm4Tf4CkGXaYXO4UIFMlGXErFmFTbXotdrPAzkULh4oEQhW2N52kAiXGCLN+Ef6pIpbk7bRqSpwDBkY3THbuI1ayVWJHpOj0mTB/9Zcc5UqedkAuiNHfrLtJuhzEN0mTQ97mbH+Uy03OYKHdlo+C4LJQ/Go8fE1AeypXywEwN2WAAA";

/// Stored (uncompressed) chunks, as WinRM sends data that does not compress.
pub fn stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(65_536) {
        let size = u16::try_from(chunk.len() - 1).unwrap().to_le_bytes();
        out.extend_from_slice(&size);
        out.extend_from_slice(&size);
        out.extend_from_slice(chunk);
    }
    out
}

/// The decoded [`VECTOR_PLAIN`].
pub fn vector_plain() -> Vec<u8> {
    unb64(VECTOR_PLAIN)
}

/// The decoded [`VECTOR_CHUNK`].
pub fn vector_chunk() -> Vec<u8> {
    unb64(VECTOR_CHUNK)
}

// ---------------------------------------------------------------------------------------
// Replies.
// ---------------------------------------------------------------------------------------

/// Elements found in a response: (attributes, text).
pub type Elements = Vec<(Vec<(String, String)>, String)>;

/// One HTTP reply from the proxy.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `X-Exo-Authproxy-Error`, when the proxy made the response up.
    pub proxy_error: Option<String>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// Elements named `local` (any namespace).
    pub fn texts(&self, local: &str) -> Elements {
        let mut reader = quick_xml::Reader::from_str(&self.body);
        let mut out = Vec::new();
        let mut cur: Option<(Vec<(String, String)>, String)> = None;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e))
                    if e.local_name().as_ref() == local.as_bytes() =>
                {
                    let attrs = e
                        .attributes()
                        .filter_map(Result::ok)
                        .map(|a| {
                            (
                                String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                                a.unescape_value()
                                    .map(|v| v.into_owned())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect();
                    if let Some(c) = cur.take() {
                        out.push(c);
                    }
                    cur = Some((attrs, String::new()));
                }
                Ok(quick_xml::events::Event::Text(t)) => {
                    if let Some(c) = cur.as_mut() {
                        c.1.push_str(&t.unescape().map(|t| t.into_owned()).unwrap_or_default());
                    }
                }
                Ok(quick_xml::events::Event::End(e))
                    if e.local_name().as_ref() == local.as_bytes() =>
                {
                    out.extend(cur.take());
                }
                Ok(quick_xml::events::Event::Eof) | Err(_) => break,
                _ => {}
            }
        }
        out.extend(cur);
        out
    }

    /// The first element `local`'s text.
    pub fn text(&self, local: &str) -> Option<String> {
        self.texts(local).into_iter().next().map(|(_, t)| t)
    }

    /// A `w:TimedOut` fault: the Receive long poll ended with nothing to deliver.
    pub fn timed_out(&self) -> bool {
        self.status == 500
            && self
                .texts("Value")
                .iter()
                .any(|(_, t)| t.trim().ends_with(":TimedOut"))
    }

    /// `CommandState`'s `State` attribute.
    pub fn command_state(&self) -> Option<String> {
        self.texts("CommandState")
            .into_iter()
            .next()
            .and_then(|(a, _)| a.into_iter().find(|(k, _)| k == "State").map(|(_, v)| v))
    }
}

/// A message body as CLIXML.
pub fn body_of(m: &Message) -> Value {
    let data = m.data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&m.data);
    if data.is_empty() {
        return Value::Nil;
    }
    clixml::from_xml(std::str::from_utf8(data).expect("UTF-8")).expect("CLIXML")
}

/// A property (extended or adapted) of an object value.
pub fn prop<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.as_object()
        .and_then(|o| o.property(name))
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

/// An error record as the client would show it.
#[derive(Debug, Clone)]
pub struct ErrorSeen {
    /// FullyQualifiedErrorId.
    pub fq_error: String,
    /// The exception message (ToString of the record).
    pub message: String,
    /// The whole record.
    pub record: Value,
}

impl ErrorSeen {
    fn from_record(record: Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_text).unwrap_or_default().to_owned();
        let o = record.as_object();
        let fq_error = text(o.and_then(|o| o.property("FullyQualifiedErrorId")));
        let message = o
            .and_then(|o| o.to_string.clone())
            .or_else(|| {
                o.and_then(|o| o.property("Exception"))
                    .and_then(Value::as_object)
                    .and_then(|e| e.property("Message"))
                    .and_then(Value::as_text)
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Self {
            fq_error,
            message,
            record,
        }
    }
}

/// What one pipeline produced.
#[derive(Debug)]
pub struct Run {
    /// PIPELINE_OUTPUT bodies, in order.
    pub outputs: Vec<Value>,
    /// ERROR_RECORD messages.
    pub errors: Vec<ErrorSeen>,
    /// WARNING_RECORD messages' text.
    pub warnings: Vec<String>,
    /// The final PipelineState.
    pub state: i64,
    /// The error inside a Failed/Stopped state, if any.
    pub state_error: Option<ErrorSeen>,
    /// Every message, in order.
    pub messages: Vec<Message>,
}

impl Run {
    /// Sorts a pipeline's messages into outputs, records and the final state.
    pub fn collect(messages: Vec<Message>) -> Self {
        let mut run = Run {
            outputs: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            state: -1,
            state_error: None,
            messages: Vec::new(),
        };
        for m in &messages {
            match m.message_type {
                MessageType::PipelineOutput => run.outputs.push(body_of(m)),
                MessageType::ErrorRecord => run.errors.push(ErrorSeen::from_record(body_of(m))),
                MessageType::WarningRecord => {
                    let b = body_of(m);
                    let text = b
                        .as_object()
                        .and_then(|o| o.property("InformationalRecord_Message"))
                        .and_then(Value::as_text)
                        .map(str::to_owned)
                        .or_else(|| b.as_object().and_then(|o| o.to_string.clone()))
                        .unwrap_or_default();
                    run.warnings.push(text);
                }
                MessageType::PipelineState => {
                    let b = body_of(m);
                    run.state = prop(&b, "PipelineState").as_i64().unwrap_or(-1);
                    run.state_error = b
                        .as_object()
                        .and_then(|o| o.property("ExceptionAsErrorRecord"))
                        .cloned()
                        .map(ErrorSeen::from_record);
                }
                _ => {}
            }
        }
        run.messages = messages;
        run
    }

    /// Output objects' `Name` property.
    pub fn names(&self) -> Vec<String> {
        self.outputs
            .iter()
            .map(|o| {
                o.as_object()
                    .and_then(|o| o.property("Name"))
                    .and_then(Value::as_text)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------

/// A Windows-PowerShell-shaped session through the proxy's listener.
pub struct Wire<'a> {
    /// The sandbox the session runs in (it outlives the session).
    _h: std::marker::PhantomData<&'a Sandboxed>,
    http: reqwest::Client,
    /// Whether the shell was created with `CompressionType xpress` (Send data is compressed,
    /// Receive data arrives in chunks).
    pub compression: bool,
    object_id: u64,
    /// Query string on every request (e.g. `DelegatedOrg=…`).
    pub query: String,
    /// The connection URI (`…/powershell-liveid`, or `…/compliance/powershell-liveid/`).
    pub url: String,
    /// The ShellId proposed on Create ([`SHELL_ID`] unless [`Wire::open_as`] chose one).
    pub shell_id: String,
    /// The local user and password every request carries.
    pub user: (String, String),
}

/// The WS-Man envelope Windows sends (reference §11.1 headers).
pub fn envelope(action: &str, shell: Option<&str>, headers: &str, body: &str) -> String {
    let selector = shell
        .map(|s| {
            format!("<w:SelectorSet><w:Selector Name=\"ShellId\">{s}</w:Selector></w:SelectorSet>")
        })
        .unwrap_or_default();
    let message_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
         xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
         xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" \
         xmlns:rsp=\"http://schemas.microsoft.com/wbem/wsman/1/windows/shell\"><s:Header>\
         <a:To>https://proxy.example.com/powershell-liveid/</a:To>\
         <w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI>\
         <a:ReplyTo><a:Address s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
         <a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
         <w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>\
         <a:MessageID>uuid:{message_id}</a:MessageID>\
         <w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\" />\
         <p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\" />\
         {selector}{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

impl<'a> Wire<'a> {
    /// Creates the shell and drains the pool-open messages (SESSION_CAPABILITY,
    /// APPLICATION_PRIVATE_DATA, RUNSPACEPOOL_STATE Opened).
    pub async fn open(h: &'a Sandboxed, compression: bool) -> (Self, Vec<Message>) {
        Self::open_with_query(h, compression, "").await
    }

    /// [`Wire::open`] with a query string (`DelegatedOrg=…`).
    pub async fn open_with_query(
        h: &'a Sandboxed,
        compression: bool,
        query: &str,
    ) -> (Self, Vec<Message>) {
        Self::open_at(h, &h.url, compression, query).await
    }

    /// [`Wire::open_with_query`] on the connection URI `url` (the proxy's compliance path:
    /// `h.url_for("/compliance/powershell-liveid/")`).
    pub async fn open_at(
        h: &'a Sandboxed,
        url: &str,
        compression: bool,
        query: &str,
    ) -> (Self, Vec<Message>) {
        Self::open_client(h.client(), url, compression, query).await
    }

    /// [`Wire::open_at`] with a client of the caller's (the benches drive a proxy running
    /// as its own process, with no [`Sandboxed`]).
    pub async fn open_client(
        http: reqwest::Client,
        url: &str,
        compression: bool,
        query: &str,
    ) -> (Self, Vec<Message>) {
        let user = (super::harness::USER, super::harness::PASSWORD);
        Self::open_as(http, url, compression, query, user, SHELL_ID).await
    }

    /// [`Wire::open_client`] as another local user, proposing `shell_id` (many sessions at
    /// once: the benches' scale run).
    pub async fn open_as(
        http: reqwest::Client,
        url: &str,
        compression: bool,
        query: &str,
        user: (&str, &str),
        shell_id: &str,
    ) -> (Self, Vec<Message>) {
        let mut w = Self {
            _h: std::marker::PhantomData,
            http,
            compression,
            object_id: 100,
            query: query.to_owned(),
            url: url.to_owned(),
            shell_id: shell_id.to_owned(),
            user: (user.0.to_owned(), user.1.to_owned()),
        };
        let headers = format!(
            "<w:OptionSet s:mustUnderstand=\"true\"><w:Option Name=\"protocolversion\" MustComply=\"true\">2.3</w:Option></w:OptionSet>\
             <w:OperationTimeout>PT180.000S</w:OperationTimeout>{}",
            if compression {
                "<rsp:CompressionType s:mustUnderstand=\"true\">xpress</rsp:CompressionType>"
            } else {
                ""
            }
        );
        let body = format!(
            "<rsp:Shell ShellId=\"{}\"><rsp:InputStreams>stdin pr</rsp:InputStreams>\
             <rsp:OutputStreams>stdout</rsp:OutputStreams>\
             <creationXml xmlns=\"http://schemas.microsoft.com/powershell\">{}</creationXml></rsp:Shell>",
            w.shell_id,
            CREATION_XML.trim()
        );
        let r = w
            .post(envelope(wsman::ACTION_CREATE, None, &headers, &body))
            .await;
        assert_eq!(r.status, 200, "Create through the listener: {r:?}");
        assert_eq!(
            r.text("CompressionMode").as_deref(),
            Some(if compression {
                "XpressCompression"
            } else {
                "NoCompression"
            }),
            "{r:?}"
        );
        w.object_id += 1;
        let msgs = w.drain(None, 3).await;
        (w, msgs)
    }

    /// POSTs a WS-Man envelope through the listener as the session's user (the demo user
    /// unless opened with [`Wire::open_as`]).
    pub async fn post(&self, xml: String) -> Reply {
        let rsp = super::harness::post_soap(
            &self.http,
            &self.url,
            Some((&self.user.0, &self.user.1)),
            &self.query,
            &xml,
        )
        .await;
        let status = rsp.status().as_u16();
        let proxy_error = rsp
            .headers()
            .get("x-exo-authproxy-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = rsp.text().await.expect("response body");
        Reply {
            status,
            proxy_error,
            body,
        }
    }

    /// One Receive (long poll) for `command_id` (None: the pool).
    pub async fn receive(&self, command_id: Option<&str>, timeout: &str) -> Reply {
        let attr = command_id
            .map(|c| format!(" CommandId=\"{c}\""))
            .unwrap_or_default();
        let headers = format!(
            "<w:OptionSet><w:Option Name=\"WSMAN_CMDSHELL_OPTION_KEEPALIVE\">TRUE</w:Option></w:OptionSet>\
             <w:OperationTimeout>{timeout}</w:OperationTimeout>"
        );
        self.post(envelope(
            wsman::ACTION_RECEIVE,
            Some(&self.shell_id),
            &headers,
            &format!(
                "<rsp:Receive SequenceId=\"0\"><rsp:DesiredStream{attr}>stdout</rsp:DesiredStream></rsp:Receive>"
            ),
        ))
        .await
    }

    /// The PSRP messages in one Receive reply.
    pub fn messages(&self, r: &Reply, defrag: &mut Defragmenter) -> Vec<Message> {
        let mut msgs = Vec::new();
        for (_, data) in r.texts("Stream") {
            let mut raw = unb64(&data);
            if self.compression {
                raw = exo_authproxy::remoting::xpress::decompress_stream(&raw, 64 << 20)
                    .expect("Receive data in Xpress chunks");
            }
            for m in defrag.push(&raw).expect("fragments") {
                msgs.push(Message::decode(&m).expect("message"));
            }
        }
        msgs
    }

    /// Receives until CommandState Done (or, for the pool, until `want` messages arrived).
    pub async fn drain(&self, command_id: Option<&str>, want: usize) -> Vec<Message> {
        let mut defrag = Defragmenter::new(64 << 20);
        let mut msgs = Vec::new();
        for _ in 0..100_000 {
            let r = self.receive(command_id, "PT5S").await;
            if r.timed_out() {
                continue; // the long poll's normal end: ask again, as WinRM does (§2.6)
            }
            assert_eq!(r.status, 200, "Receive: {r:?}");
            msgs.extend(self.messages(&r, &mut defrag));
            let done = r.command_state().as_deref() == Some(wsman::COMMAND_STATE_DONE);
            if done || (command_id.is_none() && msgs.len() >= want) {
                return msgs;
            }
        }
        panic!("no end after 100000 receives");
    }

    fn fragments(
        &mut self,
        message_type: MessageType,
        pid: &str,
        data: &str,
        max: usize,
    ) -> Vec<Vec<u8>> {
        let msg = Message {
            destination: Destination::Server,
            message_type,
            rpid: uuid(RPID),
            pid: if pid.is_empty() {
                uuid::Uuid::nil()
            } else {
                uuid(pid)
            },
            data: [b"\xEF\xBB\xBF".as_slice(), data.as_bytes()].concat(),
        };
        self.object_id += 1;
        fragment(self.object_id, &msg.encode(), max)
    }

    /// Send data as the client would put it on the wire: Xpress-compressed when the shell
    /// was created with compression (reference §2.11), otherwise raw.
    fn wire_data(&self, raw: &[u8]) -> Vec<u8> {
        if self.compression {
            Compressor::stream(raw)
        } else {
            raw.to_vec()
        }
    }

    /// WS-Man Command whose rsp:Arguments carry `first` (never compressed, §2.11).
    pub async fn command(&self, command_id: &str, first: &[u8]) -> Reply {
        let body = format!(
            "<rsp:CommandLine CommandId=\"{command_id}\"><rsp:Command>x</rsp:Command>\
             <rsp:Arguments>{}</rsp:Arguments></rsp:CommandLine>",
            b64(first)
        );
        let r = self
            .post(envelope(
                wsman::ACTION_COMMAND,
                Some(&self.shell_id),
                "<w:OptionSet><w:Option Name=\"WINRS_SKIP_CMD_SHELL\">False</w:Option></w:OptionSet>",
                &body,
            ))
            .await;
        assert_eq!(r.status, 200, "Command: {r:?}");
        assert_eq!(r.text("CommandId").as_deref(), Some(command_id), "{r:?}");
        r
    }

    /// WS-Man Send of `stream_data` (already in wire form) on stdin.
    pub async fn send_raw(&self, command_id: Option<&str>, stream_data: &[u8]) -> Reply {
        let attr = command_id
            .map(|c| format!(" CommandId=\"{c}\""))
            .unwrap_or_default();
        self.post(envelope(
            wsman::ACTION_SEND,
            Some(&self.shell_id),
            "",
            &format!(
                "<rsp:Send><rsp:Stream Name=\"stdin\"{attr}>{}</rsp:Stream></rsp:Send>",
                b64(stream_data)
            ),
        ))
        .await
    }

    /// WS-Man Signal (`crtl_c`, Windows' spelling, or `terminate`).
    pub async fn signal(&self, command_id: &str, code: &str) -> Reply {
        self.post(envelope(
            wsman::ACTION_SIGNAL,
            Some(&self.shell_id),
            "",
            &format!(
                "<rsp:Signal CommandId=\"{command_id}\"><rsp:Code>{code}</rsp:Code></rsp:Signal>"
            ),
        ))
        .await
    }

    /// Starts a pipeline (CREATE_PIPELINE in rsp:Arguments); returns its id.
    pub async fn start(&mut self, cmds: &[Cmd], no_input: bool) -> String {
        let pid = uuid::Uuid::new_v4().to_string().to_uppercase();
        let xml = create_pipeline(cmds, no_input, false);
        let frags = self.fragments(MessageType::CreatePipeline, &pid, &xml, 32 * 1024);
        self.command(&pid, &frags.concat()).await;
        pid
    }

    /// Sends `inputs` (CLIXML each) as PIPELINE_INPUT, then END_OF_PIPELINE_INPUT, in one Send.
    pub async fn input(&mut self, pid: &str, inputs: &[String]) {
        let mut raw = Vec::new();
        for i in inputs {
            raw.extend(
                self.fragments(MessageType::PipelineInput, pid, i, 32 * 1024)
                    .concat(),
            );
        }
        let end = Message {
            destination: Destination::Server,
            message_type: MessageType::EndOfPipelineInput,
            rpid: uuid(RPID),
            pid: uuid(pid),
            data: Vec::new(),
        };
        self.object_id += 1;
        raw.extend(fragment(self.object_id, &end.encode(), 32 * 1024).concat());
        let r = self.send_raw(Some(pid), &self.wire_data(&raw)).await;
        assert_eq!(r.status, 200, "Send: {r:?}");
    }

    /// Sends `objects` (CLIXML each) as PIPELINE_INPUT in one Send — compressed by the
    /// test's encoder when the shell is — then, with `windows_vector`, one more object whose
    /// first 398 bytes are the Windows-made Xpress chunk of xpress-vectors.md §3 (a
    /// deserialized mailbox `user00000`), then END_OF_PIPELINE_INPUT.
    pub async fn input_objects(&mut self, pid: &str, objects: &[String], windows_vector: bool) {
        let mut raw = Vec::new();
        for o in objects {
            raw.extend(
                self.fragments(MessageType::PipelineInput, pid, o, 32 * 1024)
                    .concat(),
            );
        }
        let mut stream = self.wire_data(&raw);
        if self.compression && !objects.is_empty() {
            assert!(
                Compressor::compressed_chunks(&stream) >= 1,
                "the objects travel in real Xpress-Huffman chunks"
            );
        }
        if windows_vector {
            assert!(self.compression, "the vector is compressed data");
            let plain = vector_plain();
            let tail = b"yName\">User Zero</S></Props></Obj>";
            let header = Message {
                destination: Destination::Server,
                message_type: MessageType::PipelineInput,
                rpid: uuid(RPID),
                pid: uuid(pid),
                data: Vec::new(),
            }
            .encode();
            self.object_id += 1;
            let blob_len = header.len() + plain.len() + tail.len();
            let mut head = Vec::new();
            head.extend_from_slice(&self.object_id.to_be_bytes());
            head.extend_from_slice(&0u64.to_be_bytes());
            head.push(0x03);
            head.extend_from_slice(&u32::try_from(blob_len).unwrap().to_be_bytes());
            head.extend_from_slice(&header);
            stream.extend(stored(&head));
            stream.extend(vector_chunk());
            stream.extend(stored(tail));
        }
        let end = Message {
            destination: Destination::Server,
            message_type: MessageType::EndOfPipelineInput,
            rpid: uuid(RPID),
            pid: uuid(pid),
            data: Vec::new(),
        };
        self.object_id += 1;
        let end = fragment(self.object_id, &end.encode(), 32 * 1024).concat();
        stream.extend(if self.compression { stored(&end) } else { end });
        let r = self.send_raw(Some(pid), &stream).await;
        assert_eq!(r.status, 200, "Send: {r:?}");
    }

    /// Sends `objects` as PIPELINE_INPUT in one Send, without ending the input.
    pub async fn input_some(&mut self, pid: &str, objects: &[String]) {
        let mut raw = Vec::new();
        for o in objects {
            raw.extend(
                self.fragments(MessageType::PipelineInput, pid, o, 32 * 1024)
                    .concat(),
            );
        }
        let stream = self.wire_data(&raw);
        let r = self.send_raw(Some(pid), &stream).await;
        assert_eq!(r.status, 200, "Send: {r:?}");
    }

    /// Runs a pipeline to its end (with `input`, when given) and collects what it produced.
    pub async fn run(&mut self, cmds: &[Cmd], input: Option<&[String]>) -> Run {
        let pid = self.start(cmds, input.is_none()).await;
        if let Some(inputs) = input {
            self.input(&pid, inputs).await;
        }
        Run::collect(self.drain(Some(&pid), 0).await)
    }

    /// Runs a pipeline whose CREATE_PIPELINE is split: the first fragment in rsp:Arguments,
    /// the rest in one Send (compressed when the shell is), as Windows does for big commands.
    pub async fn run_split(&mut self, cmds: &[Cmd], fragment_size: usize) -> Run {
        let pid = uuid::Uuid::new_v4().to_string().to_uppercase();
        let xml = create_pipeline(cmds, true, false);
        let frags = self.fragments(MessageType::CreatePipeline, &pid, &xml, fragment_size);
        assert!(frags.len() > 2, "the command spans several fragments");
        self.command(&pid, &frags[0]).await;
        let rest = self.wire_data(&frags[1..].concat());
        if self.compression {
            assert!(
                Compressor::compressed_chunks(&rest) >= 1,
                "the Send carries real Xpress-Huffman chunks, not only stored ones"
            );
        }
        let r = self.send_raw(Some(&pid), &rest).await;
        assert_eq!(r.status, 200, "Send: {r:?}");
        Run::collect(self.drain(Some(&pid), 0).await)
    }

    /// Runs a CREATE_PIPELINE body given as XML (no input) under pipeline id `pid`.
    pub async fn run_xml(&mut self, pid: &str, xml: &str) -> Run {
        let frags = self.fragments(MessageType::CreatePipeline, pid, xml, 32 * 1024);
        self.command(pid, &frags.concat()).await;
        Run::collect(self.drain(Some(pid), 0).await)
    }

    /// Import-PSSession's GET_COMMAND_METADATA for `pattern`: the output bodies and the state.
    pub async fn command_metadata(&mut self, pattern: &str) -> Run {
        let pid = uuid::Uuid::new_v4().to_string().to_uppercase();
        let frags = self.fragments(
            MessageType::GetCommandMetadata,
            &pid,
            &command_metadata_query(pattern),
            32 * 1024,
        );
        self.command(&pid, &frags.concat()).await;
        Run::collect(self.drain(Some(&pid), 0).await)
    }

    /// WS-Man Delete of the shell (`Remove-PSSession`).
    pub async fn close(&self) -> Reply {
        self.post(envelope(wsman::ACTION_DELETE, Some(&self.shell_id), "", ""))
            .await
    }

    /// Sends a pool-level message (no CommandId), e.g. PUBLIC_KEY.
    pub async fn send_pool(&mut self, message_type: MessageType, data: &str) -> Reply {
        let frags = self.fragments(message_type, "", data, 32 * 1024).concat();
        let wire = self.wire_data(&frags);
        self.send_raw(None, &wire).await
    }
}
