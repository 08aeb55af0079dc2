//! CLIXML: PowerShell's object serialization (MS-PSRP 2.2.5), both ways.
//!
//! SKELETON: the value model below is the contract between the remoting endpoint, the REST
//! bridge and the sandbox. The codec work owns this file (encoder, streaming-safe parser,
//! `_xHHHH_` escaping, RefId/TN numbering per message, tests and fuzz target). Extend the model
//! if needed (add variants; do not rename).

use chrono::{DateTime, FixedOffset};

/// One CLIXML value: a primitive or a complex object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<Nil/>`
    Nil,
    /// `<S>`
    String(String),
    /// `<B>`
    Bool(bool),
    /// `<C>` (a UTF-16 code unit)
    Char(u16),
    /// `<SB>`
    I8(i8),
    /// `<By>`
    U8(u8),
    /// `<I16>`
    I16(i16),
    /// `<U16>`
    U16(u16),
    /// `<I32>`
    I32(i32),
    /// `<U32>`
    U32(u32),
    /// `<I64>`
    I64(i64),
    /// `<U64>`
    U64(u64),
    /// `<Sg>`
    Float(f32),
    /// `<Db>`
    Double(f64),
    /// `<D>`: kept as its decimal text to avoid losing precision.
    Decimal(String),
    /// `<DT>`: 7 fractional digits and an offset on the wire.
    DateTime(DateTime<FixedOffset>),
    /// `<TS>`: an xs:duration on the wire; kept as ticks (100 ns).
    Duration(i64),
    /// `<G>`
    Guid(uuid::Uuid),
    /// `<BA>`: base64 on the wire.
    Bytes(Vec<u8>),
    /// `<URI>`
    Uri(String),
    /// `<Version>`
    Version(String),
    /// `<XD>`
    XmlDocument(String),
    /// `<SBK>`: script block text (only ever refused by a NoLanguage endpoint).
    ScriptBlock(String),
    /// `<Obj>`
    Object(Box<Object>),
}

/// A complex object: `<Obj>` with type names, an optional `<ToString>`, an optional primitive
/// or container body, adapted (`<Props>`) and extended (`<MS>`) properties.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    /// `<TN>`, most derived first. Empty for a bare `<Obj>` (e.g. PSRP message bodies).
    pub type_names: Vec<String>,
    /// `<ToString>`
    pub to_string: Option<String>,
    /// A primitive value inside the Obj (enums: `<I32>`; wrapped primitives).
    pub primitive: Option<Value>,
    /// `<LST>`, `<IE>`, `<STK>`, `<QUE>` or `<DCT>`.
    pub container: Option<Container>,
    /// `<Props>`: adapted properties, in order.
    pub adapted: Vec<(String, Value)>,
    /// `<MS>`: extended properties, in order.
    pub extended: Vec<(String, Value)>,
}

/// A container body of an [`Object`].
#[derive(Debug, Clone, PartialEq)]
pub enum Container {
    /// `<LST>` (IList: arrays, List<T>)
    List(Vec<Value>),
    /// `<IE>` (other enumerables)
    Enumerable(Vec<Value>),
    /// `<STK>`
    Stack(Vec<Value>),
    /// `<QUE>`
    Queue(Vec<Value>),
    /// `<DCT>` of `<En>` with `Key`/`Value`
    Dictionary(Vec<(Value, Value)>),
}
