//! A dependency-free Rust Wagi guest: answers with the request method, path and
//! query arguments it was given through the CGI environment and argv.

use std::env;
use std::io::{self, Read, Write};

fn main() {
    let method = env::var("REQUEST_METHOD").unwrap_or_default();
    let path = env::var("PATH_INFO").unwrap_or_default();
    let route = env::var("X_MATCHED_ROUTE").unwrap_or_default();
    let args: Vec<String> = env::args().skip(1).collect();

    let mut body = Vec::new();
    if io::stdin().read_to_end(&mut body).is_err() {
        body.clear();
    }

    let mut out = String::new();
    out.push_str("Content-Type: text/plain; charset=utf-8\n\n");
    out.push_str("Hello from Rust on wasmlet!\n");
    out.push_str(&format!("method: {}\n", method));
    out.push_str(&format!("path: {}\n", path));
    out.push_str(&format!("route: {}\n", route));
    out.push_str(&format!("args: {:?}\n", args));
    out.push_str(&format!("body: {} bytes\n", body.len()));

    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if lock.write_all(out.as_bytes()).and_then(|()| lock.flush()).is_err() {
        std::process::exit(1);
    }
}
