//! `string.find`, `string.match`, `string.gmatch` and `string.gsub` for
//! scripts, on [`super::pattern`]: Lua 5.1's behaviour (arguments,
//! results, replacement rules, its quirks) with a matcher the script's
//! interrupt check reaches, so `SCRIPT KILL`, shutdown and the busy
//! threshold work inside pattern matching as they do between Lua
//! instructions. The engine installs them into the real `string` table
//! before the sandbox makes it read-only, so `s:find(…)` uses them too.

use std::rc::Rc;

use mlua::{Function, Lua, LuaString, MultiValue, Table, Value};

use super::pattern::{self, Capture, Matcher, PatError};

/// The script's interrupt check: `Err(message)` stops the script.
pub type Check = Rc<dyn Fn() -> Result<(), String>>;

fn runtime(e: PatError) -> mlua::Error {
    mlua::Error::runtime(e.to_string())
}

/// A string argument as Lua's `luaL_checklstring` takes it (numbers are
/// converted), copied out of Lua.
fn bytes(lua: &Lua, v: Value, arg: usize, f: &str) -> mlua::Result<Vec<u8>> {
    let tn = v.type_name();
    match lua.coerce_string(v)? {
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => Err(mlua::Error::runtime(format!(
            "bad argument #{arg} to '{f}' (string expected, got {})",
            if tn == "nil" { "no value" } else { tn }
        ))),
    }
}

fn value(lua: &Lua, c: &Capture<'_>) -> mlua::Result<Value> {
    Ok(match c {
        Capture::Str(s) => Value::String(lua.create_string(s)?),
        Capture::Pos(p) => Value::Integer(*p as i64),
    })
}

fn values(lua: &Lua, caps: &[Capture<'_>]) -> mlua::Result<Vec<Value>> {
    caps.iter().map(|c| value(lua, c)).collect()
}

fn checker(check: &Check) -> impl FnMut() -> Result<(), String> + '_ {
    move || check()
}

/// Installs the four functions into `string` (a table holding Lua's
/// string library).
pub fn install(lua: &Lua, string: &Table, check: Check) -> mlua::Result<()> {
    string.raw_set("find", find_or_match(lua, check.clone(), true)?)?;
    string.raw_set("match", find_or_match(lua, check.clone(), false)?)?;
    string.raw_set("gmatch", gmatch(lua, check.clone())?)?;
    string.raw_set("gsub", gsub(lua, check)?)?;
    Ok(())
}

fn find_or_match(lua: &Lua, check: Check, find: bool) -> mlua::Result<Function> {
    let name = if find { "find" } else { "match" };
    lua.create_function(
        move |lua, (s, p, init, plain): (Value, Value, Option<i64>, Value)| {
            let s = bytes(lua, s, 1, name)?;
            let p = bytes(lua, p, 2, name)?;
            let start = pattern::start_of(init.unwrap_or(1), s.len());
            let plain = !matches!(plain, Value::Nil | Value::Boolean(false));
            let mut out = Vec::new();
            if find && (plain || pattern::is_plain(&p)) {
                let hit = if p.is_empty() {
                    Some(start)
                } else {
                    memchr::memmem::find(&s[start..], &p).map(|i| start + i)
                };
                match hit {
                    Some(i) => {
                        out.push(Value::Integer(i as i64 + 1));
                        out.push(Value::Integer((i + p.len()) as i64));
                    }
                    None => out.push(Value::Nil),
                }
                return Ok(MultiValue::from_vec(out));
            }
            let (hit, m) = pattern::find_at(&s, &p, start, checker(&check)).map_err(runtime)?;
            match hit {
                None => out.push(Value::Nil),
                Some((b, e)) if find => {
                    out.push(Value::Integer(b as i64 + 1));
                    out.push(Value::Integer(e as i64));
                    out.extend(values(lua, &m.captures(b, e, false).map_err(runtime)?)?);
                }
                Some((b, e)) => out.extend(values(lua, &m.captures(b, e, true).map_err(runtime)?)?),
            }
            Ok(MultiValue::from_vec(out))
        },
    )
}

