//! TextDecoder's native side: every encoding of the WHATWG Encoding Standard, decoded by
//! `encoding_rs` (the crate Firefox and deno use). One [`TextDecoderState`] per JS
//! TextDecoder holds the streaming `encoding_rs::Decoder`, so `decode(chunk, {stream:
//! true})` carries a split character or a pending BOM over to the next call.

use super::natives::with_view_bytes;
use encoding_rs::{CoderResult, Decoder, DecoderResult, Encoding};
use rquickjs::function::Opt;
use rquickjs::{Array, Ctx, Exception, Function, Object, Result, Value};
use std::cell::RefCell;

/// The encoding a TextDecoder label names ("get an encoding": ASCII whitespace trimmed,
/// case-insensitive), `None` for an unknown label and for the labels of the
/// `replacement` encoding, which the TextDecoder constructor refuses.
pub fn decoder_encoding(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label_no_replacement(label.as_bytes())
}

/// The name TextDecoder's `encoding` getter returns: the spec's name in lower case.
pub fn encoding_name(encoding: &'static Encoding) -> String {
    encoding.name().to_ascii_lowercase()
}

/// The fatal flag's error: the data is malformed in the decoder's encoding.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// One TextDecoder's decoder: encoding, flags and the streaming state between calls.
pub struct TextDecoderState {
    encoding: &'static Encoding,
    fatal: bool,
    ignore_bom: bool,
    /// `None` before the first call of a stream (and after a flush or an error).
    decoder: Option<Decoder>,
}

impl TextDecoderState {
    /// A decoder for `encoding` with TextDecoder's `fatal` and `ignoreBOM` options.
    pub fn new(encoding: &'static Encoding, fatal: bool, ignore_bom: bool) -> Self {
        TextDecoderState {
            encoding,
            fatal,
            ignore_bom,
            decoder: None,
        }
    }

    /// TextDecoder's `decode(bytes, {stream})`: with `stream` an unfinished sequence at
    /// the end is kept for the next call; without it the stream ends here (an unfinished
    /// sequence is malformed: U+FFFD, or [`Malformed`] when fatal) and the next call
    /// starts a new one. A fatal error also ends the stream.
    pub fn decode(&mut self, bytes: &[u8], stream: bool) -> std::result::Result<String, Malformed> {
        let (encoding, ignore_bom) = (self.encoding, self.ignore_bom);
        // The spec's "BOM seen" flag: only the encoding's own BOM, and only at the start
        // of a stream, is dropped (never with ignoreBOM); encoding_rs's BOM removal does
        // exactly that, also for a BOM split over chunks.
        let decoder = self.decoder.get_or_insert_with(|| {
            if ignore_bom {
                encoding.new_decoder_without_bom_handling()
            } else {
                encoding.new_decoder_with_bom_removal()
            }
        });
        let last = !stream;
        let result = if self.fatal {
            decode_fatal(decoder, bytes, last)
        } else {
            Ok(decode_replacing(decoder, bytes, last))
        };
        if last || result.is_err() {
            self.decoder = None;
        }
        result
    }
}

/// Makes room for the UTF-8 of `remaining` more input bytes. Not the worst case up front
/// (three output bytes per input byte for most encodings): as many bytes as are left, which
/// fits UTF-8 and ASCII-heavy input exactly; when the output outgrows it the decoder says
/// OutputFull and the string grows again (amortised doubling).
fn reserve(dst: &mut String, remaining: usize) {
    // At least one code point's room, as encoding_rs requires.
    dst.reserve(remaining.saturating_add(16));
}

fn decode_replacing(decoder: &mut Decoder, mut src: &[u8], last: bool) -> String {
    let mut dst = String::new();
    loop {
        reserve(&mut dst, src.len());
        let (result, read, _replaced) = decoder.decode_to_string(src, &mut dst, last);
        src = &src[read..];
        if let CoderResult::InputEmpty = result {
            return dst;
        }
    }
}

fn decode_fatal(
    decoder: &mut Decoder,
    mut src: &[u8],
    last: bool,
) -> std::result::Result<String, Malformed> {
    let mut dst = String::new();
    loop {
        reserve(&mut dst, src.len());
        let (result, read) = decoder.decode_to_string_without_replacement(src, &mut dst, last);
        src = &src[read..];
        match result {
            DecoderResult::InputEmpty => return Ok(dst),
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(..) => return Err(Malformed),
        }
    }
}

