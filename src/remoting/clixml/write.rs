//! The CLIXML encoder: one value in, one compact document out, RefIds from 0.
//!
//! Every `Obj` gets the next RefId (Windows always writes them); a type-name list already
//! written in this document becomes `<TNRef>`. Lists are compared as slices against the
//! ones already written, kept in a small inline table, so the hot path (an output object with
//! a handful of nested lists) allocates nothing but the output text itself.

use base64::Engine as _;

use super::text::{escape_into, push_datetime, push_double, push_duration, push_float};
use super::{Container, Object, Value};

/// The value as a CLIXML document (its own RefId/TN numbering, no `<Objs>` root).
pub fn to_xml(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_xml(value, &mut out);
    out
}

/// Appends the value as a CLIXML document to `out` (RefIds restart at 0 for every call).
pub fn write_xml(value: &Value, out: &mut String) {
    let mut writer = Writer {
        out,
        next_ref: 0,
        types: TypeTable::default(),
    };
    writer.value(value, None);
}

/// Type-name lists already written in this document; the index is the TN RefId.
#[derive(Default)]
struct TypeTable<'v> {
    inline: [&'v [String]; 8],
    len: usize,
    spill: Vec<&'v [String]>,
}

impl<'v> TypeTable<'v> {
    /// The RefId of `names` and whether it is new.
    fn intern(&mut self, names: &'v [String]) -> (usize, bool) {
        let inline = &self.inline[..self.len.min(8)];
        if let Some(i) = inline.iter().position(|t| *t == names) {
            return (i, false);
        }
        if let Some(i) = self.spill.iter().position(|t| *t == names) {
            return (8 + i, false);
        }
        let id = self.len;
        if id < 8 {
            self.inline[id] = names;
        } else {
            self.spill.push(names);
        }
        self.len += 1;
        (id, true)
    }
}

struct Writer<'o, 'v> {
    out: &'o mut String,
    next_ref: u64,
    types: TypeTable<'v>,
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

impl<'v> Writer<'_, 'v> {
    fn open(&mut self, tag: &str, name: Option<&str>) {
        self.out.push('<');
        self.out.push_str(tag);
        if let Some(name) = name {
            self.out.push_str(" N=\"");
            escape_into(self.out, name, true);
            self.out.push('"');
        }
        self.out.push('>');
    }

    fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn text(&mut self, tag: &str, name: Option<&str>, text: &str) {
        self.open(tag, name);
        escape_into(self.out, text, false);
        self.close(tag);
    }

    fn value(&mut self, value: &'v Value, name: Option<&str>) {
        let tag = value.tag();
        match value {
            Value::Nil => {
                self.out.push_str("<Nil");
                if let Some(name) = name {
                    self.out.push_str(" N=\"");
                    escape_into(self.out, name, true);
                    self.out.push('"');
                }
                self.out.push_str(" />");
            }
            Value::String(s)
            | Value::Decimal(s)
            | Value::Uri(s)
            | Value::Version(s)
            | Value::XmlDocument(s)
            | Value::ScriptBlock(s) => self.text(tag, name, s),
            Value::Bool(b) => {
                self.open(tag, name);
                self.out.push_str(if *b { "true" } else { "false" });
                self.close(tag);
            }
            Value::Char(c) => self.unsigned(tag, name, (*c).into()),
            Value::U8(v) => self.unsigned(tag, name, (*v).into()),
            Value::U16(v) => self.unsigned(tag, name, (*v).into()),
            Value::U32(v) => self.unsigned(tag, name, (*v).into()),
            Value::U64(v) => self.unsigned(tag, name, *v),
            Value::I8(v) => self.signed(tag, name, (*v).into()),
            Value::I16(v) => self.signed(tag, name, (*v).into()),
            Value::I32(v) => self.signed(tag, name, (*v).into()),
            Value::I64(v) => self.signed(tag, name, *v),
            Value::Float(v) => {
                self.open(tag, name);
                push_float(self.out, *v);
                self.close(tag);
            }
            Value::Double(v) => {
                self.open(tag, name);
                push_double(self.out, *v);
                self.close(tag);
            }
            Value::DateTime(dt) => {
                self.open(tag, name);
                push_datetime(self.out, dt, false);
                self.close(tag);
            }
            Value::UtcDateTime(dt) => {
                self.open(tag, name);
                push_datetime(self.out, &dt.fixed_offset(), true);
                self.close(tag);
            }
            Value::Duration(ticks) => {
                self.open(tag, name);
                push_duration(self.out, *ticks);
                self.close(tag);
            }
            Value::Guid(g) => {
                self.open(tag, name);
                let mut buf = uuid::Uuid::encode_buffer();
                self.out.push_str(g.hyphenated().encode_lower(&mut buf));
                self.close(tag);
            }
            Value::Bytes(b) => {
                self.open(tag, name);
                base64::engine::general_purpose::STANDARD.encode_string(b, self.out);
                self.close(tag);
            }
            Value::Object(obj) => self.object(obj, name),
        }
    }

