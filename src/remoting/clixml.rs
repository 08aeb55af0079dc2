//! CLIXML: PowerShell's object serialization (MS-PSRP 2.2.5), both ways.
//!
//! The value model below is the contract between the remoting endpoint, the REST bridge and
//! the sandbox. One PSRP message carries one CLIXML document: a single element without an
//! `<Objs>` root, with its own RefId and TN numbering starting at 0 (reference
//! psrp-protocol.md §8). That is why the encoder works per value ([`write_xml`]): an output
//! object is serialized the moment it arrives and never needs the others.
//!
//! - `text`: `_xHHHH_` escaping and the text forms of DT, TS, Db/Sg (XmlConvert's).
//! - `write`: the encoder; it appends to a caller's `String` and allocates nothing per object
//!   beyond that (type-name lists are deduplicated by comparing slices, not by hashing copies).
//! - `read`: the parser (quick-xml, streaming); bounded depth, size and node count (a `<Ref>`
//!   copies the object it names, so the node budget also stops reference bombs); tolerant of
//!   a BOM, an XML declaration, whitespace between elements and unknown tags; refuses
//!   SecureStrings with an error saying why.
//!
//! Readers ([`Object::property`], [`Value::as_str`] …) are lenient in the way clients need:
//! member lookup is case-insensitive and looks in `<MS>` then `<Props>`, integers of any width
//! read as `i64`, and enum objects read as their integer.

use chrono::{DateTime, FixedOffset, Utc};

mod read;
mod text;
mod write;

pub use read::{Limits, VALUE_COST, from_xml, from_xml_document, from_xml_sized, from_xml_with};
pub use text::{
    decode_name, encode_name, format_datetime, format_double, format_duration, parse_datetime,
    parse_duration,
};
pub use write::{to_xml, write_xml};

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
    /// `<DT>` with an offset: 7 fractional digits and `±hh:mm` on the wire; PowerShell reads
    /// it as a local-kind `DateTime` (converted to the client's time zone).
    DateTime(DateTime<FixedOffset>),
    /// `<DT>` ending in `Z`: PowerShell reads it as a UTC-kind `DateTime` (shown as is). RPS
    /// sent Exchange's `…UTC` properties this way (psrp-protocol.md §8.4); keeping the kind
    /// apart keeps `WhenChangedUTC` in UTC on a client in another time zone.
    UtcDateTime(DateTime<Utc>),
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
    /// `<LST>` (IList: arrays, `List<T>`)
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

/// CLIXML that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClixmlError {
    /// Not well-formed XML.
    #[error("CLIXML is not well-formed XML at byte {offset}: {message}")]
    Xml {
        /// Byte offset where the XML reader gave up.
        offset: u64,
        /// The XML reader's explanation.
        message: String,
    },
    /// The document is over the size limit.
    #[error("CLIXML document of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Objects nest deeper than the limit.
    #[error("CLIXML nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The document expands (counting `<Ref>` copies) to more values than the limit.
    #[error("CLIXML document holds more than {limit} values (counting <Ref> copies)")]
    TooManyValues {
        /// The limit.
        limit: usize,
    },
    /// The decoded values (counting `<Ref>` copies in full) take more bytes than the limit.
    #[error(
        "CLIXML document decodes to more than {limit} bytes (each <Ref> copy counts in full); \
         send large data once, not as many references to it"
    )]
    TooExpanded {
        /// The limit ([`Limits::max_bytes`]).
        limit: usize,
    },
    /// There is no element at all.
    #[error("CLIXML document is empty: expected one element such as <Obj> or <S>")]
    Empty,
    /// More than one top-level element.
    #[error(
        "CLIXML document has a second top-level element <{element}>; a PSRP message holds \
         exactly one"
    )]
    MultipleRoots {
        /// The name of the extra element.
        element: String,
    },
    /// An element where only text is allowed, or text structure that makes no sense.
    #[error("CLIXML element <{element}> is not allowed inside <{parent}>")]
    UnexpectedElement {
        /// The offending element.
        element: String,
        /// Where it was.
        parent: String,
    },
    /// A primitive whose text does not parse.
    #[error("CLIXML <{tag}> value {text:?} is not valid: {reason}")]
    InvalidValue {
        /// The element name.
        tag: String,
        /// Its text (cut to 100 characters).
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `<Ref RefId>` naming no earlier object.
    #[error("CLIXML <Ref RefId=\"{ref_id}\"> names no earlier <Obj> in this document")]
    UnknownRef {
        /// The RefId.
        ref_id: String,
    },
    /// `<TNRef RefId>` naming no earlier `<TN>`.
    #[error("CLIXML <TNRef RefId=\"{ref_id}\"> names no earlier <TN> in this document")]
    UnknownTypeRef {
        /// The RefId.
        ref_id: String,
    },
    /// A SecureString: this endpoint does no session-key exchange, so it cannot decrypt one.
    #[error(
        "a SecureString (<SS>) was sent; this endpoint runs over TLS and does not support \
         SecureString values: pass the value as a plain string instead"
    )]
    SecureString,
}

