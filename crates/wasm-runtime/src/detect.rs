//! What some bytes are, read before compiling: WAT or binary, core module or
//! component, and whether a component exports a wasi-http handler (which
//! decides the engine that compiles it).

use wasmparser::{Chunk, Parser, Payload};

use crate::error::RuntimeError;

/// The prefix of every WASI 0.2.x `wasi:http/incoming-handler` export name.
pub(crate) const HTTP_HANDLER_0_2: &str = "wasi:http/incoming-handler@0.2.";

/// Which layer of the WebAssembly binary format some bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Layer {
    Module,
    Component,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Returns the bytes as a wasm binary, translating WebAssembly text.
pub(crate) fn to_binary(wasm: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, RuntimeError> {
    if wasm.starts_with(WASM_MAGIC) {
        return Ok(wasm.into());
    }
    if wasm.is_empty() {
        return Err(RuntimeError::InvalidWasm("empty input".to_owned()));
    }
    if std::str::from_utf8(wasm).is_err() {
        return Err(RuntimeError::InvalidWasm(
            "not a WebAssembly binary (no \\0asm magic) nor WebAssembly text".to_owned(),
        ));
    }
    wat::parse_bytes(wasm).map_err(|e| {
        RuntimeError::InvalidWasm(format!(
            "not a WebAssembly binary (no \\0asm magic) and not valid WebAssembly text: {e}"
        ))
    })
}

/// Reads the binary header: magic, then a 16-bit version and a 16-bit layer
/// (0 for core modules, 1 for components).
pub(crate) fn binary_layer(binary: &[u8]) -> Result<Layer, RuntimeError> {
    let header = binary.get(..8).ok_or_else(|| {
        RuntimeError::InvalidWasm("truncated WebAssembly header (fewer than 8 bytes)".to_owned())
    })?;
    match [header[6], header[7]] {
        [0, 0] => Ok(Layer::Module),
        [1, 0] => Ok(Layer::Component),
        layer => Err(RuntimeError::InvalidWasm(format!(
            "unknown WebAssembly binary layer {}",
            u16::from_le_bytes(layer)
        ))),
    }
}

/// Whether a component binary exports `wasi:http/incoming-handler@0.2.x`
/// at its top level. Only the outer component's sections are read: nested
/// modules and components are skipped over, not parsed. Bytes that cannot
/// be parsed answer `false` (compiling them then reports the error).
pub(crate) fn exports_http_handler(binary: &[u8]) -> bool {
    let mut parser = Parser::new(0);
    let mut offset = 0;
    while let Some(rest) = binary.get(offset..) {
        let (consumed, payload) = match parser.parse(rest, true) {
            Ok(Chunk::Parsed { consumed, payload }) => (consumed, payload),
            Ok(Chunk::NeedMoreData(_)) | Err(_) => return false,
        };
        offset += consumed;
        match payload {
            Payload::ComponentExportSection(exports) => {
                let found = exports
                    .into_iter()
                    .filter_map(Result::ok)
                    .any(|export| export.name.name.starts_with(HTTP_HANDLER_0_2));
                if found {
                    return true;
                }
            }
            // The parent parser has already counted the nested bytes as
            // read; continue after them.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => offset = unchecked_range.end,
            Payload::End(_) => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn header_layers() {
        let module = wat::parse_str("(module)").expect("valid wat");
        let component = wat::parse_str("(component)").expect("valid wat");
        assert_eq!(binary_layer(&module).ok(), Some(Layer::Module));
        assert_eq!(binary_layer(&component).ok(), Some(Layer::Component));
        assert!(matches!(
            binary_layer(b"\0asm\x01\0"),
            Err(RuntimeError::InvalidWasm(_))
        ));
        assert!(matches!(
            binary_layer(b"\0asm\x01\0\x07\0"),
            Err(RuntimeError::InvalidWasm(_))
        ));
    }

    #[test]
    fn text_is_translated_and_junk_rejected() {
        assert!(to_binary(b"(module)").is_ok_and(|b| b.starts_with(WASM_MAGIC)));
        for junk in [&b""[..], b"\xff\xfe\x00garbage", b"hello world"] {
            assert!(
                matches!(to_binary(junk), Err(RuntimeError::InvalidWasm(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn http_handler_export_found_only_at_top_level() {
        let simple = wat::parse_str(
            r#"(component
                (core module $m)
                (component $c)
                (instance $i (instantiate $c))
                (export "wasi:http/incoming-handler@0.2.3" (instance $i)))"#,
        )
        .expect("valid wat");
        assert!(exports_http_handler(&simple));

        // The same export inside a nested component does not count.
        let nested = wat::parse_str(
            r#"(component
                (component $outer
                    (component $c)
                    (instance $i (instantiate $c))
                    (export "wasi:http/incoming-handler@0.2.3" (instance $i)))
                (core module $m))"#,
        )
        .expect("valid wat");
        assert!(!exports_http_handler(&nested));

        let run = wat::parse_str(
            r#"(component
                (component $c)
                (instance $i (instantiate $c))
                (export "wasi:cli/run@0.2.3" (instance $i)))"#,
        )
        .expect("valid wat");
        assert!(!exports_http_handler(&run));
        assert!(!exports_http_handler(b"\0asm\x0d\0\x01\0\x07\x05"));
        assert!(!exports_http_handler(b""));
    }
}
