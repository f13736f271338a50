//! Collects ICU4X's annotated output (`writeable::PartsWrite`) as ECMA-402 parts: a flat
//! list of (type, value) with the unannotated stretches in between as "literal".

use std::fmt;
use writeable::{Part, PartsWrite, Writeable};

/// A string being written, with the byte ranges ICU4X annotated.
#[derive(Default)]
struct Sink {
    out: String,
    spans: Vec<(usize, usize, Part)>,
}

impl fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

impl PartsWrite for Sink {
    type SubPartsWrite = Sink;
    fn with_part(
        &mut self,
        part: Part,
        mut f: impl FnMut(&mut Self::SubPartsWrite) -> fmt::Result,
    ) -> fmt::Result {
        let start = self.out.len();
        f(self)?;
        self.spans.push((start, self.out.len(), part));
        Ok(())
    }
}

/// `w`'s output as (ECMA-402 type, value) pairs; `map` names a part (`None`: not one of
/// ECMA-402's, e.g. ICU4X's wrapper around a whole date). The innermost named part wins, as
/// ECMA-402 wants: a decimal's integer part is split by its group separators.
pub fn collect(
    w: &impl Writeable,
    map: impl Fn(Part) -> Option<&'static str>,
) -> Vec<(String, String)> {
    let mut sink = Sink::default();
    // Writing into a String cannot fail.
    let _ = w.write_to_parts(&mut sink);
    let mut spans: Vec<(usize, usize, &'static str)> = sink
        .spans
        .into_iter()
        .filter_map(|(a, b, p)| map(p).map(|t| (a, b, t)))
        .collect();
    // Outer spans first (by start, then longest), so inner ones paint over them; a part is
    // recorded when it closes, so of two with the same range the outer one comes last.
    spans.reverse();
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let text = sink.out;
    let mut kind = vec!["literal"; text.len()];
    for (a, b, t) in spans {
        kind[a..b].fill(t);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut start = 0;
    for i in 1..=text.len() {
        if i == text.len() || (kind[i] != kind[start] && text.is_char_boundary(i)) {
            out.push((kind[start].to_string(), text[start..i].to_string()));
            start = i;
        }
    }
    out
}

/// Parts as the flat JS array the prelude reads: [type, value, type, value, ...].
pub fn flat(parts: Vec<(String, String)>) -> Vec<String> {
    parts.into_iter().flat_map(|(t, v)| [t, v]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;
    impl Writeable for Two {
        fn write_to_parts<W: PartsWrite + ?Sized>(&self, w: &mut W) -> fmt::Result {
            w.write_str("<")?;
            w.with_part(
                Part {
                    category: "t",
                    value: "a",
                },
                |w| fmt::Write::write_str(w, "12"),
            )?;
            w.write_str(", ")?;
            w.with_part(
                Part {
                    category: "t",
                    value: "b",
                },
                |w| {
                    w.with_part(
                        Part {
                            category: "t",
                            value: "a",
                        },
                        |w| fmt::Write::write_str(w, "3"),
                    )
                },
            )?;
            w.write_str(">")
        }
    }

    #[test]
    fn innermost_parts_and_literals() {
        let p = collect(&Two, |p| Some(p.value));
        let want = [
            ("literal", "<"),
            ("a", "12"),
            ("literal", ", "),
            ("a", "3"),
            ("literal", ">"),
        ];
        assert_eq!(
            p,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
    }
}
