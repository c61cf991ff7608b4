//! Mutations: structure-aware ones on JSON values (replace, delete, insert, retype, splice a subtree from another
//! seed) and byte-level ones on encoded bodies (flip, cut, repeat, insert syntax tokens), plus random values
//! built from the corpus' vocabulary.

use serde_json::{Map, Number, Value};

use crate::corpus::Corpus;
use crate::rng::Rng;

/// Numbers at the edges of the integer and float types the decoders read into.
const INTERESTING_NUMBERS: &[i128] = &[
    0,
    -1,
    1,
    2,
    255,
    256,
    65535,
    65536,
    2_147_483_647,
    2_147_483_648,
    -2_147_483_648,
    -2_147_483_649,
    4_294_967_296,
    9_007_199_254_740_993,
    i64::MAX as i128,
    i64::MIN as i128,
    u64::MAX as i128,
];

/// Tokens of JSON and YAML syntax, inserted by byte mutations.
const SYNTAX_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\u",
    "\\ud800",
    "null",
    "true",
    "1e999",
    "-0",
    "-",
    "\n",
    "  ",
    ": ",
    "- ",
    "&a ",
    "*a",
    "!!binary ",
    "!!int ",
    "---\n",
    "? ",
    "|\n",
    ">-\n",
    "~",
    "<<: *a",
    "%YAML 1.2\n",
    "\t",
    "#",
    "'",
    "{}",
    "[]",
    "\"\":",
    "0x",
    ".inf",
    ".nan",
    "\u{feff}",
    "\u{0}",
];

/// A random scalar: an interesting number or string, or one from the vocabulary.
pub fn scalar(rng: &mut Rng, corpus: &Corpus) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(1, 2)),
        2 => {
            let n = *rng.pick(INTERESTING_NUMBERS);
            i64::try_from(n)
                .map(Value::from)
                .or_else(|_| u64::try_from(n).map(Value::from))
                .unwrap_or(Value::Null)
        }
        3 => Number::from_f64(*rng.pick(&[0.5, -1.5, 1e308, -1e308, 1e-320, 3.999_999_999, 2.5e9]))
            .map_or(Value::Null, Value::Number),
        4 => Value::from(rng.next_u64() as i64 % 100_000),
        5 => {
            let s = rng.pick(&corpus.strings).clone();
            Value::String(match rng.below(4) {
                0 => s.repeat(1 + rng.below(70)),
                _ => s,
            })
        }
        _ => Value::String(rng.pick(&corpus.strings).clone()),
    }
}

/// A random value of at most `depth` levels, with keys from the vocabulary.
pub fn value(rng: &mut Rng, corpus: &Corpus, depth: usize) -> Value {
    if depth == 0 || rng.chance(1, 2) {
        return scalar(rng, corpus);
    }
    if rng.chance(1, 2) {
        Value::Array(
            (0..rng.below(4))
                .map(|_| value(rng, corpus, depth - 1))
                .collect(),
        )
    } else {
        let mut m = Map::new();
        for _ in 0..rng.below(5) {
            m.insert(
                rng.pick(&corpus.keys).clone(),
                value(rng, corpus, depth - 1),
            );
        }
        Value::Object(m)
    }
}

/// Applies 1 to 4 structure-aware mutations to `v`.
pub fn mutate_value(rng: &mut Rng, corpus: &Corpus, v: &mut Value) {
    for _ in 0..1 + rng.below(4) {
        let target = random_node(rng, v);
        mutate_node(rng, corpus, target);
    }
}

/// A node of `v` reached by a random walk from the root.
fn random_node<'a>(rng: &mut Rng, v: &'a mut Value) -> &'a mut Value {
    let mut cur = v;
    loop {
        let len = match &cur {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if len == 0 || rng.chance(1, 4) {
            return cur;
        }
        let i = rng.below(len);
        cur = match cur {
            Value::Object(m) => m.values_mut().nth(i).expect("index below len"),
            Value::Array(a) => &mut a[i],
            _ => unreachable!("only containers have children"),
        };
    }
}