fn gmatch(lua: &Lua, check: Check) -> mlua::Result<Function> {
    lua.create_function(move |lua, (s, p): (Value, Value)| {
        let s = bytes(lua, s, 1, "gmatch")?;
        let p = bytes(lua, p, 2, "gmatch")?;
        let check = check.clone();
        let mut pos = 0usize;
        // 5.1's gmatch has no anchor: a leading `^` is a literal.
        lua.create_function_mut(move |lua, ()| {
            let pat = pattern::effective(&p);
            let mut m = Matcher::new(&s, pat, checker(&check));
            let mut src = pos;
            while src <= s.len() {
                m.reset();
                if let Some(e) = m.do_match(src, 0).map_err(runtime)? {
                    pos = if e == src { e + 1 } else { e };
                    let caps = m.captures(src, e, true).map_err(runtime)?;
                    return Ok(MultiValue::from_vec(values(lua, &caps)?));
                }
                src += 1;
            }
            Ok(MultiValue::new())
        })
    })
}

fn gsub(lua: &Lua, check: Check) -> mlua::Result<Function> {
    lua.create_function(
        move |lua, (s, p, repl, max): (Value, Value, Value, Option<i64>)| {
            let src = bytes(lua, s, 1, "gsub")?;
            let p = bytes(lua, p, 2, "gsub")?;
            let template = match &repl {
                Value::String(_) | Value::Integer(_) | Value::Number(_) => {
                    Some(bytes(lua, repl.clone(), 3, "gsub")?)
                }
                Value::Table(_) | Value::Function(_) => None,
                _ => {
                    return Err(mlua::Error::runtime(
                        "bad argument #3 to 'gsub' (string/function/table expected)",
                    ));
                }
            };
            let max = max.unwrap_or(src.len() as i64 + 1);
            let pat = pattern::effective(&p);
            let (anchor, pat) = match pat.first() {
                Some(b'^') => (true, &pat[1..]),
                _ => (false, pat),
            };
            let mut m = Matcher::new(&src, pat, checker(&check));
            let mut out: Vec<u8> = Vec::with_capacity(src.len());
            let (mut at, mut n) = (0usize, 0i64);
            while n < max {
                m.reset();
                let e = m.do_match(at, 0).map_err(runtime)?;
                if let Some(e) = e {
                    n += 1;
                    add_value(lua, &m, at, e, &repl, template.as_deref(), &mut out)?;
                }
                match e {
                    Some(e) if e > at => at = e,
                    _ if at < src.len() => {
                        out.push(src[at]);
                        at += 1;
                    }
                    _ => break,
                }
                if anchor {
                    break;
                }
            }
            out.extend_from_slice(&src[at..]);
            Ok((lua.create_string(&out)?, n))
        },
    )
}