/// `__native.textDecoder(label, fatal, ignoreBOM)`: `[encoding name, decode(view,
/// stream)]` for a label of the Encoding Standard, `null` for any other label. The
/// decode function owns the decoder, so it lives as long as its TextDecoder.
pub fn js_text_decoder<'js>(
    ctx: Ctx<'js>,
    label: rquickjs::String<'js>,
    fatal: Opt<bool>,
    ignore_bom: Opt<bool>,
) -> Result<Value<'js>> {
    // A label with a lone surrogate matches no encoding, whatever its conversion does.
    let Some(encoding) = label.to_string().ok().as_deref().and_then(decoder_encoding) else {
        return Ok(Value::new_null(ctx));
    };
    let state = RefCell::new(TextDecoderState::new(
        encoding,
        fatal.0.unwrap_or(false),
        ignore_bom.0.unwrap_or(false),
    ));
    let decode = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, view: Object<'js>, stream: Opt<bool>| -> Result<String> {
            let stream = stream.0.unwrap_or(false);
            // No JS runs while the bytes are borrowed, so the decoder cannot re-enter.
            with_view_bytes(&view, |bytes| state.borrow_mut().decode(bytes, stream))?
                .map_err(|Malformed| Exception::throw_type(&ctx, "The encoded data is not valid."))
        },
    )?;
    let out = Array::new(ctx.clone())?;
    out.set(0, encoding_name(encoding))?;
    out.set(1, decode)?;
    Ok(out.into_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(label: &str, fatal: bool, ignore_bom: bool) -> TextDecoderState {
        TextDecoderState::new(decoder_encoding(label).unwrap(), fatal, ignore_bom)
    }

    #[test]
    fn labels_and_names() {
        let name = |l: &str| decoder_encoding(l).map(encoding_name);
        assert_eq!(name(" UTF8\n").as_deref(), Some("utf-8"));
        assert_eq!(name("latin1").as_deref(), Some("windows-1252"));
        assert_eq!(name("utf-16").as_deref(), Some("utf-16le"));
        assert_eq!(name("sjis").as_deref(), Some("shift_jis"));
        assert_eq!(name("x-user-defined").as_deref(), Some("x-user-defined"));
        // replacement's labels are refused by TextDecoder, like unknown ones.
        assert_eq!(name("iso-2022-kr"), None);
        assert_eq!(name("replacement"), None);
        assert_eq!(name("utf-7"), None);
    }

    #[test]
    fn boms_fatal_and_streaming() {
        let mut d = decoder("utf-16le", false, false);
        assert_eq!(d.decode(b"\xff\xfeA\x00", false).unwrap(), "A");
        let mut d = decoder("utf-16le", false, true);
        assert_eq!(d.decode(b"\xff\xfeA\x00", false).unwrap(), "\u{feff}A");
        // Another encoding's BOM is content.
        let mut d = decoder("utf-16be", false, false);
        assert_eq!(d.decode(b"\xff\xfe", false).unwrap(), "\u{fffe}");

        let mut d = decoder("utf-16le", true, false);
        assert_eq!(d.decode(b"\x00", true).unwrap(), "");
        assert_eq!(d.decode(b"\x00", false).unwrap(), "\0");
        assert_eq!(d.decode(b"\x00", false), Err(Malformed));
        assert_eq!(
            d.decode(b"\x00\x00", false).unwrap(),
            "\0",
            "reset after an error"
        );

        let mut d = decoder("shift_jis", false, false);
        assert_eq!(d.decode(b"\x82", true).unwrap(), "");
        assert_eq!(d.decode(b"\xa0", true).unwrap(), "\u{3042}");
        assert_eq!(d.decode(b"\x82", false).unwrap(), "\u{fffd}");
        let mut d = decoder("windows-1252", false, false);
        assert_eq!(d.decode(b"\x80\xe9", false).unwrap(), "\u{20ac}\u{e9}");
        // Output three times the input: the string grows past the first reservation.
        let long = vec![0x80u8; 10_000];
        let mut d = decoder("windows-1252", true, false);
        assert_eq!(d.decode(&long, false).unwrap(), "\u{20ac}".repeat(10_000));
        let mut d = decoder("utf-8", false, false);
        assert_eq!(d.decode(&long, false).unwrap(), "\u{fffd}".repeat(10_000));
    }
}
