//! The `cjson` library of Redis's Lua (lua-cjson 2.1's `encode`, `decode`,
//! `null`, and the settings `encode_max_depth`, `decode_max_depth`,
//! `encode_invalid_numbers`, `encode_keep_buffer`).
//!
//! Encoding follows lua-cjson's rules: a table whose keys are all positive
//! integers is an array (holes become `null`; an "excessively sparse"
//! one, largest key above twice the count and above 10, is an error), any
//! other non-empty table an object whose keys must be strings or numbers,
//! an empty table `{}`; numbers print as `%.14g`; `/` is escaped as `\/`.
//! Decoding gives Lua numbers, strings, booleans, tables, and `cjson.null`
//! (a light userdata that converts to a nil reply) for `null`.
//!
//! Bounds: both directions stop at 1,000 levels of nesting, as lua-cjson
//! does, and encoding stops when its output passes `scripting.max_memory`
//! (a table that holds itself many times would otherwise grow it
//! exponentially). Decoded values are Lua allocations, under the Lua heap
//! limit.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{LightUserData, Lua, Table, Value};

/// Deepest nesting either direction accepts: lua-cjson's default, and
/// the most `encode_max_depth` / `decode_max_depth` may set.
const MAX_DEPTH: usize = 1000;

/// lua-cjson's settings that change results, kept for the Lua state like
/// lua-cjson's (a script that changes them changes them for later
/// scripts too, as in Redis).
#[derive(Debug)]
struct Settings {
    encode_max_depth: Cell<usize>,
    decode_max_depth: Cell<usize>,
    /// `false`: NaN and infinities are an error; `true`: written as `nan`,
    /// `inf`, `-inf`; `"null"`: written as `null`.
    encode_invalid_numbers: Cell<Invalid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Refuse,
    Write,
    Null,
}

/// `cjson.null`.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

struct Encoder<'a> {
    /// Numbers are written as Lua writes them (`%.14g`, lua-cjson's format
    /// too).
    lua: &'a Lua,
    out: Vec<u8>,
    limit: usize,
    max_depth: usize,
    invalid: Invalid,
}