    fn unsigned(&mut self, tag: &str, name: Option<&str>, v: u64) {
        self.open(tag, name);
        push_u64(self.out, v);
        self.close(tag);
    }

    fn signed(&mut self, tag: &str, name: Option<&str>, v: i64) {
        self.open(tag, name);
        push_i64(self.out, v);
        self.close(tag);
    }

    fn object(&mut self, obj: &'v Object, name: Option<&str>) {
        self.out.push_str("<Obj");
        if let Some(name) = name {
            self.out.push_str(" N=\"");
            escape_into(self.out, name, true);
            self.out.push('"');
        }
        self.out.push_str(" RefId=\"");
        push_u64(self.out, self.next_ref);
        self.next_ref += 1;
        self.out.push_str("\">");
        if !obj.type_names.is_empty() {
            let (id, new) = self.types.intern(&obj.type_names);
            if new {
                self.out.push_str("<TN RefId=\"");
                push_u64(self.out, id as u64);
                self.out.push_str("\">");
                for t in &obj.type_names {
                    self.text("T", None, t);
                }
                self.out.push_str("</TN>");
            } else {
                self.out.push_str("<TNRef RefId=\"");
                push_u64(self.out, id as u64);
                self.out.push_str("\" />");
            }
        }
        if let Some(s) = &obj.to_string {
            self.text("ToString", None, s);
        }
        if let Some(p) = &obj.primitive {
            self.value(p, None);
        }
        match &obj.container {
            None => {}
            Some(Container::Dictionary(entries)) => {
                self.out.push_str("<DCT>");
                for (k, v) in entries {
                    self.out.push_str("<En>");
                    self.value(k, Some("Key"));
                    self.value(v, Some("Value"));
                    self.out.push_str("</En>");
                }
                self.out.push_str("</DCT>");
            }
            Some(
                Container::List(items)
                | Container::Enumerable(items)
                | Container::Stack(items)
                | Container::Queue(items),
            ) => {
                let tag = match &obj.container {
                    Some(Container::Enumerable(_)) => "IE",
                    Some(Container::Stack(_)) => "STK",
                    Some(Container::Queue(_)) => "QUE",
                    _ => "LST",
                };
                if items.is_empty() {
                    self.out.push('<');
                    self.out.push_str(tag);
                    self.out.push_str(" />");
                } else {
                    self.open(tag, None);
                    for item in items {
                        self.value(item, None);
                    }
                    self.close(tag);
                }
            }
        }
        self.members("Props", &obj.adapted);
        self.members("MS", &obj.extended);
        self.out.push_str("</Obj>");
    }

    fn members(&mut self, tag: &str, members: &'v [(String, Value)]) {
        if members.is_empty() {
            return;
        }
        self.open(tag, None);
        for (n, v) in members {
            self.value(v, Some(n));
        }
        self.close(tag);
    }
}
