//! The field path (`policies[1].rules[0].to[0].operation.paths`) of a position in a JSON text:
//! serde_json reports where an error happened (line, column); walking the text up to there with
//! a stack of open objects and arrays names the field. This replaces path-tracking deserializer
//! wrappers, which cost far more `.wasm` than this scanner.

enum Frame {
    /// An object; the key last read in it.
    Object(Option<String>),
    /// An array; the index of the element being read.
    Array(usize),
}

/// The byte offset of a 1-based line and column.
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut current = 1;
    let mut start = 0;
    for (i, b) in text.iter().enumerate() {
        if current == line {
            break;
        }
        if *b == b'\n' {
            current += 1;
            start = i + 1;
        }
    }
    (start + column.saturating_sub(1)).min(text.len())
}

/// The path of the value being read at `line:column` (empty at the top level).
pub fn path_at(text: &[u8], line: usize, column: usize) -> String {
    let end = offset(text, line, column);
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    // Inside an object, a string is a key when no key is pending a value yet.
    let mut expecting_key = false;
    while let Some(&byte) = text.get(i).filter(|_| i < end) {
        match byte {
            b'{' => {
                stack.push(Frame::Object(None));
                expecting_key = true;
            }
            b'[' => {
                stack.push(Frame::Array(0));
                expecting_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expecting_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(index)) => *index += 1,
                Some(Frame::Object(key)) => {
                    *key = None;
                    expecting_key = true;
                }
                None => {}
            },
            b':' => expecting_key = false,
            b'"' => {
                let start = i + 1;
                i += 1;
                while let Some(&c) = text.get(i).filter(|&&c| c != b'"') {
                    if c == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if expecting_key {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        let raw = text.get(start..i.min(text.len())).unwrap_or_default();
                        *key = Some(
                            serde_json::from_slice::<String>(&[b"\"", raw, b"\""].concat())
                                .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned()),
                        );
                    }
                    expecting_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of_error(json: &str) -> String {
        let error = serde_json::from_str::<serde_json::Value>(json).err();
        match error {
            Some(e) => path_at(json.as_bytes(), e.line(), e.column()),
            None => String::new(),
        }
    }

    #[test]
    fn positions_map_to_field_paths() {
        let text = r#"{"policies": [{"rules": []}, {"action": "ALOW", "rules": [{"to": [{"operation": {"paths": "x"}}]}]}]}"#;
        let at = |needle: &str| {
            let offset = text.find(needle).unwrap() + needle.len();
            path_at(text.as_bytes(), 1, offset + 1)
        };
        assert_eq!(at(r#""ALOW""#), "policies[1].action");
        assert_eq!(
            at(r#""paths": "x""#),
            "policies[1].rules[0].to[0].operation.paths"
        );
        assert_eq!(at(r#"{"rules": []"#), "policies[0].rules");
        assert_eq!(path_at(text.as_bytes(), 1, 0), "");
    }

    #[test]
    fn escaped_quotes_and_lines_are_followed() {
        let text = "{\n  \"a\\\"b\": {\n    \"c\": [1, 2, \"x\"]\n  }\n}";
        assert_eq!(path_at(text.as_bytes(), 3, 18), "a\"b.c[2]");
        assert_eq!(path_of_error("{\"a\": {\"b\": tru}}"), "a.b");
    }
}
