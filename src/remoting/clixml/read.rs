//! The CLIXML parser: quick-xml events into [`Value`]s, defensively.
//!
//! Client input is untrusted: the document size, nesting depth, number of values and the
//! bytes the values take once decoded are capped ([`Limits`]). A `<Ref>` (which copies an
//! earlier object, MS-PSRP 2.2.5.2.1) costs the values *and the bytes* it copies against the
//! same budget, so neither nested refs nor 26,000 refs to one 256 KiB string can expand a
//! 1 MB document into gigabytes: the document is refused ([`ClixmlError::TooExpanded`]) as
//! soon as its decoded size passes [`Limits::max_bytes`]. Objects are only remembered for `<Ref>` when the document
//! actually contains a `<Ref>` naming them (a cheap pre-scan), so ordinary documents pay
//! nothing for it.
//!
//! Leniency follows reference §8.9: whitespace between elements, comments, an XML
//! declaration, a BOM, namespace prefixes and unknown elements are tolerated (unknown
//! elements in value position read as their text; elsewhere they are skipped), while
//! malformed numbers, dates and ids are errors that name the element and the text.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::text::{decode_name, parse_datetime, parse_double, parse_duration, parse_float};
use super::{ClixmlError, Container, Object, Value};

/// Bounds on a document the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in bytes.
    pub max_len: usize,
    /// Deepest nesting of values (Windows PowerShell stops at 50 below the top).
    pub max_depth: usize,
    /// Most values in one document, counting each `<Ref>` copy in full.
    pub max_values: usize,
    /// Most bytes the decoded values may take (text and binary data, plus [`VALUE_COST`] per
    /// value), counting each `<Ref>` copy in full.
    pub max_bytes: usize,
}

/// What one decoded value costs against [`Limits::max_bytes`] besides its text: roughly the
/// size of a `Value` and its slot in a container.
pub const VALUE_COST: usize = 32;