impl Object {
    /// An object with these type names (most derived first; may be empty).
    pub fn new<I, S>(type_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            type_names: type_names.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// An object shaped like one Exchange's remote PowerShell returned: the .NET type
    /// hierarchy as `TN` (without `Deserialized.`: the receiving PowerShell adds that prefix
    /// itself, so `$o.PSObject.TypeNames[0]` reads `Deserialized.<first name>`), `ToString`
    /// = the object's identity, data properties added with [`Object::with_adapted`]
    /// (reference §8.8). `System.Object` is appended when missing.
    pub fn exchange<I, S>(type_names: I, to_string: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut obj = Self::new(type_names);
        if obj.type_names.last().map(String::as_str) != Some("System.Object") {
            obj.type_names.push("System.Object".to_owned());
        }
        obj.to_string = Some(to_string.into());
        obj
    }

    /// The type names a PowerShell client shows after deserializing this object: each name
    /// prefixed with `Deserialized.` unless it already is.
    pub fn deserialized_type_names(&self) -> Vec<String> {
        self.type_names
            .iter()
            .map(|t| deserialized_name(t))
            .collect()
    }

    /// This object as a client sees it after deserialization (type names prefixed with
    /// `Deserialized.`, recursively for nested objects). Useful to build what a client would
    /// send back as pipeline input; never put it on the wire as output.
    pub fn into_deserialized(mut self) -> Self {
        self.type_names = self.deserialized_type_names();
        let fix = |v: Value| match v {
            Value::Object(o) => Value::Object(Box::new(o.into_deserialized())),
            other => other,
        };
        self.adapted = self.adapted.into_iter().map(|(n, v)| (n, fix(v))).collect();
        self.extended = self
            .extended
            .into_iter()
            .map(|(n, v)| (n, fix(v)))
            .collect();
        self
    }

    /// Sets `<ToString>`.
    #[must_use]
    pub fn with_to_string(mut self, text: impl Into<String>) -> Self {
        self.to_string = Some(text.into());
        self
    }

    /// Adds an extended (`<MS>`) property.
    #[must_use]
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extended.push((name.into(), value.into()));
        self
    }

    /// Adds an adapted (`<Props>`) property.
    #[must_use]
    pub fn with_adapted(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.adapted.push((name.into(), value.into()));
        self
    }

    /// Sets the primitive body (enums, extended primitives).
    #[must_use]
    pub fn with_primitive(mut self, value: impl Into<Value>) -> Self {
        self.primitive = Some(value.into());
        self
    }

    /// Sets the container body.
    #[must_use]
    pub fn with_container(mut self, container: Container) -> Self {
        self.container = Some(container);
        self
    }

    /// Adds an extended (`<MS>`) property in place.
    pub fn push_property(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.extended.push((name.into(), value.into()));
    }

    /// Adds an adapted (`<Props>`) property in place.
    pub fn push_adapted(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.adapted.push((name.into(), value.into()));
    }

    /// A property by name, case-insensitively: `<MS>` first, then `<Props>`.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.extended_property(name)
            .or_else(|| self.adapted_property(name))
    }

    /// An extended (`<MS>`) property by name, case-insensitively.
    pub fn extended_property(&self, name: &str) -> Option<&Value> {
        find_member(&self.extended, name)
    }

    /// An adapted (`<Props>`) property by name, case-insensitively.
    pub fn adapted_property(&self, name: &str) -> Option<&Value> {
        find_member(&self.adapted, name)
    }

    /// The items of an `LST`/`IE`/`STK`/`QUE` body.
    pub fn items(&self) -> Option<&[Value]> {
        match self.container.as_ref()? {
            Container::List(v)
            | Container::Enumerable(v)
            | Container::Stack(v)
            | Container::Queue(v) => Some(v),
            Container::Dictionary(_) => None,
        }
    }

    /// The entries of a `DCT` body.
    pub fn entries(&self) -> Option<&[(Value, Value)]> {
        match self.container.as_ref()? {
            Container::Dictionary(e) => Some(e),
            _ => None,
        }
    }

    /// A dictionary entry by string key, case-insensitively (PowerShell hashtables are).
    pub fn entry(&self, key: &str) -> Option<&Value> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    }

    /// Whether `type_name` is among the type names, with or without `Deserialized.`.
    pub fn is_type(&self, type_name: &str) -> bool {
        let bare = type_name.strip_prefix("Deserialized.").unwrap_or(type_name);
        self.type_names
            .iter()
            .any(|t| t.strip_prefix("Deserialized.").unwrap_or(t) == bare)
    }

    /// Wraps this object in a [`Value`].
    pub fn into_value(self) -> Value {
        Value::Object(Box::new(self))
    }
}

