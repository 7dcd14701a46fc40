//! The Prometheus text exposition format, version 0.0.4: a family's
//! `# HELP` and `# TYPE` lines, then its samples
//! (`name{label="value",…} number`).
//!
//! Hand-written: the format is a few lines of rules (escaping of help
//! texts and label values, number formatting) and a crate such as
//! `prometheus-client` would bring its own registry and metric types that
//! duplicate the counters this server already keeps. Tests check the
//! output against the grammar here and, in tests/metrics.rs, against the
//! reference Python parser.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes families into a text buffer.
#[derive(Default)]
pub struct Writer {
    out: String,
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A number as the format writes it (`+Inf`, `NaN`, integers without a
/// fraction).
pub fn number(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

impl Writer {
    /// Starts a family: its `HELP` (escaped: `\` and newline) and `TYPE`.
    pub fn family(&mut self, name: &str, ty: Type, help: &str) {
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let ty = match ty {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "\n# TYPE {name} {ty}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape_label(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        number(value, &mut self.out);
        self.out.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, ty: Type, help: &str, value: f64) {
        self.family(name, ty, help);
        self.sample(name, &[], value);
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut w = Writer::default();
        w.family("m_total", Type::Counter, "a \\ help\nline");
        w.sample("m_total", &[("cmd", "a\"b\\c\nd")], 3.0);
        w.sample("m_total", &[], 0.25);
        w.single("g", Type::Gauge, "g", f64::INFINITY);
        assert_eq!(
            w.finish(),
            "# HELP m_total a \\\\ help\\nline\n# TYPE m_total counter\n\
             m_total{cmd=\"a\\\"b\\\\c\\nd\"} 3\nm_total 0.25\n\
             # HELP g g\n# TYPE g gauge\ng +Inf\n"
        );
        let mut s = String::new();
        number(f64::NAN, &mut s);
        number(-1.5, &mut s);
        assert_eq!(s, "NaN-1.5");
    }
}
