//! The `bit` library of Redis's Lua (LuaBitOp 1.0's functions): 32-bit
//! operations on Lua numbers.
//!
//! Every argument is first normalised as LuaBitOp's `tobit` does: rounded
//! to the nearest integer (ties to even, as the FPU's default rounding),
//! taken modulo 2^32, and read as a signed 32-bit integer; every result is
//! such an integer. Shift counts use their low five bits. Nothing here can
//! loop or allocate more than the `tohex` string (at most 8 digits).

use mlua::{Lua, Table, Variadic};

/// A two-operand operation of the library.
type Op = fn(i32, i32) -> i32;
/// A shift or rotation by a count of 0..=31.
type Shift = fn(i32, u32) -> i32;

/// LuaBitOp's normalisation of a Lua number to a signed 32-bit integer.
fn tobit(x: f64) -> i32 {
    if !x.is_finite() {
        return 0;
    }
    x.round_ties_even().rem_euclid(4_294_967_296.0) as u32 as i32
}

/// `bit.tohex(x [, n])`: the low `|n|` hex digits of `x` (default 8;
/// a negative `n` gives upper case).
fn tohex(x: f64, n: Option<f64>) -> String {
    let n = n.map_or(8, tobit);
    let upper = n < 0;
    let digits = n.unsigned_abs().min(8) as usize;
    let v = tobit(x) as u32;
    let s = if upper {
        format!("{v:08X}")
    } else {
        format!("{v:08x}")
    };
    s[8 - digits..].to_string()
}

/// A left-folded operation over one or more arguments (`band`, `bor`,
/// `bxor`).
fn fold(args: &Variadic<f64>, f: Op) -> mlua::Result<i32> {
    let mut it = args.iter();
    let first = it
        .next()
        .ok_or_else(|| mlua::Error::runtime("bad argument #1 (number expected, got no value)"))?;
    Ok(it.fold(tobit(*first), |acc, x| f(acc, tobit(*x))))
}

/// Builds the `bit` table.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", lua.create_function(|_, x: f64| Ok(tobit(x)))?)?;
    t.raw_set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| Ok(tohex(x, n)))?,
    )?;
    t.raw_set("bnot", lua.create_function(|_, x: f64| Ok(!tobit(x)))?)?;
    t.raw_set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(tobit(x).swap_bytes()))?,
    )?;
    let folds: [(&str, Op); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, f) in folds {
        t.raw_set(
            name,
            lua.create_function(move |_, args: Variadic<f64>| fold(&args, f))?,
        )?;
    }
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |x, n| ((x as u32) << n) as i32),
        ("rshift", |x, n| ((x as u32) >> n) as i32),
        ("arshift", |x, n| x >> n),
        ("rol", |x, n| (x as u32).rotate_left(n) as i32),
        ("ror", |x, n| (x as u32).rotate_right(n) as i32),
    ];
    for (name, f) in shifts {
        t.raw_set(
            name,
            lua.create_function(move |_, (x, n): (f64, f64)| {
                Ok(f(tobit(x), tobit(n) as u32 & 31))
            })?,
        )?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_luabitop() {
        assert_eq!(tobit(1.0), 1);
        assert_eq!(tobit(4_294_967_295.0), -1);
        assert_eq!(tobit(4_294_967_296.0), 0);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(2_147_483_648.0), i32::MIN);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(3.5), 4);
        assert_eq!(tobit(f64::NAN), 0);
        assert_eq!(tohex(255.0, None), "000000ff");
        assert_eq!(tohex(-1.0, Some(-4.0)), "FFFF");
        assert_eq!(tohex(0x1234_5678 as f64, Some(2.0)), "78");
    }

    #[test]
    fn operations_from_lua() {
        let lua = Lua::new();
        lua.globals().set("bit", table(&lua).unwrap()).unwrap();
        let check = |expr: &str, want: i64| {
            let got: i64 = lua.load(format!("return {expr}")).eval().unwrap();
            assert_eq!(got, want, "{expr}");
        };
        check("bit.band(1)", 1);
        check("bit.bxor(1, 2)", 3);
        check("bit.bor(1, 2, 4, 8, 16, 32, 64, 128)", 255);
        check("bit.bnot(0)", -1);
        check("bit.lshift(1, 31)", i32::MIN as i64);
        check("bit.lshift(1, 33)", 2);
        check("bit.rshift(-1, 28)", 15);
        check("bit.arshift(-256, 4)", -16);
        check("bit.rol(0x80000001, 1)", 3);
        check("bit.ror(3, 1)", i32::MIN as i64 + 1);
        check("bit.bswap(0x12345678)", 0x7856_3412);
        let hex: String = lua.load("return bit.tohex(-1)").eval().unwrap();
        assert_eq!(hex, "ffffffff");
        assert!(lua.load("return bit.band()").eval::<i64>().is_err());
    }
}
