//! A minimal W3C WebDriver client for Debian's headless Chromium through
//! `chromedriver` on a loopback port (std + serde_json: plain HTTP/1.1 to
//! chromedriver, which is all WebDriver needs). The chromedriver process
//! (and with it the browsers) is killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vpn_tests::server::free_port;
use vpn_tests::{wait_until_ok, Background, TempDir};

/// The W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process on 127.0.0.1.
pub struct ChromeDriver {
    port: u16,
    _proc: Background,
    _dir: TempDir,
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub fn start() -> Self {
        let driver = find_binary(&["chromedriver"]).expect(
            "chromedriver not found: `cargo xtask setup` installs the Debian packages chromium and chromium-driver",
        );
        let dir = TempDir::new("chromedriver").unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("HOME", dir.path());
        let proc =
            Background::spawn("chromedriver", cmd, &dir.path().join("chromedriver.log")).unwrap();
        let d = Self {
            port,
            _proc: proc,
            _dir: dir,
        };
        wait_until_ok("chromedriver to be ready", Duration::from_secs(30), || {
            let v = d.call("GET", "/status", None)?;
            if v["value"]["ready"] == true {
                Ok(())
            } else {
                Err(format!("status {v}"))
            }
        })
        .unwrap();
        d
    }

    /// One WebDriver command; returns the JSON answer or the WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading from chromedriver: {e}")),
            }
            if let Some(v) = complete_body(&buf) {
                return parse_answer(&buf, v);
            }
        }
        let end = find(&buf, b"\r\n\r\n").ok_or("short answer from chromedriver")?;
        parse_answer(&buf, end + 4..buf.len())
    }

    /// A new headless Chromium session (its own profile, so its own cookies).
    pub fn session(&self) -> Session<'_> {
        let browser = find_binary(&["chromium", "chromium-browser"])
            .expect("chromium not found: `cargo xtask setup` installs it");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The server's certificate is self-signed (vpn-control pins it;
            // the browser test only looks at pages).
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": browser.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,900",
                         "--no-first-run", "--disable-extensions"]
            }
        }}});
        let v = self
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("starting a Chromium session: {e}"));
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {v}"))
            .to_owned();
        Session { driver: self, id }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The body range once a Content-Length framed answer is complete.
fn complete_body(buf: &[u8]) -> Option<std::ops::Range<usize>> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    (buf.len() >= end + 4 + len).then_some(end + 4..end + 4 + len)
}

fn parse_answer(buf: &[u8], body: std::ops::Range<usize>) -> Result<Value, String> {
    let status_line = String::from_utf8_lossy(&buf[..find(buf, b"\r\n").unwrap_or(0)]).into_owned();
    let v: Value = serde_json::from_slice(&buf[body])
        .map_err(|e| format!("chromedriver answered {status_line} with non-JSON: {e}"))?;
    if let Some(err) = v["value"]["error"].as_str() {
        return Err(format!(
            "{err}: {}",
            v["value"]["message"].as_str().unwrap_or_default()
        ));
    }
    Ok(v)
}

/// One browser session; deleted (browser closed) on drop.
pub struct Session<'d> {
    driver: &'d ChromeDriver,
    id: String,
}

/// An element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Session<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.driver.call(
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Navigates to `url` and waits for the page load.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.must("GET", "/url", None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.must("GET", "/source", None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The visible text of the page body.
    pub fn body_text(&self) -> String {
        self.find("body").map(|b| self.text(&b)).unwrap_or_default()
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        v["value"][ELEMENT_KEY]
            .as_str()
            .map(|s| Element(s.to_owned()))
    }

    /// Every element matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.must(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// [`Self::find`], panicking with the page's text if absent.
    pub fn expect(&self, css: &str) -> Element {
        self.find(css).unwrap_or_else(|| {
            let text = self.body_text();
            panic!(
                "no element {css:?} on {}; page {}:\n{}",
                self.url(),
                if text.trim().is_empty() {
                    "source"
                } else {
                    "text"
                },
                if text.trim().is_empty() {
                    self.source()
                } else {
                    text
                }
            )
        })
    }

    /// An element's attribute (or property).
    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        let v = self
            .cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None)
            .ok()?;
        v["value"].as_str().map(str::to_owned)
    }

    /// An element's rendered text.
    pub fn text(&self, e: &Element) -> String {
        self.must("GET", &format!("/element/{}/text", e.0), None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clears a field and types `text` into it.
    pub fn type_into(&self, e: &Element, text: &str) {
        let _ = self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
        self.must(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks an element (and waits for a navigation it starts).
    pub fn click(&self, e: &Element) {
        self.must("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Clicks an element that submits a form or follows a link, and waits
    /// until the next page has loaded (a marker set on the old page is gone
    /// and the new document is complete): WebDriver's click may return
    /// before a POST and its redirect are done.
    pub fn click_and_wait(&self, e: &Element) {
        self.script("window.__gvOldPage = true; return null;");
        self.click(e);
        wait_until_ok("the next page to load", Duration::from_secs(60), || {
            let v = self
                .cmd(
                    "POST",
                    "/execute/sync",
                    Some(json!({
                        "script": "return window.__gvOldPage === undefined && document.readyState === 'complete';",
                        "args": []
                    })),
                )
                // During the navigation the script may fail: poll again.
                .map_err(|e| e.to_string())?;
            if v["value"] == true {
                Ok(())
            } else {
                Err("still on the old page".to_owned())
            }
        })
        .unwrap_or_else(|e| panic!("{e} (at {})", self.url()));
    }

    /// Fills the named fields of `#form_id` and clicks its submit button.
    pub fn submit_form(&self, form_id: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            let f = self.expect(&format!("#{form_id} [name=\"{name}\"]"));
            self.type_into(&f, value);
        }
        let button = self
            .find(&format!("#{form_id} [type=submit]"))
            .or_else(|| self.find(&format!("#{form_id} button")))
            .unwrap_or_else(|| panic!("form #{form_id} has no submit button"));
        self.click_and_wait(&button);
    }

    /// Runs JavaScript in the page (`arguments` empty); returns its value.
    pub fn script(&self, js: &str) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )["value"]
            .clone()
    }

    /// The session's cookies (HttpOnly ones included) as a `Cookie:` header.
    pub fn cookie_header(&self) -> String {
        let v = self.must("GET", "/cookie", None);
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| {
                        Some(format!("{}={}", c["name"].as_str()?, c["value"].as_str()?))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot_png(&self) -> Vec<u8> {
        let v = self.must("GET", "/screenshot", None);
        decode_base64(v["value"].as_str().unwrap_or_default())
            .expect("chromedriver's screenshot is base64")
    }

    /// Saves a screenshot as `dir/name.png` when `GROUPVPN_SCREENSHOTS=1`
    /// (so that CI runs do not rewrite the committed pictures).
    pub fn screenshot_to(&self, dir: &Path, name: &str) {
        if std::env::var("GROUPVPN_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.screenshot_png()).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.cmd("DELETE", "", None);
    }
}

/// Standard base64 (with padding) to bytes.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
    assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
    assert!(decode_base64("a").is_none());
    assert!(decode_base64("a*==").is_none());
}
