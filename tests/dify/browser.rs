//! A real browser: Debian's headless Chromium driven over WebDriver (Debian's chromedriver, the fantoccini
//! client). Every step keeps a PNG screenshot under the run's output directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    step: usize,
    _profile: tempfile::TempDir,
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session. The certificate of NKP's
    /// Traefik is signed by its own CA, which a person accepts once in the browser; here Chromium ignores
    /// certificate errors for the same reason.
    pub async fn start(shots: &Path) -> Browser {
        for (binary, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(binary).is_file(),
                "{binary} is missing: install Debian's {package} (scripts/test-tools install debian)"
            );
        }
        std::fs::create_dir_all(shots).unwrap();
        let port = crate::support::net::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Its own process group, which Chromium's processes join, so that all of them are killed together.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--ignore-certificate-errors", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1440,900", format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session from chromedriver: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        Browser { client, driver, shots: shots.to_path_buf(), step: 0, _profile: profile }
    }

    /// Saves a screenshot as `NN-name.png` and returns its path.
    pub async fn shot(&mut self, name: &str) -> PathBuf {
        self.step += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        let png = self.client.screenshot().await.expect("taking a screenshot");
        std::fs::write(&path, png).expect("writing the screenshot");
        path
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// Ends a step that failed: a screenshot of where the browser is, then a panic that names both. With
    /// `DIFY_HARNESS_HOLD=<seconds>` everything keeps running that long first, to look at by hand.
    pub async fn give_up(&mut self, what: String) -> ! {
        let shot = self.shot("failed").await;
        eprintln!("dify: {what} (at {}); screenshot {}", self.url().await, shot.display());
        // What the page says (a dialog's validation message may be scrolled out of the screenshot).
        let text = self.client.execute("return document.body.innerText", vec![]).await.unwrap_or_default();
        let text: String = text.as_str().unwrap_or_default().chars().take(4000).collect();
        eprintln!("dify: the page's text:\n{text}");
        // What the page asked the api, and how it answered: a control that shows only for some answers (a role,
        // a feature) is missing when one of them failed.
        eprintln!("dify: the page's console requests (path, status, ms):\n{}", self.console_requests().await);
        if let Some(secs) = std::env::var("DIFY_HARNESS_HOLD").ok().and_then(|s| s.parse().ok()) {
            eprintln!("dify: holding for {secs} s (DIFY_HARNESS_HOLD)");
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        panic!("{what} (at {}); screenshot {}", self.url().await, shot.display());
    }

    /// Waits until the current URL contains `part`.
    pub async fn wait_url(&mut self, part: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.url().await.contains(part) {
            if Instant::now() > deadline {
                self.give_up(format!("the browser never reached a URL with {part:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for an element; panics with a screenshot when it never appears.
    pub async fn find(&mut self, locator: Locator<'_>, what: &str, timeout: Duration) -> fantoccini::elements::Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(el) = self.shown(locator).await {
                return el;
            }
            if Instant::now() > deadline {
                self.give_up(format!("{what} never appeared")).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for an element as [`Browser::find`] does, loading the page again when it has not appeared within
    /// `per_load`, up to `loads` loads in all: for the console's pages that sometimes skip one of their requests on
    /// a load (the app configuration's LLM list), which a person would reload. Each reload is printed with the
    /// requests the page had made.
    pub async fn find_reloading(
        &mut self,
        locator: Locator<'_>,
        what: &str,
        per_load: Duration,
        loads: u32,
    ) -> fantoccini::elements::Element {
        for load in 1..loads {
            let deadline = Instant::now() + per_load;
            while Instant::now() < deadline {
                if let Some(el) = self.shown(locator).await {
                    return el;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            eprintln!(
                "dify: {what} not there {per_load:?} after page load {load} of {}; loading it again. The page's \
                 console requests (path, status, ms):\n{}",
                self.url().await,
                self.console_requests().await
            );
            self.client.refresh().await.unwrap_or_else(|e| panic!("reloading the page: {e}"));
        }
        self.find(locator, what, per_load).await
    }

    pub async fn fill(&mut self, css: &str, text: &str) {
        let el = self.find(Locator::Css(css), css, Duration::from_secs(30)).await;
        el.clear().await.ok();
        el.send_keys(text).await.unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Clicks the visible element (button, link or label) whose text is `text`.
    pub async fn click_text(&mut self, text: &str) {
        let xpath = format!(
            "//*[self::button or self::a or @role='button' or self::span or self::div][normalize-space(.)='{text}']"
        );
        self.click_last(&xpath, text).await;
    }

    /// Clicks the visible button whose text is `text`, or whose label span is (beside a keyboard hint, "Create ⌃↵").
    pub async fn click_button(&mut self, text: &str) {
        let xpath = format!("//button[normalize-space(.)='{text}' or ./span[normalize-space(.)='{text}']]");
        self.click_last(&xpath, text).await;
    }

    /// Clicks the visible button named by any of `texts` (a label that changed between Dify releases).
    pub async fn click_button_any(&mut self, texts: &[&str]) {
        let names: Vec<String> = texts.iter().map(|t| format!("normalize-space(.)='{t}'")).collect();
        let xpath = format!("//button[{}]", names.join(" or "));
        self.click_last(&xpath, &texts.join(" or ")).await;
    }

    /// Clicks the last visible element that `xpath` matches and that takes the click.
    pub async fn click_xpath(&mut self, xpath: &str, what: &str) {
        self.click_last(xpath, what).await;
    }

    /// Clicks `el` once it takes the click: a loading cover or a closing menu may lie over it for a moment.
    pub async fn click_element(&mut self, el: &fantoccini::elements::Element, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match el.clone().click().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => self.give_up(format!("{what} never took the click ({e})")).await,
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Clicks the last visible match that takes the click: a dialog comes after the page it covers, so its
    /// elements are tried before the covered page's.
    async fn click_last(&mut self, xpath: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_error = String::new();
        loop {
            let found = self.client.find_all(Locator::XPath(xpath)).await.unwrap_or_default();
            for el in found.iter().rev() {
                // A disabled button takes the click and does nothing (Install, while the package uploads).
                if !el.is_displayed().await.unwrap_or(false) || !el.is_enabled().await.unwrap_or(false) {
                    continue;
                }
                match el.click().await {
                    Ok(()) => return,
                    Err(e) => last_error = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                self.give_up(format!("nothing clickable named {what:?} ({last_error})")).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Chooses `file` in the file input `css`, as a user picking it in the file dialog (or dropping it) does. Pages
    /// keep their file inputs hidden (or transparent over a button), so the input is shown first.
    pub async fn upload(&mut self, css: &str, file: &Path) {
        let show = format!(
            "const el = document.querySelector({css:?}); if (!el) return false;
             el.classList.remove('hidden'); el.style.display = 'block'; el.style.opacity = '1'; return true;"
        );
        // The input comes with its dialog, which may still be opening.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.client.execute(&show, vec![]).await.unwrap_or_else(|e| panic!("showing {css}: {e}"))
            != serde_json::Value::Bool(true)
        {
            if Instant::now() > deadline {
                self.give_up(format!("no file input {css}")).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let input = self.find(Locator::Css(css), css, Duration::from_secs(10)).await;
        input
            .send_keys(&file.display().to_string())
            .await
            .unwrap_or_else(|e| panic!("choosing {}: {e}", file.display()));
    }

    /// Whether an element matches `locator` and is shown, now.
    pub async fn is_displayed(&self, locator: Locator<'_>) -> bool {
        self.shown(locator).await.is_some()
    }

    /// The first element `locator` matches, when there is one and it is shown, now.
    async fn shown(&self, locator: Locator<'_>) -> Option<fantoccini::elements::Element> {
        let el = self.client.find(locator).await.ok()?;
        el.is_displayed().await.unwrap_or(false).then_some(el)
    }

    /// The console api requests the current page made, one a line: path, HTTP status (0 when it never completed)
    /// and duration, from the browser's resource timing.
    pub async fn console_requests(&self) -> String {
        let script = "return performance.getEntriesByType('resource')
            .filter(e => e.name.includes('/console/api/'))
            .map(e => e.name.split('/console/api/')[1] + ' ' + (e.responseStatus || 0) + ' ' + Math.round(e.duration))
            .join('\\n')";
        let lines = self.client.execute(script, vec![]).await.unwrap_or_default();
        lines.as_str().unwrap_or("(the page's resource timing was not readable)").to_string()
    }

    /// Runs `script` in the page as an async function body; it calls `arguments[0]` with its result.
    pub async fn run_async(&self, script: &str) -> serde_json::Value {
        self.client.execute_async(script, vec![]).await.unwrap_or_else(|e| panic!("running a script: {e}"))
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Chromium must not outlive the test, even when a step panicked before `close`: its process group goes, and
    /// whatever left the group is found by the profile directory that is this session's alone.
    fn drop(&mut self) {
        // SAFETY: kill(2) on chromedriver's own process group.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = self._profile.path().display().to_string();
        let _ = Command::new("pkill").args(["-KILL", "-f", &format!("user-data-dir={profile}")]).status();
    }
}
