//! `tsq repl` on a real pseudo-terminal: TAB completion, a query, Up-arrow history recall,
//! a history file that the next session reads, Ctrl-D to leave.
//!
//! Every read is bounded by a timeout, and the child is killed if the test fails, so a
//! broken line editor makes this test fail rather than hang.

#![cfg(unix)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

const SMALL: &str = "# TYPE http_requests counter
http_requests_total{code=\"200\",job=\"api\"} 10 1700000000
http_requests_total{code=\"200\",job=\"api\"} 30 1700000030
http_requests_total{code=\"500\",job=\"api\"} 1 1700000000
http_requests_total{code=\"500\",job=\"api\"} 4 1700000030
# EOF
";

/// A `tsq repl` running on the slave side of a pty; the test holds the master.
struct Repl {
    child: Child,
    master: File,
    output: Receiver<Vec<u8>>,
    /// Everything read so far, escape sequences removed.
    seen: String,
    /// How much of `seen` the previous `expect` consumed.
    mark: usize,
}

impl Repl {
    fn start(db: &Path, history: &Path) -> Repl {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the out-pointers are valid `c_int`s; the name and termios pointers may be
        // null; `size` outlives the call.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &size as *const libc::winsize as *mut libc::winsize,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty succeeded, so both are open descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let slave = File::from(slave);
        let child = Command::new(env!("CARGO_BIN_EXE_tsq"))
            .arg("--db")
            .arg(db)
            .arg("repl")
            .env("TERM", "xterm")
            .env("TSQ_HISTORY", history)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("run tsq repl");
        // The Command (and its copies of the slave) is gone: the master sees EOF/EIO when
        // the child exits.
        let master = File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Repl {
            child,
            master,
            output: rx,
            seen: String::new(),
            mark: 0,
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits until `text` appears after the previous match; returns what came before it.
    fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut raw = Vec::new();
        loop {
            if let Some(i) = self.seen[self.mark..].find(text) {
                let before = self.seen[self.mark..self.mark + i].to_string();
                self.mark += i + text.len();
                return before;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => {
                    raw.extend_from_slice(&bytes);
                    // Decode only whole UTF-8 sequences.
                    let valid = match std::str::from_utf8(&raw) {
                        Ok(_) => raw.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(_) => raw.len(),
                    };
                    let chunk: Vec<u8> = raw.drain(..valid).collect();
                    self.seen
                        .push_str(&strip_escapes(&String::from_utf8_lossy(&chunk)));
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    panic!(
                        "timed out waiting for {text:?}; the terminal showed:\n{}",
                        self.seen
                    );
                }
            }
        }
    }

    /// Waits (bounded) for the child to exit; returns whether it succeeded.
    fn wait(&mut self) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tsq repl did not exit; the terminal showed:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text without ANSI escape sequences (CSI `ESC [ ... final`, OSC, two-byte escapes)
/// and carriage returns.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn repl_on_a_terminal_completes_answers_and_remembers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("small.om");
    std::fs::write(&file, SMALL).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tsq"))
        .arg("--db")
        .arg(&db)
        .args(["ingest", "--no-progress"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let history = dir.path().join("state").join("history");

    let mut repl = Repl::start(&db, &history);
    repl.expect("tsq> ");
    repl.send(".time 1700000030\r");
    repl.expect("tsq> ");

    // A partial function name and TAB: the name is completed, with its parenthesis.
    repl.send("sum(max_over_ti\t");
    repl.expect("sum(max_over_time(");
    // A metric name from the database.
    repl.send("http_req\t");
    repl.expect("max_over_time(http_requests_total");
    // A label name inside braces, then a value inside quotes (with the closing quote).
    repl.send("{co\t");
    repl.expect("http_requests_total{code");
    repl.send("=\"5\t");
    repl.expect("{code=\"500\"");
    repl.send("}[1m])) * 7\r");
    // max = 4, times 7.
    let answer = repl.expect("28");
    assert!(!answer.contains("error"), "{answer}");
    repl.expect("tsq> ");

    // A dot-command completes too.
    repl.send(".form\t");
    repl.expect(".format");
    repl.send(" csv\r");
    repl.expect("tsq> ");

    // Up twice recalls the query (the .format line is the latest entry); it runs again,
    // now as CSV.
    repl.send("\x1b[A\x1b[A");
    repl.expect("sum(max_over_time(http_requests_total{code=\"500\"}[1m])) * 7");
    repl.send("\r");
    repl.expect("series,timestamp,value");
    repl.expect(",28");
    repl.expect("tsq> ");

    // Ctrl-D on an empty line leaves.
    repl.send("\x04");
    assert!(repl.wait(), "tsq repl failed:\n{}", repl.seen);
    drop(repl);

    let saved = std::fs::read_to_string(&history).expect("history file written");
    assert!(
        saved.contains("sum(max_over_time(http_requests_total{code=\"500\"}[1m])) * 7"),
        "{saved}"
    );

    // A new session finds the previous one's history.
    let mut repl = Repl::start(&db, &history);
    repl.expect("tsq> ");
    repl.send("\x1b[A");
    repl.expect("sum(max_over_time(http_requests_total{code=\"500\"}[1m])) * 7");
    // Ctrl-U clears the line; Ctrl-D leaves.
    repl.send("\x15\x04");
    assert!(repl.wait(), "tsq repl failed:\n{}", repl.seen);
}