/// Appends the replacement of the match `src[s..e]` (lstrlib's
/// `add_value`).
fn add_value<F: FnMut() -> Result<(), String>>(
    lua: &Lua,
    m: &Matcher<'_, F>,
    s: usize,
    e: usize,
    repl: &Value,
    template: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> mlua::Result<()> {
    let v = if let Some(t) = template {
        let mut i = 0;
        while i < t.len() {
            let c = t[i];
            i += 1;
            if c != b'%' {
                out.push(c);
                continue;
            }
            // 5.1 reads the terminating NUL after a final '%'.
            let d = t.get(i).copied().unwrap_or(0);
            i += 1;
            if !d.is_ascii_digit() {
                out.push(d);
            } else if d == b'0' {
                out.extend_from_slice(m.capture_whole(s, e));
            } else {
                match m.capture((d - b'1') as usize, s, e).map_err(runtime)? {
                    Capture::Str(b) => out.extend_from_slice(b),
                    Capture::Pos(p) => out.extend_from_slice(p.to_string().as_bytes()),
                }
            }
        }
        return Ok(());
    } else {
        match repl {
            Value::Table(t) => {
                let first = m.capture(0, s, e).map_err(runtime)?;
                t.get::<Value>(value(lua, &first)?)?
            }
            Value::Function(f) => {
                let caps = m.captures(s, e, true).map_err(runtime)?;
                f.call::<Value>(MultiValue::from_vec(values(lua, &caps)?))?
            }
            _ => Value::Nil,
        }
    };
    match v {
        Value::Nil | Value::Boolean(false) => out.extend_from_slice(m.capture_whole(s, e)),
        Value::String(_) | Value::Integer(_) | Value::Number(_) => {
            let st: Option<LuaString> = lua.coerce_string(v)?;
            if let Some(st) = st {
                out.extend_from_slice(&st.as_bytes());
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "invalid replacement value (a {})",
                other.type_name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::{LuaOptions, StdLib};

    /// `pack(pcall(f, …))` and `same(a, b)`: two calls agree when both
    /// failed, or both returned the same values.
    const COMPARE: &str = r#"
function pack(ok, ...) return {ok = ok, n = select('#', ...), ...} end
function same(a, b)
  if a.ok ~= b.ok then return false end
  if not a.ok then return true end
  if a.n ~= b.n then return false end
  for i = 1, a.n do if a[i] ~= b[i] then return false end end
  return true
end
"#;

    /// A state with Lua's string and table libraries, ours as `mine`, and
    /// [`COMPARE`].
    fn state() -> Lua {
        let lua = Lua::new_with(StdLib::STRING | StdLib::TABLE, LuaOptions::new()).unwrap();
        let mine = lua.create_table().unwrap();
        install(&lua, &mine, Rc::new(|| Ok(()))).unwrap();
        lua.globals().set("mine", mine).unwrap();
        lua.load(COMPARE).exec().unwrap();
        lua
    }

    /// Lua's own C functions against ours, on a corpus of subjects,
    /// patterns, start positions and replacements: the same results, or an
    /// error from both.
    #[test]
    fn the_same_results_as_lua_5_1() {
        let lua = state();
        let mismatches: Vec<mlua::LuaString> = lua
            .load(
                r#"
local subjects = {"hello world", "", "aaa", "key:123:value", "f(a(b)c)d", "a\0b\0c",
  "THE (quick) fox", "  trim me  ", "x = 42, y = -7", "abcabcabc", "a]b[c", "%d%%",
  "caf\195\169", "one two  three", "^caret$", "1.5e10"}
local patterns = {"o", "l+", "l*", "l-", "l?", "^h", "d$", "%a+", "%d+", "[%a_][%w_]*",
  "[^%s]+", "(%w+)", "()o()", "%b()", "%f[%w]%w+", "(h)(e)(l)", "(l)%1", ".-", "", "^",
  "$", "[a-", "%", "[]", "[^]]", "[%]]", "%z", "a.b", "x*", "(()", "%1", "(%d+)%.?(%d*)",
  "%s*(.-)%s*$", "^(%w+):(%d+):(%w+)$", "[%d%.]+", "%-?%d+", "([^,]+)", "a\0b", "%^",
  "(a)(b)(c)", "[a-c]+", "[c-a]", "%A+", "%u%l*", "%x+", "%p", "%c", ".", "(.)(.)%2%1",
  "%f[%a]", "%f[%A]", "((a)(b))", "b*", "[%w]-c", "(%a)%s", "^%s*$", "e?%d+"}
local inits = {nil, 1, 3, -2, 100, 0, -100}
local function show(r)
  if not r.ok then return "error " .. tostring(r[1]) end
  local t = {}
  for i = 1, r.n do t[#t + 1] = string.format("%q", tostring(r[i])) end
  return table.concat(t, ",")
end
local bad = {}
local function cmp(what, f, g, ...)
  local a, b = pack(pcall(f, ...)), pack(pcall(g, ...))
  if not same(a, b) then
    local args = {}
    for i = 1, select('#', ...) do args[#args + 1] = string.format("%q", tostring((select(i, ...)))) end
    bad[#bad + 1] = what .. "(" .. table.concat(args, ", ") .. "): lua " .. show(a) .. " / ours " .. show(b)
  end
end
local function collect(gm, s, p)
  local out = {}
  for a, b, c in gm(s, p) do
    out[#out + 1] = tostring(a) .. "|" .. tostring(b) .. "|" .. tostring(c)
    if #out > 100 then break end
  end
  return table.concat(out, ";")
end
local repls = {"<%0>", "%1-%1", "%%", "x%", "", {hello = "HI", a = false, ["1"] = 9},
  function(a, b) if a == "l" then return nil end return (a or "") .. "!" .. tostring(b) end,
  function() return {} end, 7}
for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    for i = 1, 7 do
      cmp("find", string.find, mine.find, s, p, inits[i])
      cmp("match", string.match, mine.match, s, p, inits[i])
    end
    cmp("find plain", string.find, mine.find, s, p, 1, true)
    cmp("gmatch", function(...) return collect(string.gmatch, ...) end,
      function(...) return collect(mine.gmatch, ...) end, s, p)
    for _, r in ipairs(repls) do
      cmp("gsub", string.gsub, mine.gsub, s, p, r)
      cmp("gsub 1", string.gsub, mine.gsub, s, p, r, 1)
    end
  end
end
cmp("find number", string.find, mine.find, 12345, 3)
cmp("gsub number", string.gsub, mine.gsub, 1.5, "%.", ",")
cmp("find nil", string.find, mine.find, nil, "x")
cmp("gsub bad repl", string.gsub, mine.gsub, "x", "x", true)
return bad
"#,
            )
            .eval()
            .unwrap();
        assert!(
            mismatches.is_empty(),
            "{} differences:\n{}",
            mismatches.len(),
            mismatches
                .iter()
                .take(40)
                .map(|m| m.to_string_lossy())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// Random short patterns over the special characters, on random
        /// subjects: the same results as Lua's C functions, never a panic.
        #[test]
        fn random_patterns_match_like_lua(
            p in proptest::collection::vec(proptest::sample::select(
                b"ab.%()[]^$*+-?dwsf1z\0".to_vec()), 0..8),
            s in proptest::collection::vec(proptest::sample::select(b"ab()[] 1\0".to_vec()), 0..10),
        ) {
            let lua = state();
            let g = lua.globals();
            g.set("s", lua.create_string(&s).unwrap()).unwrap();
            g.set("p", lua.create_string(&p).unwrap()).unwrap();
            let same: bool = lua.load(r#"
                local function gm(f) local t = {} for a, b in f(s, p) do t[#t + 1] = tostring(a) .. tostring(b) if #t > 20 then break end end return table.concat(t, ";") end
                return same(pack(pcall(string.find, s, p)), pack(pcall(mine.find, s, p)))
                  and same(pack(pcall(string.match, s, p, 2)), pack(pcall(mine.match, s, p, 2)))
                  and same(pack(pcall(string.gsub, s, p, "<%0>")), pack(pcall(mine.gsub, s, p, "<%0>")))
                  and same(pack(pcall(gm, string.gmatch)), pack(pcall(gm, mine.gmatch)))
            "#).eval().unwrap();
            proptest::prop_assert!(same, "s={:?} p={:?}", String::from_utf8_lossy(&s), String::from_utf8_lossy(&p));
        }
    }

    #[test]
    fn a_stop_request_reaches_a_backtracking_match() {
        let lua = Lua::new_with(StdLib::STRING, LuaOptions::new()).unwrap();
        let mine = lua.create_table().unwrap();
        let calls = Rc::new(std::cell::Cell::new(0u32));
        let c = calls.clone();
        install(
            &lua,
            &mine,
            Rc::new(move || {
                c.set(c.get() + 1);
                if c.get() > 100 {
                    Err("stopped by the test".into())
                } else {
                    Ok(())
                }
            }),
        )
        .unwrap();
        lua.globals().set("mine", mine).unwrap();
        let r: mlua::Result<Value> = lua
            .load("return mine.find(string.rep('a', 60), string.rep('a*', 20) .. 'b')")
            .eval();
        assert!(r.unwrap_err().to_string().contains("stopped by the test"));
    }
}