impl Default for Limits {
    /// 32 MiB, depth 64, one million values, 64 MiB decoded: far above any real PSRP
    /// message (the fragment layer already caps messages), low enough that a hostile one
    /// cannot exhaust memory.
    fn default() -> Self {
        Self {
            max_len: 32 * 1024 * 1024,
            max_depth: 64,
            max_values: 1_000_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Parses one CLIXML document (a PSRP message's data) with the default [`Limits`].
///
/// # Errors
/// [`ClixmlError`] for malformed, oversize or unsupported (SecureString) input.
pub fn from_xml(xml: &str) -> Result<Value, ClixmlError> {
    from_xml_with(xml, &Limits::default())
}

/// Parses one CLIXML document with explicit limits. A file-format `<Objs>` wrapper holding
/// exactly one object is accepted too.
///
/// # Errors
/// [`ClixmlError`] for malformed, oversize or unsupported (SecureString) input.
pub fn from_xml_with(xml: &str, limits: &Limits) -> Result<Value, ClixmlError> {
    from_xml_sized(xml, limits).map(|(value, _)| value)
}

/// Like [`from_xml_with`], also returning the decoded size as [`Limits::max_bytes`] counts
/// it (what holding the value costs, for memory accounting).
///
/// # Errors
/// [`ClixmlError`] for malformed, oversize or unsupported (SecureString) input.
pub fn from_xml_sized(xml: &str, limits: &Limits) -> Result<(Value, usize), ClixmlError> {
    let mut parser = Parser::new(xml, limits)?;
    let mut values = parser.document()?;
    match values.len() {
        0 => Err(ClixmlError::Empty),
        1 => Ok((values.pop().expect("one value"), parser.bytes)),
        _ => Err(ClixmlError::MultipleRoots {
            element: values[1].tag().to_owned(),
        }),
    }
}

/// Parses file-format CLIXML (`Export-Clixml`, `PSSerializer`, the REST API's `_clixml`):
/// `<Objs Version=… xmlns=…>` holding any number of objects (or a bare element, read as one).
///
/// # Errors
/// [`ClixmlError`] for malformed, oversize or unsupported (SecureString) input.
pub fn from_xml_document(xml: &str) -> Result<Vec<Value>, ClixmlError> {
    Parser::new(xml, &Limits::default())?.document()
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    limits: Limits,
    values: usize,
    /// Decoded bytes so far (see [`Limits::max_bytes`]).
    bytes: usize,
    /// RefIds some `<Ref>` names; only those objects are remembered.
    wanted: HashSet<String>,
    /// Remembered objects with the values and bytes a copy costs.
    objects: HashMap<String, (Value, usize, usize)>,
    types: HashMap<String, Vec<String>>,
}

fn xml_error(reader: &Reader<&[u8]>, err: impl std::fmt::Display) -> ClixmlError {
    ClixmlError::Xml {
        offset: reader.buffer_position(),
        message: err.to_string(),
    }
}

fn invalid(tag: &str, text: &str, reason: impl Into<String>) -> ClixmlError {
    ClixmlError::InvalidValue {
        tag: tag.to_owned(),
        text: text.chars().take(100).collect(),
        reason: reason.into(),
    }
}

/// Names of elements that hold one value.
fn is_value_tag(tag: &[u8]) -> bool {
    matches!(
        tag,
        b"Nil"
            | b"S"
            | b"B"
            | b"C"
            | b"SB"
            | b"By"
            | b"I16"
            | b"U16"
            | b"I32"
            | b"U32"
            | b"I64"
            | b"U64"
            | b"Sg"
            | b"Db"
            | b"D"
            | b"DT"
            | b"TS"
            | b"G"
            | b"BA"
            | b"URI"
            | b"Version"
            | b"XD"
            | b"SBK"
            | b"SS"
            | b"Obj"
            | b"Ref"
    )
}

fn tag_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

impl<'a> Parser<'a> {
    fn new(xml: &'a str, limits: &Limits) -> Result<Self, ClixmlError> {
        if xml.len() > limits.max_len {
            return Err(ClixmlError::TooLarge {
                len: xml.len(),
                limit: limits.max_len,
            });
        }
        let xml = xml.trim_start_matches('\u{FEFF}');
        let wanted = if xml.contains("<Ref") {
            prescan_refs(xml)?
        } else {
            HashSet::new()
        };
        Ok(Self {
            reader: Reader::from_str(xml),
            limits: *limits,
            values: 0,
            bytes: 0,
            wanted,
            objects: HashMap::new(),
            types: HashMap::new(),
        })
    }

    fn next(&mut self) -> Result<Event<'a>, ClixmlError> {
        self.reader
            .read_event()
            .map_err(|e| xml_error(&self.reader, e))
    }

    fn count(&mut self, n: usize) -> Result<(), ClixmlError> {
        self.values = self.values.saturating_add(n);
        if self.values > self.limits.max_values {
            return Err(ClixmlError::TooManyValues {
                limit: self.limits.max_values,
            });
        }
        self.spend(n.saturating_mul(VALUE_COST))
    }

    /// Charges `n` decoded bytes.
    fn spend(&mut self, n: usize) -> Result<(), ClixmlError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_bytes {
            return Err(ClixmlError::TooExpanded {
                limit: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    fn attr(&self, e: &BytesStart<'_>, key: &[u8]) -> Result<Option<String>, ClixmlError> {
        for a in e.attributes() {
            let a = a.map_err(|err| xml_error(&self.reader, err))?;
            if a.key.local_name().as_ref() == key {
                let v = a
                    .unescape_value()
                    .map_err(|err| xml_error(&self.reader, err))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    }

    fn skip(&mut self, e: &BytesStart<'a>) -> Result<(), ClixmlError> {
        self.reader
            .read_to_end(e.name())
            .map(|_| ())
            .map_err(|err| xml_error(&self.reader, err))
    }

    fn unexpected_eof(&self) -> ClixmlError {
        xml_error(
            &self.reader,
            "unexpected end of document: an element is not closed",
        )
    }

    /// All top-level values (the children of `<Objs>`, or the one root element).
    fn document(&mut self) -> Result<Vec<Value>, ClixmlError> {
        let mut roots = Vec::new();
        loop {
            let (e, empty) = match self.next()? {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::Text(t) => {
                    if t.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Err(xml_error(&self.reader, "text outside of any element"));
                }
                Event::End(_) => return Err(xml_error(&self.reader, "unmatched end tag")),
                Event::Eof => return Ok(roots),
                _ => continue,
            };
            if !roots.is_empty() {
                return Err(ClixmlError::MultipleRoots {
                    element: tag_name(&e),
                });
            }
            if e.local_name().as_ref() == b"Objs" {
                if !empty {
                    roots = self.items(false, 0)?;
                }
                self.trailing()?;
                return Ok(roots);
            }
            roots.push(self.element(&e, empty, 0)?);
        }
    }

    /// Only whitespace, comments and processing instructions may follow the root.
    fn trailing(&mut self) -> Result<(), ClixmlError> {
        loop {
            match self.next()? {
                Event::Eof => return Ok(()),
                Event::Start(e) | Event::Empty(e) => {
                    return Err(ClixmlError::MultipleRoots {
                        element: tag_name(&e),
                    });
                }
                Event::Text(t) if !t.iter().all(u8::is_ascii_whitespace) => {
                    return Err(xml_error(&self.reader, "text after the root element"));
                }
                _ => {}
            }
        }
    }

    /// The text content of the current element (entities resolved, no `_x` decoding).
    /// `lenient` skips child elements (unknown tags); otherwise they are errors.
    fn text(&mut self, parent: &str, empty: bool, lenient: bool) -> Result<String, ClixmlError> {
        let mut out = String::new();
        if empty {
            return Ok(out);
        }
        loop {
            match self.next()? {
                Event::Text(t) => {
                    let t = t.unescape().map_err(|e| xml_error(&self.reader, e))?;
                    out.push_str(&t);
                }
                Event::CData(c) => {
                    let c = c.decode().map_err(|e| xml_error(&self.reader, e))?;
                    out.push_str(&c);
                }
                Event::End(_) => {
                    self.spend(out.len())?;
                    return Ok(out);
                }
                Event::Start(e) if lenient => self.skip(&e)?,
                Event::Empty(_) if lenient => {}
                Event::Start(e) | Event::Empty(e) => {
                    return Err(ClixmlError::UnexpectedElement {
                        element: tag_name(&e),
                        parent: parent.to_owned(),
                    });
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    fn element(
        &mut self,
        e: &BytesStart<'a>,
        empty: bool,
        depth: usize,
    ) -> Result<Value, ClixmlError> {
        if depth > self.limits.max_depth {
            return Err(ClixmlError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.count(1)?;
        let local = e.local_name();
        let tag = local.as_ref();
        macro_rules! number {
            ($name:literal, $variant:ident, $ty:ty) => {{
                let text = self.text($name, empty, false)?;
                text.trim()
                    .parse::<$ty>()
                    .map(Value::$variant)
                    .map_err(|err| invalid($name, &text, err.to_string()))
            }};
        }
        match tag {
            b"Nil" => {
                if !empty {
                    self.skip(e)?;
                }
                Ok(Value::Nil)
            }
            b"Obj" => self.object(e, empty, depth),
            b"Ref" => {
                let id = self.attr(e, b"RefId")?.unwrap_or_default();
                if !empty {
                    self.skip(e)?;
                }
                let (values, bytes) = self
                    .objects
                    .get(&id)
                    .map(|(_, values, bytes)| (*values, *bytes))
                    .ok_or_else(|| ClixmlError::UnknownRef { ref_id: id.clone() })?;
                // Charge before cloning: the copy is only made if the budget allows it.
                self.count(values)?;
                self.spend(bytes.saturating_sub(values.saturating_mul(VALUE_COST)))?;
                Ok(self.objects[&id].0.clone())
            }
            b"SS" => Err(ClixmlError::SecureString),
            b"S" => Ok(Value::String(decode_name(&self.text("S", empty, false)?))),
            b"B" => {
                let text = self.text("B", empty, false)?;
                match text.trim() {
                    t if t.eq_ignore_ascii_case("true") || t == "1" => Ok(Value::Bool(true)),
                    t if t.eq_ignore_ascii_case("false") || t == "0" => Ok(Value::Bool(false)),
                    _ => Err(invalid("B", &text, "expected true or false")),
                }
            }
            b"C" => number!("C", Char, u16),
            b"SB" => number!("SB", I8, i8),
            b"By" => number!("By", U8, u8),
            b"I16" => number!("I16", I16, i16),
            b"U16" => number!("U16", U16, u16),
            b"I32" => number!("I32", I32, i32),
            b"U32" => number!("U32", U32, u32),
            b"I64" => number!("I64", I64, i64),
            b"U64" => number!("U64", U64, u64),
            b"Sg" => {
                let text = self.text("Sg", empty, false)?;
                parse_float(&text)
                    .map(Value::Float)
                    .ok_or_else(|| invalid("Sg", &text, "not a number"))
            }
            b"Db" => {
                let text = self.text("Db", empty, false)?;
                parse_double(&text)
                    .map(Value::Double)
                    .ok_or_else(|| invalid("Db", &text, "not a number"))
            }
            b"D" => {
                let text = self.text("D", empty, false)?;
                let t = text.trim();
                let ok = !t.is_empty()
                    && t.trim_start_matches(['-', '+'])
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'E' | 'e' | '-' | '+'));
                if ok {
                    Ok(Value::Decimal(t.to_owned()))
                } else {
                    Err(invalid("D", &text, "not a decimal number"))
                }
            }
            b"DT" => {
                let text = self.text("DT", empty, false)?;
                let utc = text.trim_end().ends_with(['Z', 'z']);
                parse_datetime(&text)
                    .map(|d| {
                        if utc {
                            Value::UtcDateTime(d.to_utc())
                        } else {
                            Value::DateTime(d)
                        }
                    })
                    .map_err(|reason| invalid("DT", &text, reason))
            }
            b"TS" => {
                let text = self.text("TS", empty, false)?;
                parse_duration(&text)
                    .map(Value::Duration)
                    .map_err(|reason| invalid("TS", &text, reason))
            }
            b"G" => {
                let text = self.text("G", empty, false)?;
                uuid::Uuid::parse_str(text.trim())
                    .map(Value::Guid)
                    .map_err(|err| invalid("G", &text, err.to_string()))
            }
            b"BA" => {
                let text = self.text("BA", empty, false)?;
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map(Value::Bytes)
                    .map_err(|err| invalid("BA", &text, err.to_string()))
            }
            b"URI" => Ok(Value::Uri(decode_name(&self.text("URI", empty, false)?))),
            b"Version" => Ok(Value::Version(decode_name(
                self.text("Version", empty, false)?.trim(),
            ))),
            b"XD" => Ok(Value::XmlDocument(decode_name(
                &self.text("XD", empty, false)?,
            ))),
            b"SBK" => Ok(Value::ScriptBlock(decode_name(
                &self.text("SBK", empty, false)?,
            ))),
            _ => {
                let name = tag_name(e);
                Ok(Value::String(decode_name(&self.text(&name, empty, true)?)))
            }
        }
    }

    fn object(
        &mut self,
        e: &BytesStart<'a>,
        empty: bool,
        depth: usize,
    ) -> Result<Value, ClixmlError> {
        let ref_id = self.attr(e, b"RefId")?;
        let before = self.values;
        let before_bytes = self.bytes;
        let mut obj = Object::default();
        if !empty {
            loop {
                match self.next()? {
                    Event::Start(c) => self.object_child(&mut obj, &c, false, depth)?,
                    Event::Empty(c) => self.object_child(&mut obj, &c, true, depth)?,
                    Event::End(_) => break,
                    Event::Eof => return Err(self.unexpected_eof()),
                    _ => {}
                }
            }
        }
        let value = Value::Object(Box::new(obj));
        if let Some(id) = ref_id {
            if self.wanted.contains(&id) {
                let size = self.values - before + 1;
                let bytes = self.bytes - before_bytes + VALUE_COST;
                self.objects.insert(id, (value.clone(), size, bytes));
            }
        }
        Ok(value)
    }

    fn object_child(
        &mut self,
        obj: &mut Object,
        c: &BytesStart<'a>,
        empty: bool,
        depth: usize,
    ) -> Result<(), ClixmlError> {
        match c.local_name().as_ref() {
            b"TN" => {
                let id = self.attr(c, b"RefId")?;
                let names = self.type_names(empty)?;
                if let Some(id) = id {
                    self.types.insert(id, names.clone());
                }
                obj.type_names = names;
            }
            b"TNRef" => {
                let id = self.attr(c, b"RefId")?.unwrap_or_default();
                if !empty {
                    self.skip(c)?;
                }
                let names = self
                    .types
                    .get(&id)
                    .cloned()
                    .ok_or(ClixmlError::UnknownTypeRef { ref_id: id })?;
                self.count(names.len())?;
                obj.type_names = names;
            }
            b"ToString" => obj.to_string = Some(decode_name(&self.text("ToString", empty, false)?)),
            b"Props" => {
                let members = self.members(empty, depth)?;
                obj.adapted.extend(members);
            }
            b"MS" => {
                let members = self.members(empty, depth)?;
                obj.extended.extend(members);
            }
            b"LST" => obj.container = Some(Container::List(self.items(empty, depth + 1)?)),
            b"IE" => obj.container = Some(Container::Enumerable(self.items(empty, depth + 1)?)),
            b"STK" => obj.container = Some(Container::Stack(self.items(empty, depth + 1)?)),
            b"QUE" => obj.container = Some(Container::Queue(self.items(empty, depth + 1)?)),
            b"DCT" => obj.container = Some(Container::Dictionary(self.entries(empty, depth + 1)?)),
            tag if is_value_tag(tag) => obj.primitive = Some(self.element(c, empty, depth + 1)?),
            _ => {
                if !empty {
                    self.skip(c)?;
                }
            }
        }
        Ok(())
    }

    fn type_names(&mut self, empty: bool) -> Result<Vec<String>, ClixmlError> {
        let mut names = Vec::new();
        if empty {
            return Ok(names);
        }
        loop {
            match self.next()? {
                Event::Start(t) if t.local_name().as_ref() == b"T" => {
                    self.count(1)?;
                    names.push(decode_name(&self.text("T", false, false)?));
                }
                Event::Empty(t) if t.local_name().as_ref() == b"T" => names.push(String::new()),
                Event::Start(other) => self.skip(&other)?,
                Event::End(_) => return Ok(names),
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    fn members(&mut self, empty: bool, depth: usize) -> Result<Vec<(String, Value)>, ClixmlError> {
        let mut members = Vec::new();
        if empty {
            return Ok(members);
        }
        loop {
            let (c, child_empty) = match self.next()? {
                Event::Start(c) => (c, false),
                Event::Empty(c) => (c, true),
                Event::End(_) => return Ok(members),
                Event::Eof => return Err(self.unexpected_eof()),
                _ => continue,
            };
            let name = decode_name(&self.attr(&c, b"N")?.unwrap_or_default());
            let value = self.element(&c, child_empty, depth + 1)?;
            members.push((name, value));
        }
    }

    fn items(&mut self, empty: bool, depth: usize) -> Result<Vec<Value>, ClixmlError> {
        let mut items = Vec::new();
        if empty {
            return Ok(items);
        }
        loop {
            let (c, child_empty) = match self.next()? {
                Event::Start(c) => (c, false),
                Event::Empty(c) => (c, true),
                Event::End(_) => return Ok(items),
                Event::Eof => return Err(self.unexpected_eof()),
                _ => continue,
            };
            items.push(self.element(&c, child_empty, depth)?);
        }
    }

    fn entries(&mut self, empty: bool, depth: usize) -> Result<Vec<(Value, Value)>, ClixmlError> {
        let mut entries = Vec::new();
        if empty {
            return Ok(entries);
        }
        loop {
            let (en, en_empty) = match self.next()? {
                Event::Start(c) => (c, false),
                Event::Empty(c) => (c, true),
                Event::End(_) => return Ok(entries),
                Event::Eof => return Err(self.unexpected_eof()),
                _ => continue,
            };
            if en.local_name().as_ref() != b"En" {
                if !en_empty {
                    self.skip(&en)?;
                }
                continue;
            }
            let (mut key, mut value) = (Value::Nil, Value::Nil);
            for (name, v) in self.members(en_empty, depth)? {
                if name.eq_ignore_ascii_case("Key") {
                    key = v;
                } else if name.eq_ignore_ascii_case("Value") {
                    value = v;
                }
            }
            entries.push((key, value));
        }
    }
}

/// The RefIds that `<Ref>` elements name.
fn prescan_refs(xml: &str) -> Result<HashSet<String>, ClixmlError> {
    let mut reader = Reader::from_str(xml);
    let mut wanted = HashSet::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == b"Ref" => {
                for a in e.attributes().flatten() {
                    if a.key.local_name().as_ref() == b"RefId" {
                        if let Ok(v) = a.unescape_value() {
                            wanted.insert(v.into_owned());
                        }
                    }
                }
            }
            Ok(Event::Eof) => return Ok(wanted),
            Ok(_) => {}
            Err(err) => return Err(xml_error(&reader, err)),
        }
    }
}