fn deserialized_name(name: &str) -> String {
    if name.starts_with("Deserialized.") {
        name.to_owned()
    } else {
        format!("Deserialized.{name}")
    }
}

fn find_member<'a>(members: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    members
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `System.Collections.ArrayList`: what Exchange multi-valued properties look like.
const ARRAY_LIST: [&str; 2] = ["System.Collections.ArrayList", "System.Object"];
/// `System.Collections.Hashtable`.
const HASHTABLE: [&str; 2] = ["System.Collections.Hashtable", "System.Object"];
/// `System.String[]`.
const STRING_ARRAY: [&str; 3] = ["System.String[]", "System.Array", "System.Object"];
/// `System.Object[]`.
const OBJECT_ARRAY: [&str; 3] = ["System.Object[]", "System.Array", "System.Object"];

impl Value {
    /// An `Obj` with these type names and an `LST` body.
    pub fn list<I, S, V>(type_names: I, items: V) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        V: IntoIterator,
        V::Item: Into<Value>,
    {
        Object::new(type_names)
            .with_container(Container::List(items.into_iter().map(Into::into).collect()))
            .into_value()
    }

    /// A `System.Collections.ArrayList` (Exchange multi-valued properties, reference §8.8).
    pub fn array_list<V>(items: V) -> Self
    where
        V: IntoIterator,
        V::Item: Into<Value>,
    {
        Self::list(ARRAY_LIST, items)
    }

    /// A `System.String[]`.
    pub fn string_array<V>(items: V) -> Self
    where
        V: IntoIterator,
        V::Item: Into<String>,
    {
        Self::list(
            STRING_ARRAY,
            items.into_iter().map(|s| Value::String(s.into())),
        )
    }

    /// A `System.Object[]`.
    pub fn object_array<V>(items: V) -> Self
    where
        V: IntoIterator,
        V::Item: Into<Value>,
    {
        Self::list(OBJECT_ARRAY, items)
    }

    /// An `Obj` with these type names and a `DCT` body.
    pub fn dictionary<I, S, E, K, W>(type_names: I, entries: E) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        E: IntoIterator<Item = (K, W)>,
        K: Into<Value>,
        W: Into<Value>,
    {
        Object::new(type_names)
            .with_container(Container::Dictionary(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ))
            .into_value()
    }

    /// A `System.Collections.Hashtable`.
    pub fn hashtable<E, K, W>(entries: E) -> Self
    where
        E: IntoIterator<Item = (K, W)>,
        K: Into<Value>,
        W: Into<Value>,
    {
        Self::dictionary(HASHTABLE, entries)
    }

    /// An enum value as Windows serializes it: `Obj` with the given type names (e.g.
    /// `[…CommandTypes, System.Enum, System.ValueType, System.Object]`), `ToString` = the
    /// name (comma-joined names for flags) and an `<I32>` body.
    pub fn enumeration<I, S>(type_names: I, name: impl Into<String>, value: i32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Object::new(type_names)
            .with_to_string(name)
            .with_primitive(Value::I32(value))
            .into_value()
    }

    /// [`Value::enumeration`] for enum type `type_name`, adding the standard base types.
    pub fn enum_of(type_name: &str, name: impl Into<String>, value: i32) -> Self {
        Self::enumeration(
            [
                type_name,
                "System.Enum",
                "System.ValueType",
                "System.Object",
            ],
            name,
            value,
        )
    }