fn mutate_node(rng: &mut Rng, corpus: &Corpus, node: &mut Value) {
    match rng.below(10) {
        0 => *node = scalar(rng, corpus),
        1 => *node = value(rng, corpus, 3),
        2 => {
            // Splice a subtree of another seed.
            let mut seed = rng.pick(&corpus.objects).clone();
            *node = random_node(rng, &mut seed).clone();
        }
        3 => match node {
            Value::Object(m) if !m.is_empty() => {
                let k = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .expect("non-empty");
                m.remove(&k);
            }
            Value::Array(a) if !a.is_empty() => {
                a.remove(rng.below(a.len()));
            }
            _ => *node = Value::Null,
        },
        4 => match node {
            Value::Object(m) => {
                m.insert(rng.pick(&corpus.keys).clone(), value(rng, corpus, 2));
            }
            Value::Array(a) => {
                let item = a.get(rng.below(a.len())).cloned().unwrap_or(Value::Null);
                a.push(item);
            }
            _ => *node = Value::Array(vec![node.take()]),
        },
        5 => {
            // Change the type, keeping the content where there is one.
            *node = match node.take() {
                Value::String(s) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::Array(vec![Value::String(s)])),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Array(a) => a.into_iter().next().unwrap_or(Value::Object(Map::new())),
                Value::Object(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Null => Value::Object(Map::new()),
            }
        }
        6 => {
            if let Value::String(s) = node {
                let other = rng.pick(&corpus.strings);
                match rng.below(3) {
                    0 => s.push_str(other),
                    1 => s.insert_str(floor_char(s, rng.below(s.len() + 1)), other),
                    _ => s.truncate(floor_char(s, rng.below(s.len() + 1))),
                }
            } else {
                *node = Value::String(rng.pick(&corpus.strings).clone());
            }
        }
        7 => {
            if let Value::Object(m) = node {
                let dir = rng.pick(crate::corpus::DIRECTIVE_KEYS).to_string();
                let v = match rng.below(3) {
                    0 => Value::String(
                        rng.pick(&["replace", "delete", "merge", "retainKeys", "x"])
                            .to_string(),
                    ),
                    1 => Value::Array(m.keys().take(3).cloned().map(Value::String).collect()),
                    _ => value(rng, corpus, 2),
                };
                m.insert(dir, v);
            }
        }
        8 => {
            // Nest deeper.
            let inner = node.take();
            *node = if rng.chance(1, 2) {
                Value::Array(vec![inner])
            } else {
                let mut m = Map::new();
                m.insert(rng.pick(&corpus.keys).clone(), inner);
                Value::Object(m)
            };
        }
        _ => {
            if let Value::Number(_) = node {
                *node = scalar(rng, corpus);
            } else {
                let n = *rng.pick(INTERESTING_NUMBERS);
                *node = i64::try_from(n).map_or(Value::Null, Value::from);
            }
        }
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Applies 1 to 4 byte-level mutations to `bytes`.
pub fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                bytes[i] = *rng.pick(&[0, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'0', b'-', b':']);
            }
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                bytes.drain(start..end);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let chunk = bytes[start..end].to_vec();
                let at = rng.below(len + 1);
                bytes.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(len + 1);
                let token = rng.pick(SYNTAX_TOKENS).as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            5 if len > 0 => bytes.truncate(rng.below(len)),
            6 => {
                let at = rng.below(len + 1);
                let random: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                bytes.splice(at..at, random);
            }
            7 if len > 0 => {
                // A protobuf-style varint or length: make it overlong or huge.
                let i = rng.below(len);
                bytes[i] |= 0x80;
            }
            _ => {
                let at = rng.below(len + 1);
                let n = *rng.pick(INTERESTING_NUMBERS);
                bytes.splice(at..at, n.to_string().into_bytes());
            }
        }
    }
}