impl Encoder<'_> {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), String> {
        if self.out.len() > self.limit {
            return Err("Cannot serialise: output larger than scripting.max_memory".into());
        }
        match v {
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::LightUserData(p) if p.0.is_null() => self.out.extend_from_slice(b"null"),
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Integer(_) | Value::Number(_) => self.number(v)?,
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Table(t) => self.table(t, depth + 1)?,
            other => {
                return Err(format!(
                    "Cannot serialise {}: type not supported",
                    other.type_name()
                ));
            }
        }
        Ok(())
    }

    fn number(&mut self, v: &Value) -> Result<(), String> {
        if let Value::Number(f) = *v
            && !f.is_finite()
        {
            match self.invalid {
                Invalid::Refuse => {
                    return Err("Cannot serialise number: must not be NaN or Inf".into());
                }
                Invalid::Null => self.out.extend_from_slice(b"null"),
                Invalid::Write if f.is_nan() => self.out.extend_from_slice(b"nan"),
                Invalid::Write if f > 0.0 => self.out.extend_from_slice(b"inf"),
                Invalid::Write => self.out.extend_from_slice(b"-inf"),
            }
            return Ok(());
        }
        let text = self.number_text(v)?;
        self.out.extend_from_slice(&text);
        Ok(())
    }

    /// A number as Lua's `tostring` writes it.
    fn number_text(&self, v: &Value) -> Result<Vec<u8>, String> {
        match self.lua.coerce_string(v.clone()) {
            Ok(Some(s)) => Ok(s.as_bytes().to_vec()),
            Ok(None) => Err("Cannot serialise number".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn string(&mut self, s: &[u8]) {
        self.out.push(b'"');
        for &b in s {
            match b {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                b'/' => self.out.extend_from_slice(b"\\/"),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\r' => self.out.extend_from_slice(b"\\r"),
                b'\t' => self.out.extend_from_slice(b"\\t"),
                0x08 => self.out.extend_from_slice(b"\\b"),
                0x0c => self.out.extend_from_slice(b"\\f"),
                0..=0x1f => self.out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                _ => self.out.push(b),
            }
        }
        self.out.push(b'"');
    }

    fn table(&mut self, t: &Table, depth: usize) -> Result<(), String> {
        if depth > self.max_depth {
            return Err(format!("Cannot serialise, excessive nesting ({depth})"));
        }
        // Array when every key is a positive integer (lua-cjson's test).
        let (mut max, mut count, mut array) = (0usize, 0usize, true);
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| e.to_string())?;
            count += 1;
            let idx = match k {
                Value::Integer(i) if i >= 1 => Some(i as usize),
                Value::Number(f) if f >= 1.0 && f.fract() == 0.0 => Some(f as usize),
                _ => None,
            };
            match idx {
                Some(i) => max = max.max(i),
                None => array = false,
            }
        }
        if array && count > 0 {
            if max > count * 2 && max > 10 {
                return Err("Cannot serialise table: excessively sparse array".into());
            }
            self.out.push(b'[');
            for i in 1..=max {
                if i > 1 {
                    self.out.push(b',');
                }
                let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                self.value(&v, depth)?;
            }
            self.out.push(b']');
            return Ok(());
        }
        self.out.push(b'{');
        let mut first = true;
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| e.to_string())?;
            if !first {
                self.out.push(b',');
            }
            first = false;
            match &k {
                Value::String(s) => self.string(&s.as_bytes()),
                Value::Integer(_) | Value::Number(_) => {
                    let text = self.number_text(&k)?;
                    self.string(&text);
                }
                other => {
                    return Err(format!(
                        "Cannot serialise {}: table key must be a number or string",
                        other.type_name()
                    ));
                }
            }
            self.out.push(b':');
            self.value(&v, depth)?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// `cjson.encode(v)`.
fn encode(
    lua: &Lua,
    v: &Value,
    limit: usize,
    max_depth: usize,
    invalid: Invalid,
) -> Result<Vec<u8>, String> {
    let mut e = Encoder {
        lua,
        out: Vec::new(),
        limit,
        max_depth,
        invalid,
    };
    e.value(v, 0)?;
    Ok(e.out)
}

struct Decoder<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl Decoder<'_> {
    fn err<T>(&self, expected: &str) -> mlua::Result<T> {
        let found = match self.s.get(self.pos) {
            None => "T_END".to_string(),
            Some(_) => "invalid token".to_string(),
        };
        Err(mlua::Error::runtime(format!(
            "Expected {expected} but found {found} at character {}",
            self.pos + 1
        )))
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> mlua::Result<Value> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            self.err("value")
        }
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        self.ws();
        match self.s.get(self.pos) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Some(b't') => self.literal(b"true", Value::Boolean(true)),
            Some(b'f') => self.literal(b"false", Value::Boolean(false)),
            Some(b'n') => self.literal(b"null", null()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err("value"),
        }
    }

    fn nested(&self, depth: usize) -> mlua::Result<()> {
        if depth > self.max_depth {
            return Err(mlua::Error::runtime(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.pos + 1
            )));
        }
        Ok(())
    }

    /// Opens an array or object (at its bracket) one level deeper: its
    /// table, and whether it closed at once (`close`).
    fn open(&mut self, depth: usize, close: u8) -> mlua::Result<(Table, bool)> {
        self.nested(depth)?;
        self.pos += 1;
        let t = self.lua.create_table()?;
        self.ws();
        let empty = self.s.get(self.pos) == Some(&close);
        if empty {
            self.pos += 1;
        }
        Ok((t, empty))
    }

    fn array(&mut self, depth: usize) -> mlua::Result<Value> {
        let (t, empty) = self.open(depth, b']')?;
        if empty {
            return Ok(Value::Table(t));
        }
        let mut i = 1;
        loop {
            let v = self.value(depth)?;
            t.raw_set(i, v)?;
            i += 1;
            self.ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return self.err("comma or array end"),
            }
        }
    }

    fn object(&mut self, depth: usize) -> mlua::Result<Value> {
        let (t, empty) = self.open(depth, b'}')?;
        if empty {
            return Ok(Value::Table(t));
        }
        loop {
            self.ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return self.err("object key string");
            }
            let k = self.lua.create_string(self.string()?)?;
            self.ws();
            if self.s.get(self.pos) != Some(&b':') {
                return self.err("colon");
            }
            self.pos += 1;
            let v = self.value(depth)?;
            t.raw_set(k, v)?;
            self.ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return self.err("comma or object end"),
            }
        }
    }

    /// A string token (at its opening quote), unescaped.
    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.pos) else {
                self.pos = start;
                return self.err("string end");
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.err("escape");
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = self.unicode()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            self.pos -= 2;
                            return self.err("valid escape");
                        }
                    }
                }
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> mlua::Result<u32> {
        let digits = self.s.get(self.pos..self.pos + 4);
        let v = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match v {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => self.err("4 hex digits"),
        }
    }

    /// The code point of `\uXXXX` (a surrogate pair takes two escapes).
    fn unicode(&mut self) -> mlua::Result<char> {
        let hi = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&hi) {
            if !self.s[self.pos..].starts_with(b"\\u") {
                return self.err("low surrogate");
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xdc00..0xe000).contains(&lo) {
                return self.err("low surrogate");
            }
            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
        } else {
            hi
        };
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.err("valid unicode escape"),
        }
    }

    fn number(&mut self) -> mlua::Result<Value> {
        let start = self.pos;
        while matches!(
            self.s.get(self.pos),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Number(f)),
            _ => {
                self.pos = start;
                self.err("value")
            }
        }
    }
}

