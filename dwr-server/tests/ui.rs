//! The dashboard in a real browser: Debian's Chromium driven through WebDriver
//! (chromedriver) against `dwr dev --fake-runtime` with an API token. Signs in, submits a
//! job from the form (a refused value first) and sees it succeed without a reload, opens
//! its log from the jobs list, aborts a running job from its page, sees a pending job's
//! reason, looks at the executors, signs out. Screenshots of each page go to
//! `target/ui-screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Proc};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const TOKEN: &str = "ui-test-token-0123456789abcdef";

fn browser_installed() -> bool {
    let installed = common::succeeds("chromedriver", &["--version"])
        && (common::succeeds("chromium", &["--version"])
            || std::path::Path::new("/usr/bin/chromium").exists());
    let required = std::env::var("DWR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    assert!(
        installed || !required,
        "chromium or chromedriver is not installed but DWR_REQUIRE_SERVICES=1 (run scripts/provision.sh)"
    );
    if !installed {
        eprintln!("skipping: chromium / chromedriver not installed; run scripts/provision.sh");
    }
    installed
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` (every 100 ms, up to `within`) until it returns `Some`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn attr_of(client: &Client, css: &str, name: &str) -> Option<String> {
    client
        .find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

/// Fills the submit form and sends it.
async fn submit_form(client: &Client, base: &str, command: &str, cpu: &str) {
    client.goto(&format!("{base}/ui/submit")).await.unwrap();
    let set = |css: &'static str, value: String| async move {
        let field = client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(&value).await.unwrap();
    };
    set("#docker_image", "dwr-test/busybox:latest".to_owned()).await;
    set("#command", command.to_owned()).await;
    set("#cpu_cores", cpu.to_owned()).await;
    set("#memory_gb", "0.25".to_owned()).await;
    client
        .find(Locator::Css("form.submit button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The id of the job whose page the browser shows.
async fn job_on_page(client: &Client) -> String {
    eventually("a job page", Duration::from_secs(10), || async {
        let url = client.current_url().await.ok()?;
        let id = url.path().strip_prefix("/ui/jobs/")?.to_owned();
        (id.len() == 36).then_some(id)
    })
    .await
}

async fn wait_status(client: &Client, status: &str, within: Duration) {
    eventually(&format!("status {status}"), within, || async {
        (attr_of(client, "#job-status", "data-status")
            .await
            .as_deref()
            == Some(status))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    if !browser_installed() {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let port = free_port();
    let dwr = Command::new(env!("CARGO_BIN_EXE_dwr"))
        .args(["dev", "--fake-runtime"])
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env("DWR_API_TOKEN", TOKEN)
        .env("SCHEDULER_API_HOST", "127.0.0.1")
        .env("SCHEDULER_API_PORT", port.to_string())
        .env("EXECUTOR_ID", "e1")
        .env("DWR_EXECUTOR_CPUS", "4")
        .env("DWR_EXECUTOR_MEMORY_MB", "8192")
        .env("DWR_INFEASIBLE_GRACE", "never")
        .env("JOB_POLL_INTERVAL", "1")
        .env("DWR_LOG_DIR", logs.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dwr dev starts");
    let _dwr = Proc::new("dwr dev", dwr);
    let driver_port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={driver_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let _driver = Proc::new("chromedriver", driver);
    wait_for_port(port, "dwr dev");
    wait_for_port(driver_port, "chromedriver");
    let base = format!("http://127.0.0.1:{port}");

    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a Chromium session through chromedriver");

    let result = run(&client, &base).await;
    let _ = client.close().await;
    result
}

async fn run(client: &Client, base: &str) {
    // Signing in: a page asks for the token once; a wrong one is refused next to the field.
    client.goto(&format!("{base}/ui/jobs")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/ui/login");
    screenshot(client, "login").await;
    let token = client.find(Locator::Css("#token")).await.unwrap();
    token.send_keys("not-the-token").await.unwrap();
    client
        .find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = eventually("the refusal", Duration::from_secs(10), || async {
        text_of(client, "#token-error").await
    })
    .await;
    assert!(refused.contains("token"), "{refused}");
    // By keyboard alone: the token, then Enter.
    let token = client.find(Locator::Css("#token")).await.unwrap();
    let enter = char::from(fantoccini::key::Key::Enter);
    token.send_keys(&format!("{TOKEN}{enter}")).await.unwrap();
    eventually("the overview", Duration::from_secs(10), || async {
        (text_of(client, "main h1").await.as_deref() == Some("Overview")).then_some(())
    })
    .await;
    screenshot(client, "overview").await;

    // Every field of the submit form has a label.
    client.goto(&format!("{base}/ui/submit")).await.unwrap();
    let unlabeled = client
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
                .filter(e => !document.querySelector('label[for=\"' + e.id + '\"]')).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabeled, json!(0));
    // Tab walks the form in order.
    let tab = char::from(fantoccini::key::Key::Tab).to_string();
    client
        .find(Locator::Css("#docker_image"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut visited = Vec::new();
    for _ in 0..3 {
        let active = client
            .execute("return document.activeElement.id", vec![])
            .await
            .unwrap();
        visited.push(active.as_str().unwrap_or_default().to_owned());
        client
            .active_element()
            .await
            .unwrap()
            .send_keys(&tab)
            .await
            .unwrap();
    }
    assert_eq!(visited, ["docker_image", "command", "cpu_cores"]);

    // A refused value: the API's message next to the field, nothing submitted.
    submit_form(
        client,
        base,
        "fake\nprint=hello from the form\nrun=1500ms",
        "0",
    )
    .await;
    let error = eventually("the field's message", Duration::from_secs(10), || async {
        text_of(client, "#cpu_cores-error").await
    })
    .await;
    assert!(error.contains("cpu_cores"), "{error}");
    assert_eq!(
        attr_of(client, "#cpu_cores", "aria-invalid")
            .await
            .as_deref(),
        Some("true")
    );
    screenshot(client, "submit-refused").await;

    // Submitted: its page follows it to succeeded without a reload, log included.
    submit_form(
        client,
        base,
        "fake\nprint=hello from the form\nrun=1500ms",
        "1",
    )
    .await;
    let id = job_on_page(client).await;
    client
        .execute("window.__notReloaded = true; return true", vec![])
        .await
        .unwrap();
    wait_status(client, "succeeded", Duration::from_secs(30)).await;
    let still = client
        .execute("return window.__notReloaded === true", vec![])
        .await
        .unwrap();
    assert_eq!(still, json!(true), "the page was reloaded");
    eventually("the log line", Duration::from_secs(10), || async {
        text_of(client, "#log")
            .await
            .filter(|log| log.contains("hello from the form"))
    })
    .await;
    screenshot(client, "job-succeeded").await;

    // The jobs list: one click from a row to its log.
    client.goto(&format!("{base}/ui/jobs")).await.unwrap();
    screenshot(client, "jobs").await;
    // Page weight: the list with its stylesheet and script, as the browser fetches them.
    let weight = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             Promise.all(['/ui/jobs', '/ui/assets/app.css', '/ui/assets/app.js']
                 .map(u => fetch(u).then(r => r.arrayBuffer()).then(b => b.byteLength)))
               .then(sizes => done(sizes.reduce((a, b) => a + b, 0)));",
            vec![],
        )
        .await
        .unwrap();
    let weight = weight.as_u64().expect("a byte count");
    assert!(
        weight > 1_000 && weight < 200 * 1024,
        "page weight {weight} bytes"
    );
    client
        .find(Locator::Css(&format!(
            "tr[data-job='{id}'] a[href$='#log']"
        )))
        .await
        .expect("a log link in the job's row")
        .click()
        .await
        .unwrap();
    let url = eventually("the job page", Duration::from_secs(10), || async {
        let url = client.current_url().await.ok()?;
        (url.path() == format!("/ui/jobs/{id}")).then_some(url)
    })
    .await;
    assert_eq!(url.fragment(), Some("log"));
    assert!(text_of(client, "#log")
        .await
        .unwrap()
        .contains("hello from the form"));

    // Aborting a running job from its page, after the confirmation.
    submit_form(client, base, "fake\nhang\nterm", "1").await;
    let hanging = job_on_page(client).await;
    wait_status(client, "running", Duration::from_secs(20)).await;
    client
        .find(Locator::Css("form.abort button"))
        .await
        .expect("an abort button")
        .click()
        .await
        .unwrap();
    client
        .accept_alert()
        .await
        .expect("a confirmation to accept");
    wait_status(client, "aborted", Duration::from_secs(30)).await;
    assert_eq!(job_on_page(client).await, hanging);
    screenshot(client, "job-aborted").await;

    // A job no executor can run stays pending, and its page says why.
    submit_form(client, base, "fake", "64").await;
    job_on_page(client).await;
    let reason = eventually("a pending reason", Duration::from_secs(20), || async {
        text_of(client, "#pending-reason").await
    })
    .await;
    assert!(reason.contains("CPU") || reason.contains("cpu"), "{reason}");
    assert_eq!(
        attr_of(client, "#job-status", "data-status")
            .await
            .as_deref(),
        Some("pending")
    );
    screenshot(client, "job-pending").await;

    // Executors: capacity bars, alive by text.
    client.goto(&format!("{base}/ui/executors")).await.unwrap();
    let executor = text_of(client, "article.executor").await.unwrap();
    assert!(
        executor.contains("e1") && executor.contains("alive"),
        "{executor}"
    );
    screenshot(client, "executors").await;

    // Signing out forgets the session.
    client
        .find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the login page", Duration::from_secs(10), || async {
        (client.current_url().await.ok()?.path() == "/ui/login").then_some(())
    })
    .await;
    client.goto(&format!("{base}/ui")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/ui/login");
}
