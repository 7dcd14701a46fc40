//! The file-level import graph of `src/` has no cycle.
//!
//! Edges come from paths that name another file of the crate: `crate::…`
//! (in `use` declarations and in expressions) and `super::…`. A path is
//! resolved to the deepest module that is a file (`src/a/b.rs` or
//! `src/a/b/mod.rs`); `super` inside an inline module (`mod tests { … }`)
//! counts from that inline module. Comments and string literals are
//! ignored, and so are `#[cfg(test)] mod … { … }` blocks: a unit test may
//! reach any module to check a round trip (e.g. log → recovery) without
//! making the product code depend on it. Pure file reading: no build, no
//! sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`["store", "merkle"]`; empty for the crate root).
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a library file defines, or `None` for files of other
/// crates (`main.rs`, `bin/`).
fn module_of(rel: &Path) -> Option<ModPath> {
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if parts[0] == "bin" || parts == ["main.rs"] {
        return None;
    }
    let mut m: ModPath = parts.clone();
    let last = m.pop().unwrap();
    match last.as_str() {
        "lib.rs" if m.is_empty() => {}
        "mod.rs" => {}
        f => m.push(f.trim_end_matches(".rs").to_string()),
    }
    Some(m)
}

/// `src` with comments, string and char literals blanked out.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_before(b, i) {
            // Raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 3 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Sep,
    Open,
    Close,
    Comma,
    Semi,
    Other(char),
}

fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut t = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_alphanumeric() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            t.push(Tok::Ident(c[s..i].iter().collect()));
            continue;
        }
        match ch {
            ':' if c.get(i + 1) == Some(&':') => {
                t.push(Tok::Sep);
                i += 1;
            }
            '{' => t.push(Tok::Open),
            '}' => t.push(Tok::Close),
            ',' => t.push(Tok::Comma),
            ';' => t.push(Tok::Semi),
            c if c.is_whitespace() => {}
            c => t.push(Tok::Other(c)),
        }
        i += 1;
    }
    t
}

