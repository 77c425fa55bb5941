//! {{project-name}}: a Wagi handler. The request comes in as CGI: the body on
//! stdin, the method, path, query and headers in environment variables. The
//! response goes to stdout: header lines, a blank line, then the body.

use std::env;
use std::io::{self, Write};

fn main() -> io::Result<()> {
    let method = env::var("REQUEST_METHOD").unwrap_or_else(|_| "GET".to_string());
    let path = env::var("PATH_INFO").unwrap_or_else(|_| "/".to_string());

    let stdout = io::stdout();
    let mut out = stdout.lock();
    write!(out, "Content-Type: text/plain\n\n")?;
    writeln!(out, "Hello from {{project-name}}!")?;
    writeln!(out, "{} {}", method, path)?;
    out.flush()
}
