//! GET /rust/... : a dependency-free Rust Wagi guest that describes the request
//! (method, path after /rust, query arguments from argv) as JSON.

use std::env;
use std::fmt::Write as _;
use std::io::{self, Write};

fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() {
    let method = env::var("REQUEST_METHOD").unwrap_or_default();
    let path = env::var("PATH_INFO").unwrap_or_default();
    let args: Vec<String> = env::args().skip(1).map(|a| json_string(&a)).collect();

    let body = format!(
        "{{\"guest\": \"rust\", \"method\": {}, \"path\": {}, \"args\": [{}]}}\n",
        json_string(&method),
        json_string(&path),
        args.join(", ")
    );
    let response = format!("Content-Type: application/json\n\n{}", body);
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if lock.write_all(response.as_bytes()).and_then(|()| lock.flush()).is_err() {
        std::process::exit(1);
    }
}