/// Every path (as segments) that starts with `crate` or `super`,
/// expanding `use` groups, each with the inline-module depth it was
/// written at.
fn paths(toks: &[Tok]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    // Inline modules: (name, brace depth at which it opened, test-only).
    let mut inline: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d, _)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    let test = inline.last().is_some_and(|m| m.2) || after_cfg_test(&toks[..i]);
                    inline.push((name.clone(), depth, test));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            // Not `impl Trait + use<'a>` (precise capturing).
            Tok::Ident(k) if k == "use" && toks.get(i + 1) != Some(&Tok::Other('<')) => {
                let end = toks[i..].iter().position(|t| *t == Tok::Semi).unwrap() + i;
                let here: Vec<String> = inline.iter().map(|(n, _, _)| n.clone()).collect();
                let mut p = Vec::new();
                use_tree(&toks[i + 1..end], &[], &mut p);
                let in_test = inline.last().is_some_and(|m| m.2);
                for path in p.into_iter().filter(|_| !in_test) {
                    if matches!(path.first().map(String::as_str), Some("crate" | "super")) {
                        found.push((path, here.clone()));
                    }
                }
                i = end + 1;
                continue;
            }
            Tok::Ident(k)
                if (k == "crate" || k == "super") && toks.get(i + 1) == Some(&Tok::Sep) =>
            {
                let prev_sep = i > 0 && toks[i - 1] == Tok::Sep;
                let in_test = inline.last().is_some_and(|m| m.2);
                if !prev_sep && !in_test {
                    let mut path = vec![k.clone()];
                    let mut j = i + 1;
                    while toks.get(j) == Some(&Tok::Sep) {
                        match toks.get(j + 1) {
                            Some(Tok::Ident(s)) => path.push(s.clone()),
                            _ => break,
                        }
                        j += 2;
                    }
                    let here = inline.iter().map(|(n, _, _)| n.clone()).collect();
                    found.push((path, here));
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// True if `before` ends with `#[cfg(test)]` (possibly after `pub`).
fn after_cfg_test(before: &[Tok]) -> bool {
    let id = |s: &str| Tok::Ident(s.to_string());
    let attr = [
        Tok::Other('#'),
        Tok::Other('['),
        id("cfg"),
        Tok::Other('('),
        id("test"),
        Tok::Other(')'),
        Tok::Other(']'),
    ];
    let before = match before.last() {
        Some(Tok::Ident(p)) if p == "pub" => &before[..before.len() - 1],
        _ => before,
    };
    before.ends_with(&attr)
}

/// Expands a `use` tree into full paths.
fn use_tree(toks: &[Tok], prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(s) if s == "as" => {
                out.push(path.clone());
                return;
            }
            Tok::Ident(s) => path.push(s.clone()),
            Tok::Other('*') => {}
            Tok::Sep => {}
            Tok::Open => {
                // Split the group at top-level commas.
                let mut level = 0;
                let mut start = i + 1;
                for j in i + 1..toks.len() {
                    match toks[j] {
                        Tok::Open => level += 1,
                        Tok::Close if level == 0 => {
                            use_tree(&toks[start..j], &path, out);
                            return;
                        }
                        Tok::Close => level -= 1,
                        Tok::Comma if level == 0 => {
                            use_tree(&toks[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            _ => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() || !path.is_empty() {
        out.push(path);
    }
}

/// The file a path names, given the file's module and the inline modules
/// the path was written in.
fn resolve(
    path: &[String],
    file_mod: &ModPath,
    inline: &[String],
    files: &BTreeSet<ModPath>,
) -> Option<ModPath> {
    let mut base: Vec<String> = file_mod.iter().chain(inline).cloned().collect();
    let mut rest = path;
    if rest[0] == "crate" {
        base.clear();
        rest = &rest[1..];
    } else {
        while rest.first().map(String::as_str) == Some("super") {
            base.pop()?;
            rest = &rest[1..];
        }
    }
    let mut full = base;
    full.extend(rest.iter().filter(|s| *s != "self").cloned());
    // The deepest prefix that is a file.
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| files.contains(m))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    rust_files(&src, &mut all);
    let mods: Vec<(PathBuf, ModPath)> = all
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_path_buf();
            module_of(&rel).map(|m| (rel, m))
        })
        .collect();
    let files: BTreeSet<ModPath> = mods.iter().map(|(_, m)| m.clone()).collect();
    let name = |m: &ModPath| {
        mods.iter()
            .find(|(_, x)| x == m)
            .unwrap()
            .0
            .display()
            .to_string()
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, m) in &mods {
        let text = std::fs::read_to_string(src.join(rel)).unwrap();
        let from = rel.display().to_string();
        let entry = g.entry(from.clone()).or_default();
        for (path, inline) in paths(&tokens(&strip(&text))) {
            if let Some(to) = resolve(&path, m, &inline, &files) {
                let to = name(&to);
                if to != from {
                    entry.insert(to);
                }
            }
        }
    }
    g
}

/// A cycle of `g`, if any (depth-first search).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_string(), Mark::Active);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.to_string(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in g.keys() {
        if mark.get(n).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(n, g, &mut mark, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn src_has_no_import_cycle() {
    let g = graph();
    assert!(g.len() > 20, "too few files found: {:?}", g.keys());
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle between files of src/:\n  {}",
            cycle.join("\n  -> ")
        );
    }
}

#[test]
fn the_graph_sees_every_kind_of_path() {
    let src = "use crate::a::{b::C, d};\nuse super::e;\nfn f() { crate::g::h(); }\n\
               mod inner { use super::*; use super::super::k; }\n// crate::comment\n\
               #[cfg(test)]\nmod tests { use crate::only::in_tests; }\n\
               const S: &str = \"crate::string\";";
    let found: Vec<_> = paths(&tokens(&strip(src)));
    let as_text: Vec<String> = found
        .iter()
        .map(|(p, m)| format!("{}@{}", p.join("::"), m.join("::")))
        .collect();
    assert_eq!(
        as_text,
        [
            "crate::a::b::C@",
            "crate::a::d@",
            "super::e@",
            "crate::g::h@",
            "super@inner",
            "super::super::k@inner",
        ]
    );
    let files: BTreeSet<ModPath> = [vec![], vec!["a".to_string()], vec!["x".to_string()]]
        .into_iter()
        .collect();
    let x = vec!["x".to_string()];
    let p = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(
        resolve(&p("crate::a::b::C"), &x, &[], &files),
        Some(vec!["a".into()])
    );
    assert_eq!(
        resolve(&p("super::a"), &x, &[], &files),
        Some(vec!["a".into()])
    );
    assert_eq!(
        resolve(&p("super"), &x, &["tests".into()], &files),
        Some(x.clone())
    );
    let mut cyclic = BTreeMap::new();
    cyclic.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    cyclic.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&cyclic).is_some());
}