    /// Whether this is `<Nil>`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Self::Nil)
    }

    /// The string of `S` (also `URI`, `Version`, `SBK`, `XD`, and an extended primitive
    /// string inside an `Obj`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s)
            | Self::Uri(s)
            | Self::Version(s)
            | Self::ScriptBlock(s)
            | Self::XmlDocument(s) => Some(s),
            Self::Object(o) => o.primitive.as_ref()?.as_str(),
            _ => None,
        }
    }

    /// The text of `S`, or of an `Obj`: its string primitive, else its `<ToString>`. How a name
    /// sent as an object reads (a deserialized string, an enum); unlike [`Value::as_str`], the
    /// other string-bodied tags (`URI`, `Version`, `SBK`, `XD`) are not names and give None.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            Self::Object(o) => match &o.primitive {
                Some(Self::String(s)) => Some(s),
                _ => o.to_string.as_deref(),
            },
            _ => None,
        }
    }

    /// The boolean of `B` (also inside an `Obj`, and a `SwitchParameter`'s `IsPresent`).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::Object(o) => match &o.primitive {
                Some(p) => p.as_bool(),
                None => o.property("IsPresent")?.as_bool(),
            },
            _ => None,
        }
    }

    /// Any integer tag as `i64` (also an enum `Obj`'s integer); `U64` above `i64::MAX` is None.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::I8(v) => Some((*v).into()),
            Self::U8(v) => Some((*v).into()),
            Self::I16(v) => Some((*v).into()),
            Self::U16(v) => Some((*v).into()),
            Self::I32(v) => Some((*v).into()),
            Self::U32(v) => Some((*v).into()),
            Self::I64(v) => Some(*v),
            Self::U64(v) => i64::try_from(*v).ok(),
            Self::Object(o) => o.primitive.as_ref()?.as_i64(),
            _ => None,
        }
    }

    /// [`Value::as_i64`] narrowed to `i32` when it fits.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_i64().and_then(|v| i32::try_from(v).ok())
    }

    /// `Db`/`Sg` (and integers) as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Double(v) => Some(*v),
            Self::Float(v) => Some((*v).into()),
            Self::Object(o) => o.primitive.as_ref()?.as_f64(),
            other => other.as_i64().map(|v| v as f64),
        }
    }

    /// The date of `DT`.
    pub fn as_datetime(&self) -> Option<DateTime<FixedOffset>> {
        match self {
            Self::DateTime(d) => Some(*d),
            Self::UtcDateTime(d) => Some(d.fixed_offset()),
            Self::Object(o) => o.primitive.as_ref()?.as_datetime(),
            _ => None,
        }
    }

    /// The GUID of `G`.
    pub fn as_guid(&self) -> Option<uuid::Uuid> {
        match self {
            Self::Guid(g) => Some(*g),
            Self::Object(o) => o.primitive.as_ref()?.as_guid(),
            _ => None,
        }
    }

    /// The object of `Obj`.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The object of `Obj`, mutably.
    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The items of an `Obj` with an `LST`/`IE`/`STK`/`QUE` body.
    pub fn as_list(&self) -> Option<&[Value]> {
        self.as_object()?.items()
    }

    /// The elements PowerShell would enumerate: a list-bodied `Obj`'s items, `Nil` none, a
    /// wrapped primitive itself, and any other value (a dictionary included) as one element.
    pub fn elements(&self) -> Vec<&Value> {
        match self {
            Self::Nil => Vec::new(),
            Self::Object(o) => match &o.container {
                Some(
                    Container::List(l)
                    | Container::Enumerable(l)
                    | Container::Stack(l)
                    | Container::Queue(l),
                ) => l.iter().collect(),
                Some(Container::Dictionary(_)) => vec![self],
                None => match &o.primitive {
                    Some(p) => vec![p],
                    None => vec![self],
                },
            },
            other => vec![other],
        }
    }

    /// The entries of an `Obj` with a `DCT` body.
    pub fn as_dictionary(&self) -> Option<&[(Value, Value)]> {
        self.as_object()?.entries()
    }

    /// A property of an `Obj` ([`Object::property`]); None for primitives.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.as_object()?.property(name)
    }

    /// The element name this value is written as (`S`, `I32`, `Obj`, …).
    pub fn tag(&self) -> &'static str {
        match self {
            Self::Nil => "Nil",
            Self::String(_) => "S",
            Self::Bool(_) => "B",
            Self::Char(_) => "C",
            Self::I8(_) => "SB",
            Self::U8(_) => "By",
            Self::I16(_) => "I16",
            Self::U16(_) => "U16",
            Self::I32(_) => "I32",
            Self::U32(_) => "U32",
            Self::I64(_) => "I64",
            Self::U64(_) => "U64",
            Self::Float(_) => "Sg",
            Self::Double(_) => "Db",
            Self::Decimal(_) => "D",
            Self::DateTime(_) | Self::UtcDateTime(_) => "DT",
            Self::Duration(_) => "TS",
            Self::Guid(_) => "G",
            Self::Bytes(_) => "BA",
            Self::Uri(_) => "URI",
            Self::Version(_) => "Version",
            Self::XmlDocument(_) => "XD",
            Self::ScriptBlock(_) => "SBK",
            Self::Object(_) => "Obj",
        }
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::String(v.clone())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::I32(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::I64(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::U32(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::U64(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Double(v)
    }
}
impl From<uuid::Uuid> for Value {
    fn from(v: uuid::Uuid) -> Self {
        Self::Guid(v)
    }
}
impl From<DateTime<FixedOffset>> for Value {
    fn from(v: DateTime<FixedOffset>) -> Self {
        Self::DateTime(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Self::UtcDateTime(v)
    }
}
impl From<Object> for Value {
    fn from(v: Object) -> Self {
        v.into_value()
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Nil, Into::into)
    }
}

#[cfg(test)]
mod tests;