/// `cjson.decode(s)`.
fn decode(lua: &Lua, s: &[u8], max_depth: usize) -> mlua::Result<Value> {
    let mut d = Decoder {
        lua,
        s,
        pos: 0,
        max_depth,
    };
    let v = d.value(0)?;
    d.ws();
    if d.pos < s.len() {
        return d.err("the end");
    }
    Ok(v)
}

/// Builds the `cjson` table; `limit` bounds an encoding's output.
pub fn table(lua: &Lua, limit: usize) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let cfg = Rc::new(Settings {
        encode_max_depth: Cell::new(MAX_DEPTH),
        decode_max_depth: Cell::new(MAX_DEPTH),
        encode_invalid_numbers: Cell::new(Invalid::Refuse),
    });
    let c = cfg.clone();
    t.raw_set(
        "encode",
        lua.create_function(move |lua, v: Value| {
            let out = encode(
                lua,
                &v,
                limit,
                c.encode_max_depth.get(),
                c.encode_invalid_numbers.get(),
            )
            .map_err(mlua::Error::runtime)?;
            lua.create_string(out)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode",
        lua.create_function(move |lua, s: mlua::LuaString| {
            decode(lua, &s.as_bytes(), c.decode_max_depth.get())
        })?,
    )?;
    // `encode_max_depth([n])` / `decode_max_depth([n])`: set (1 to 1000
    // here) and return the depth in force.
    for (name, encoding) in [("encode_max_depth", true), ("decode_max_depth", false)] {
        let c = cfg.clone();
        t.raw_set(
            name,
            lua.create_function(move |_, n: Option<i64>| {
                let cell = if encoding {
                    &c.encode_max_depth
                } else {
                    &c.decode_max_depth
                };
                if let Some(n) = n {
                    if !(1..=MAX_DEPTH as i64).contains(&n) {
                        return Err(mlua::Error::runtime(format!(
                            "bad argument #1 (expected integer between 1 and {MAX_DEPTH})"
                        )));
                    }
                    cell.set(n as usize);
                }
                Ok(cell.get())
            })?,
        )?;
    }
    let c = cfg;
    t.raw_set(
        "encode_invalid_numbers",
        lua.create_function(move |lua, v: Option<Value>| {
            let set = match v {
                None => None,
                Some(Value::Boolean(b)) => Some(if b { Invalid::Write } else { Invalid::Refuse }),
                Some(Value::String(s)) if &*s.as_bytes() == b"null" => Some(Invalid::Null),
                Some(Value::String(s)) if &*s.as_bytes() == b"on" => Some(Invalid::Write),
                Some(Value::String(s)) if &*s.as_bytes() == b"off" => Some(Invalid::Refuse),
                Some(_) => {
                    return Err(mlua::Error::runtime(
                        "bad argument #1 (invalid option: expected true, false or \"null\")",
                    ));
                }
            };
            if let Some(set) = set {
                c.encode_invalid_numbers.set(set);
            }
            Ok(match c.encode_invalid_numbers.get() {
                Invalid::Refuse => Value::Boolean(false),
                Invalid::Write => Value::Boolean(true),
                Invalid::Null => Value::String(lua.create_string("null")?),
            })
        })?,
    )?;
    t.raw_set("null", null())?;
    // lua-cjson's buffer reuse switch: an allocation detail, nothing to
    // change here; it returns the setting like lua-cjson.
    t.raw_set(
        "encode_keep_buffer",
        lua.create_function(|_, on: Option<bool>| Ok(on.unwrap_or(true)))?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_lua_and_lua_cjson_write_them() {
        let lua = Lua::new();
        let encode = |v: f64| {
            let out = encode(&lua, &Value::Number(v), 1 << 20, MAX_DEPTH, Invalid::Refuse);
            String::from_utf8(out.unwrap()).unwrap()
        };
        for (v, want) in [
            (0.0, "0"),
            (100.0, "100"),
            (-5000.0, "-5000"),
            (0.0003, "0.0003"),
            (1023.2, "1023.2"),
            (0.1, "0.1"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345678901234e+14"),
            (1e-5, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (std::f64::consts::E, "2.718281828459"),
            (123.456_789_012_345_67, "123.45678901235"),
        ] {
            assert_eq!(encode(v), want, "{v}");
        }
        // An integral value mlua hands over as an integer is a Lua number
        // too (redis-server 7.0.15 writes 1e+15).
        let out = super::encode(
            &lua,
            &Value::Integer(1_000_000_000_000_000),
            1 << 20,
            MAX_DEPTH,
            Invalid::Refuse,
        );
        assert_eq!(out.unwrap(), b"1e+15");
    }

    fn roundtrip(lua: &Lua, src: &str) -> String {
        lua.globals()
            .set("cjson", table(lua, 1 << 20).unwrap())
            .unwrap();
        lua.load(src).eval::<String>().unwrap()
    }

    #[test]
    fn encodes_and_decodes_like_lua_cjson() {
        let lua = Lua::new();
        assert_eq!(
            roundtrip(&lua, "return cjson.encode({1, 'a/b', true, {x = 1.5}})"),
            r#"[1,"a\/b",true,{"x":1.5}]"#
        );
        assert_eq!(roundtrip(&lua, "return cjson.encode({})"), "{}");
        assert_eq!(
            roundtrip(&lua, "return cjson.encode({[1] = 1, [3] = 3})"),
            "[1,null,3]"
        );
        assert_eq!(
            roundtrip(&lua, r#"return cjson.encode("\n\1")"#),
            r#""\n\u0001""#
        );
        assert_eq!(
            roundtrip(
                &lua,
                r#"return table.concat(cjson.decode("[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]"), " ")"#
            ),
            "0 -5000 -1 0.0003 1023.2 0"
        );
        assert_eq!(
            roundtrip(
                &lua,
                r#"local d = cjson.decode([[{"a": "\u00e9\ud83d\ude00", "b": [null]}]])
                   return d.a .. tostring(d.b[1] == cjson.null)"#
            ),
            "\u{e9}\u{1f600}true"
        );
    }

    #[test]
    fn settings_change_the_limits() {
        let lua = Lua::new();
        assert_eq!(
            roundtrip(
                &lua,
                "local a = pcall(cjson.encode, {{1}}) cjson.encode_max_depth(1) \
                 local b = pcall(cjson.encode, {{1}}) cjson.encode_max_depth(1000) \
                 cjson.decode_max_depth(1) local c = pcall(cjson.decode, '[[1]]') \
                 cjson.decode_max_depth(1000) \
                 local d = pcall(cjson.encode, 0/0) cjson.encode_invalid_numbers(true) \
                 local e = cjson.encode({1/0}) cjson.encode_invalid_numbers('null') \
                 local f = cjson.encode({1/0}) \
                 return tostring(a) .. tostring(b) .. tostring(c) .. tostring(d) .. e .. f"
            ),
            "truefalsefalsefalse[inf][null]"
        );
        assert!(lua.load("cjson.encode_max_depth(1001)").exec().is_err());
    }

    #[test]
    fn refuses_what_lua_cjson_refuses() {
        // 1,000 levels need more than a test thread's stack in a debug
        // build; the script thread has 64 MiB.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(refusals)
            .unwrap()
            .join()
            .unwrap();
    }

    fn refusals() {
        let lua = Lua::new();
        lua.globals()
            .set("cjson", table(&lua, 1 << 20).unwrap())
            .unwrap();
        let err = |src: &str| lua.load(src).exec().unwrap_err().to_string();
        assert!(err("cjson.encode({[20] = 1})").contains("excessively sparse array"));
        assert!(err("cjson.encode(0/0)").contains("must not be NaN or Inf"));
        assert!(err("cjson.encode(print)").contains("type not supported"));
        assert!(err("local t = {} t[1] = t cjson.encode(t)").contains("excessive nesting"));
        assert!(err("cjson.decode('[1,')").contains("Expected value but found T_END"));
        assert!(err("cjson.decode('[1] x')").contains("Expected the end"));
        assert!(
            err(&format!("cjson.decode('{}')", "[".repeat(1001)))
                .contains("too many nested data structures")
        );
        // A table holding itself 100 times per level stops at the output
        // limit instead of growing without bound.
        assert!(
            err("local t = {} for i = 1, 100 do t[i] = 1 end \
                 for d = 1, 20 do local n = {} for i = 1, 100 do n[i] = t end t = n end \
                 cjson.encode(t)")
            .contains("larger than scripting.max_memory")
        );
    }
}
