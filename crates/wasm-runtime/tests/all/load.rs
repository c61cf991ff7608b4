//! What `Runtime::load` accepts and rejects.

use herd_wasm_runtime::RuntimeError;

use crate::runtime;

#[test]
fn bad_bytes_are_invalid_wasm() {
    let runtime = runtime();
    let cases: &[(&str, &[u8])] = &[
        ("empty", b""),
        ("binary junk", b"\xff\x00\x13\x37garbage"),
        ("text junk", b"this is not wasm"),
        ("truncated header", b"\0asm\x01\0"),
        ("unknown layer", b"\0asm\x01\0\x07\0"),
        ("truncated module", b"\0asm\x01\0\0\0\x01\x05\x01"),
        ("truncated component", b"\0asm\x0d\0\x01\0\x07"),
        ("invalid module", b"(module (func (result i32)))"),
    ];
    for (what, bytes) in cases {
        match runtime.load(bytes) {
            Err(RuntimeError::InvalidWasm(message)) => assert!(!message.is_empty(), "{what}"),
            Err(other) => panic!("{what}: expected InvalidWasm, got {other:?}"),
            Ok(workload) => panic!("{what}: loaded as {:?}", workload.kind()),
        }
    }
}

#[test]
fn a_module_without_start_is_invalid() {
    let runtime = runtime();
    for wat in [
        "(module)",
        r#"(module (func (export "main")))"#,
        r#"(module (func (export "_start") (param i32)))"#,
        r#"(module (memory (export "_start") 1))"#,
    ] {
        match runtime.load(wat.as_bytes()) {
            Err(RuntimeError::InvalidWasm(message)) => {
                assert!(message.contains("_start"), "{wat}: {message}")
            }
            other => panic!(
                "{wat}: expected InvalidWasm, got {:?}",
                other.map(|w| w.kind())
            ),
        }
    }
}

#[test]
fn a_component_without_a_known_export_is_invalid() {
    let runtime = runtime();
    let wat = r#"
        (component
          (core module $m (func (export "f") (result i32) (i32.const 0)))
          (core instance $i (instantiate $m))
          (func $f (result u32) (canon lift (core func $i "f")))
          (instance $iface (export "f" (func $f)))
          (export "example:demo/thing@1.0.0" (instance $iface)))
    "#;
    match runtime.load(wat.as_bytes()) {
        Err(RuntimeError::InvalidWasm(message)) => {
            assert!(message.contains("example:demo/thing@1.0.0"), "{message}")
        }
        other => panic!("expected InvalidWasm, got {:?}", other.map(|w| w.kind())),
    }
    assert!(matches!(
        runtime.load(b"(component)"),
        Err(RuntimeError::InvalidWasm(_))
    ));
}

#[test]
fn an_import_the_host_lacks_fails_to_instantiate() {
    let runtime = runtime();
    let wat = r#"
        (module
          (import "env" "not_provided" (func))
          (func (export "_start")))
    "#;
    match runtime.load(wat.as_bytes()) {
        Err(RuntimeError::Instantiate(message)) => {
            assert!(message.contains("not_provided"), "{message}")
        }
        other => panic!("expected Instantiate, got {:?}", other.map(|w| w.kind())),
    }
}
