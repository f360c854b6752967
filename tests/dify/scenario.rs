//! The browser scenario: what a user does at `https://<address>/dify`, step by step, with a screenshot each. The
//! test (`main.rs`) brings the release up, hands this module the addresses, and checks what it saw.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::browser;
use crate::model_server;
use crate::root;

/// The first admin's email, in the browser and in the bootstrap Job's values alike.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// What the browser scenario saw, for the test to check and the figures to name.
pub struct Seen {
    pub app_list: PathBuf,
    pub chat: PathBuf,
    /// The image sent in the chat, before and after sending.
    pub image: ImageChat,
    /// The indexed document in its knowledge base.
    pub knowledge: PathBuf,
    /// The document's file, as its Download action fetches it.
    pub document: DocumentDownload,
    /// The knowledge chat's answer, and its screenshot.
    pub knowledge_answer: (String, PathBuf),
    /// When the model's whole reply was on the page.
    pub replied: Instant,
    pub sandbox: SandboxRun,
    /// The model whose endpoint the SSRF proxy refused, when the visit asked for one.
    pub refused_model: Option<RefusedModel>,
}

/// What the console showed when a model was added on an endpoint the SSRF proxy refuses.
pub struct RefusedModel {
    /// The page's line that reports the failed check.
    pub message: String,
    pub shot: PathBuf,
}

/// Who sets up the first admin.
pub enum FirstAdmin {
    /// A person, in the browser: the init password, then the install form.
    InBrowser { init_password: String },
    /// The chart's bootstrap Job did, and installed the model plugin and added the models: the person signs in.
    Bootstrapped { email: String, password: String },
}

/// What the scenario needs from the release.
pub struct Visit<'a> {
    /// `https://<address>/dify`
    pub url: &'a str,
    pub first_admin: FirstAdmin,
    /// Where screenshots go.
    pub shots: &'a Path,
    /// The model plugin's package, to drop on the Plugins page.
    pub package: &'a Path,
    pub model_url: &'a str,
    /// A private address for the sandboxed code to try (refused), and one the SSRF proxy's allow-list admits.
    pub private_target: &'a str,
    pub allowed_target: &'a str,
    pub sandbox_log: &'a Path,
    /// A model endpoint on a private address the allow-list does not admit, to add as a model (refused), when the
    /// plugin daemon leaves through the SSRF proxy.
    pub unlisted_model_url: Option<&'a str>,
}

pub async fn browse(visit: Visit<'_>) -> Seen {
    let Visit {
        url,
        first_admin,
        shots,
        package,
        model_url,
        private_target,
        allowed_target,
        sandbox_log,
        unlisted_model_url,
    } = visit;
    let mut b = browser::Browser::start(shots).await;
    let long = Duration::from_secs(90);

    let (app_list, email, password) = match first_admin {
        FirstAdmin::InBrowser { init_password } => {
            let password = "Passw0rd-for-tests".to_string();
            let app_list = set_up_admin(&mut b, url, &init_password, &password).await;
            // 4. The model plugin, from its local package: Plugins, then the package dropped on the page.
            install_model_plugin(&mut b, url, package).await;
            // 5. Settings > Model Provider: the stub's chat model on the OpenAI-API-compatible provider.
            add_model(&mut b, url, model_url).await;
            (app_list, ADMIN_EMAIL.to_string(), password)
        }
        FirstAdmin::Bootstrapped { email, password } => {
            // The set-up pages are done: Dify sends a visitor to sign in.
            b.goto(url).await;
            b.wait_url("/dify/signin", long).await;
            sign_in(&mut b, &email, &password).await;
            b.wait_url("/dify/apps", long).await;
            b.find(Locator::XPath("//*[normalize-space(.)='Create from Blank']"), "the app list", long).await;
            let app_list = b.shot("app-list-signed-in").await;
            // The models the Job added, listed under their provider.
            open_model_provider(&mut b, url).await;
            for name in [model_server::CHAT_MODEL, model_server::EMBEDDING_MODEL] {
                show_model(&mut b, name).await;
            }
            b.shot("models-bootstrapped").await;
            b.goto(&format!("{url}/apps")).await;
            b.find(Locator::XPath("//*[normalize-space(.)='Create from Blank']"), "the app list", long).await;
            (app_list, email, password)
        }
    };
    // 5b. A model on an endpoint the SSRF proxy's allow-list does not admit: Dify's check of it is refused.
    let refused_model = match unlisted_model_url {
        Some(unlisted) => Some(add_refused_model(&mut b, url, unlisted).await),
        None => None,
    };

    // 6. A chat app, then its public web app under /dify.
    let app_id = create_chatbot(&mut b, "Harness chat").await;
    b.shot("app-created").await;
    // The web app's address, as the app's overview shows it.
    let code = site_code(&b, &app_id).await;
    let web_app_url = format!("{url}/chat/{code}");
    b.goto(&web_app_url).await;
    b.wait_url(&format!("/dify/chat/{code}"), long).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let web_app = b.shot("web-app").await;
    // The chat page itself: its message box, not an error page.
    let message_box = b.find(Locator::Css("textarea"), "the web app's message box", long).await;
    // A question; the answer is the model's, streamed: the page shows it growing word by word. Each change of the
    // page records how many of the reply's words it shows (from three on: shorter prefixes may be elsewhere).
    let watch = format!(
        "window.__shown = []; const words = {words:?};
         new MutationObserver(() => {{
           const text = document.body.innerText;
           let n = 0;
           for (let k = 3; k <= words.length; k++) {{ if (text.includes(words.slice(0, k).join(' '))) n = k; }}
           if (n > 0) window.__shown.push(n);
         }}).observe(document.body, {{subtree: true, childList: true, characterData: true}});",
        words = model_server::REPLY.split(' ').collect::<Vec<_>>()
    );
    b.client.execute(&watch, vec![]).await.expect("watching the page");
    ask(&mut b, &message_box, "Hello from the harness", "the model's reply in the web app").await;
    let replied = Instant::now();
    let chat = b.shot("chat-reply").await;
    let shown = b.client.execute("return window.__shown", vec![]).await.unwrap();
    let words = model_server::REPLY.split(' ').count() as u64;
    assert!(
        shown.as_array().into_iter().flatten().any(|n| n.as_u64().is_some_and(|n| n < words)),
        "the reply appeared whole, not streamed: the page showed {shown} of its {words} words as it changed; {}",
        chat.display()
    );

    // 7. The same app with Vision on: an image sent in its web app, shown from the files route under /dify.
    let image = image_chat(&mut b, url, &app_id, shots).await;

    // 8. A knowledge base: a document uploaded (to the files store: the S3 bucket on 1.13.3, the volume on 1.14.2)
    // and indexed into Weaviate with the model server's embeddings, until the document is available (the test then
    // asks Weaviate for its objects). Its Download action gives the file back under /dify/files/.
    let knowledge = create_knowledge(&mut b, url, shots).await;
    let document = download_document(&mut b).await;

    // 9. A chat app with that knowledge as its context: its answer carries the document's line.
    let knowledge_answer = knowledge_chat(&mut b, url).await;

    // 10. Reload the console: the session holds. Then sign out.
    b.goto(&format!("{url}/apps")).await;
    b.find(Locator::XPath("//*[contains(normalize-space(.),'Harness chat')]"), "the new app in the list", long).await;
    b.client.refresh().await.unwrap();
    b.wait_url("/dify/apps", long).await;
    b.find(Locator::XPath("//*[contains(normalize-space(.),'Harness chat')]"), "the app list after a reload", long)
        .await;
    b.shot("reloaded").await;
    let logout = "const done = arguments[0];
         const csrf = (document.cookie.match(/csrf_token=([^;]+)/) || [])[1] || '';
         fetch('/dify/console/api/logout', {method: 'POST', credentials: 'include', headers: {'X-CSRF-Token': csrf}})
           .then(r => done(r.status)).catch(e => done(String(e)));";
    let status = b.run_async(logout).await;
    b.goto(&format!("{url}/apps")).await;
    b.wait_url("/dify/signin", long).await;
    b.shot("signed-out").await;
    assert!(status.as_u64().is_some_and(|s| s < 400), "logout answered {status}");
    // And back in through the sign-in form.
    sign_in(&mut b, &email, &password).await;
    b.wait_url("/dify/apps", long).await;
    b.find(Locator::XPath("//*[contains(normalize-space(.),'Harness chat')]"), "the app list after signing in", long)
        .await;
    b.shot("signed-in-again").await;

    // 11. A workflow whose Code node runs in the sandbox and tries a private address through the SSRF proxy.
    let sandbox = run_sandbox_workflow(&mut b, url, (private_target, allowed_target), shots, sandbox_log).await;
    b.close().await;
    let _ = web_app;
    Seen { app_list, chat, image, knowledge, document, knowledge_answer, replied, sandbox, refused_model }
}

/// The first admin, as a person sets it up: the init password (the chart sets INIT_PASSWORD), the install form,
/// then the app list. Returns its screenshot.
async fn set_up_admin(b: &mut browser::Browser, url: &str, init_password: &str, password: &str) -> PathBuf {
    let long = Duration::from_secs(90);
    // 1. The install page (first the init password, since the chart sets INIT_PASSWORD).
    b.goto(url).await;
    b.wait_url("/dify/init", long).await;
    b.shot("init-password").await;
    // 2. The init password.
    b.fill("input#password", init_password).await;
    b.click_text("Validate").await;
    b.wait_url("/dify/install", long).await;
    b.find(Locator::Css("input#email"), "the install form", long).await;
    b.shot("install").await;
    // 3. The admin account, then sign in.
    let email = ADMIN_EMAIL;
    b.fill("input#email", email).await;
    b.fill("input#name", "Admin").await;
    b.fill("input#password", password).await;
    b.click_text("Set up").await;
    // Dify signs the new admin in (1.13 does; a release that shows the sign-in form instead gets it filled).
    let deadline = Instant::now() + long;
    while !(b.url().await.contains("/dify/apps") || b.url().await.contains("/dify/signin")) {
        assert!(Instant::now() < deadline, "set-up never led to the app list or the sign-in page: {}", b.url().await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if b.url().await.contains("/dify/signin") {
        sign_in(b, email, password).await;
    }
    b.wait_url("/dify/apps", long).await;
    b.find(Locator::XPath("//*[normalize-space(.)='Create from Blank']"), "the app list", long).await;
    b.shot("app-list-signed-in").await
}

/// Create from Blank > Chatbot, named `name`, from the app list. Returns the new app's id.
async fn create_chatbot(b: &mut browser::Browser, name: &str) -> String {
    let long = Duration::from_secs(90);
    b.click_text("Create from Blank").await;
    // Chatbot is among the "more basic app types", folded unless the app list was filtered to chat apps.
    let chatbot = "LLM-based chatbot with simple setup";
    b.find(Locator::XPath("//*[normalize-space(.)='Chatflow']"), "the app types", long).await;
    let card = b.client.find(Locator::XPath(&format!("//*[normalize-space(.)='{chatbot}']"))).await;
    let folded = match card {
        Ok(card) => !card.is_displayed().await.unwrap_or(false),
        Err(_) => true,
    };
    if folded {
        b.click_button("More basic app types").await;
    }
    b.click_text(chatbot).await;
    b.fill("input[placeholder='Give your app a name']", name).await;
    b.shot("create-app").await;
    b.click_button("Create").await;
    b.wait_url("/dify/app/", long).await;
    let app_url = b.url().await;
    let app_id = app_id_in(&app_url);
    assert!(!app_id.is_empty(), "no app id in {app_url}");
    app_id
}

/// Plugins > drop a package: the install dialog, then Install, until it says it is done.
async fn install_model_plugin(b: &mut browser::Browser, url: &str, package: &Path) {
    let long = Duration::from_secs(90);
    b.goto(&format!("{url}/plugins")).await;
    b.find(Locator::XPath("//*[normalize-space(.)='Install plugin']"), "the plugins page", long).await;
    b.upload("input#fileUploader", package).await;
    b.find(
        Locator::XPath("//*[normalize-space(text())='About to install the following plugin']"),
        "the install dialog",
        long,
    )
    .await;
    b.shot("plugin-ready-to-install").await;
    b.click_button("Install").await;
    // The daemon installs the plugin's Python dependencies (uv sync, through the proxy). The dialog says how it
    // ended, or (newer releases) closes and the install goes on as a task of the page, until the plugin is listed.
    let listed = "//*[normalize-space(text())='OpenAI-API-compatible']";
    let dialog = "//*[normalize-space(text())='Install Plugin' or normalize-space(text())='Installing...']";
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let shown = |found: Result<fantoccini::elements::Element, _>| async move {
            match found {
                Ok(el) => el.is_displayed().await.unwrap_or(false),
                Err(_) => false,
            }
        };
        if shown(b.client.find(Locator::XPath("//*[normalize-space(text())='Installation failed']")).await).await {
            b.give_up("the model plugin failed to install".into()).await;
        }
        if shown(b.client.find(Locator::XPath("//*[normalize-space(text())='Installation successful']")).await).await {
            b.shot("plugin-installed").await;
            b.click_button("Close").await;
            break;
        }
        if !shown(b.client.find(Locator::XPath(dialog)).await).await
            && shown(b.client.find(Locator::XPath(listed)).await).await
        {
            b.shot("plugin-installed").await;
            break;
        }
        if Instant::now() > deadline {
            b.give_up("the plugin install never ended".into()).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Settings > Model Provider > OpenAI-API-compatible > Add Model: the stub's chat model.
async fn add_model(b: &mut browser::Browser, url: &str, model_url: &str) {
    let long = Duration::from_secs(90);
    open_model_provider(b, url).await;
    b.shot("model-providers").await;
    for (name, model_type) in [(model_server::CHAT_MODEL, "LLM"), (model_server::EMBEDDING_MODEL, "Text Embedding")] {
        fill_model_form(b, name, model_type, model_url).await;
        if model_type == "LLM" {
            // Vision Support: a select further down the form, "Not Support" by default. With "Support" the model
            // takes images, and chat apps on it offer Vision (image upload).
            b.click_xpath(
                "//*[@aria-label='Vision Support'] | //*[normalize-space(text())='Vision Support']/following::*[normalize-space(text())='Not Support'][1]",
                "the Vision Support select",
            )
            .await;
            // The option: a titled row of the list (1.13), an ARIA option (1.14). Another select of the form shows
            // "Support" too (User Identity Support), so the text alone is not enough.
            b.click_xpath(
                "//div[@title='Support' and contains(@class, 'cursor-pointer')] \
                 | //*[@role='option'][normalize-space(.)='Support']",
                "the Support option",
            )
            .await;
            b.find(
                Locator::XPath(
                    "//*[normalize-space(text())='Vision Support']/following::div[@title][1][@title='Support'] \
                     | //*[@aria-label='Vision Support'][normalize-space(.)='Support']",
                ),
                "Vision Support set to Support",
                long,
            )
            .await;
        }
        b.shot(&format!("add-model-{name}")).await;
        b.click_button_any(&["Add", "Save"]).await;
        show_model(b, name).await;
    }
    b.shot("models-added").await;
    // Settings close: back to the app list.
    b.goto(&format!("{url}/apps")).await;
    b.find(Locator::XPath("//*[normalize-space(.)='Create from Blank']"), "the app list", long).await;
}

/// Add Model on the provider's card: the form's name, type and base URL.
async fn fill_model_form(b: &mut browser::Browser, name: &str, model_type: &str, model_url: &str) {
    b.click_button("Add Model").await;
    b.fill("input[placeholder='Enter full model name']", name).await;
    // Model Type: a select that starts empty (1.14) or on LLM, whose options open on a click.
    let select = "//*[normalize-space(text())='Model Type']/following::*[normalize-space(text())='Please enter' \
                  or normalize-space(text())='LLM'][1]";
    if let Ok(select) = b.client.find(Locator::XPath(select)).await {
        b.click_element(&select, "the Model Type list").await;
        b.click_text(model_type).await;
    }
    b.fill("input[placeholder='Base URL, e.g. https://api.openai.com/v1']", model_url).await;
}

/// Settings > Model Provider > Add Model on `model_url`, an endpoint the SSRF proxy refuses: Dify checks a model by
/// having the plugin call it, and the plugin's request is refused (403), so the console reports the failed check
/// and adds nothing. Returns the page's line that says so, then closes the form.
async fn add_refused_model(b: &mut browser::Browser, url: &str, model_url: &str) -> RefusedModel {
    open_model_provider(b, url).await;
    fill_model_form(b, model_server::UNLISTED_MODEL, "LLM", model_url).await;
    b.shot("add-model-unlisted").await;
    b.click_button_any(&["Add", "Save"]).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let message = loop {
        let text = b.client.execute("return document.body.innerText", vec![]).await.unwrap();
        let line =
            text.as_str().unwrap_or_default().lines().find(|l| l.contains("status code 403")).map(str::to_string);
        if let Some(line) = line {
            break line;
        }
        if Instant::now() > deadline {
            b.give_up(format!("adding a model on {model_url} never reported the refused check")).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let shot = b.shot("model-refused").await;
    b.click_button("Cancel").await;
    b.goto(&format!("{url}/apps")).await;
    b.find(Locator::XPath("//*[normalize-space(.)='Create from Blank']"), "the app list", Duration::from_secs(90))
        .await;
    RefusedModel { message, shot }
}

/// Settings > Model Provider, once the OpenAI-API-compatible provider is there and its card offers Add Model.
/// - A background install (1.14) may still be finishing, and the provider appears once it has, on a fresh page.
/// - Add Model shows only once the console holds the user's role in the workspace (owner or admin, from
///   `POST /console/api/workspaces/current`). One CI run waited 33 s for it and never saw it, so a page that has the
///   provider but not Add Model after 30 s is loaded again, and the console requests that page made are printed.
async fn open_model_provider(b: &mut browser::Browser, url: &str) {
    let provider = Locator::XPath("//*[normalize-space(.)='OpenAI-API-compatible']");
    let add_model =
        Locator::XPath("//button[normalize-space(.)='Add Model' or ./span[normalize-space(.)='Add Model']]");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut loads = 0;
    loop {
        b.goto(&format!("{url}/apps?action=showSettings&tab=provider")).await;
        loads += 1;
        let loaded = Instant::now();
        let mut has_provider = false;
        // The provider is there within seconds when it is installed; Add Model follows with the workspace's role.
        while loaded.elapsed() < Duration::from_secs(if has_provider { 30 } else { 5 }) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            has_provider = b.is_displayed(provider).await;
            if has_provider && b.is_displayed(add_model).await {
                if loads > 1 {
                    eprintln!("dify: Settings > Model Provider offered Add Model on page load {loads}");
                }
                return;
            }
        }
        if has_provider {
            let requests = b.console_requests().await;
            eprintln!(
                "dify: Settings > Model Provider shows the provider but no Add Model 30 s after load {loads}; \
                 the page's console requests (path, status, ms):\n{requests}"
            );
        }
        if Instant::now() > deadline {
            let what = if has_provider { "Add Model on the provider's card" } else { "the installed provider" };
            b.give_up(format!("{what} never appeared in Settings > Model Provider")).await;
        }
    }
}

/// Waits for model `name` in the provider's list, unfolding the list when it is folded.
async fn show_model(b: &mut browser::Browser, name: &str) {
    let long = Duration::from_secs(90);
    // The provider's card lists its models folded ("Show Models", or "N Models" once it has some) until it is
    // unfolded once; the button folds it again.
    let listed = format!("//*[normalize-space(.)='{name}']");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = match b.client.find(Locator::XPath(&listed)).await {
        Ok(el) => el.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    };
    if !shown {
        b.click_xpath(
            "//button[@aria-label='Show Models' or normalize-space(.)='Show Models' or contains(normalize-space(.), ' Models')]",
            "the provider's model list",
        )
        .await;
    }
    b.find(Locator::XPath(&listed), "the added model in the provider's list", long).await;
}

/// The knowledge base's document, `harness-ledger.txt`: the line with [`model_server::CONTEXT_MARKER`] is what the
/// knowledge chat must quote.
pub fn knowledge_document() -> String {
    format!(
        "The harness ledger.\nThe vault code is {}.\nThe ledger is kept in the third drawer.\n",
        model_server::CONTEXT_MARKER
    )
}

/// Knowledge > Create Knowledge: a text document uploaded (to the files store), indexed with the model server's
/// embeddings into Weaviate, until the document is available. Returns the screenshot of the indexed document.
async fn create_knowledge(b: &mut browser::Browser, url: &str, dir: &Path) -> PathBuf {
    let long = Duration::from_secs(120);
    let doc = dir.join("harness-ledger.txt");
    std::fs::write(&doc, knowledge_document()).unwrap();
    b.goto(&format!("{url}/datasets/create")).await;
    // The page takes only the types the api supports, and drops a file chosen before it knows them.
    b.find(
        Locator::XPath("//*[starts-with(normalize-space(text()), 'Supports ') and contains(text(), 'TXT')]"),
        "the supported file types",
        long,
    )
    .await;
    b.upload("input#fileUploader", &doc).await;
    b.find(Locator::XPath("//*[contains(normalize-space(text()), 'harness-ledger')]"), "the uploaded document", long)
        .await;
    b.shot("knowledge-uploaded").await;
    b.click_button("Next").await;
    b.find(Locator::XPath("//*[normalize-space(text())='High Quality']"), "the index settings", long).await;
    b.shot("knowledge-settings").await;
    b.click_button("Save & Process").await;
    b.click_xpath("//*[self::button or self::a][normalize-space(.)='Go to document']", "Go to document").await;
    b.find(Locator::XPath("//*[normalize-space(text())='Available']"), "the document indexed (Available)", long).await;
    b.shot("knowledge-indexed").await
}

/// Sends `question` from a web app's message box and waits until the model's reply shows (`what` names it).
async fn ask(b: &mut browser::Browser, message_box: &fantoccini::elements::Element, question: &str, what: &str) {
    message_box.send_keys(question).await.unwrap();
    message_box.send_keys(&String::from(char::from(fantoccini::key::Key::Enter))).await.unwrap();
    let reply = format!("//*[contains(normalize-space(.), '{}')]", model_server::REPLY);
    b.find(Locator::XPath(&reply), what, Duration::from_secs(90)).await;
}

/// A chatbot whose context is the knowledge base (Orchestrate > Knowledge > Add), published, asked about the
/// document in its web app. Returns the answer's text (the page's line that holds the model's reply) and its
/// screenshot.
async fn knowledge_chat(b: &mut browser::Browser, url: &str) -> (String, PathBuf) {
    let long = Duration::from_secs(90);
    b.goto(&format!("{url}/apps")).await;
    b.find(Locator::XPath("//*[normalize-space(.)='Create from Blank']"), "the app list", long).await;
    let app_id = create_chatbot(b, "Harness knowledge chat").await;
    b.click_xpath(
        "//*[normalize-space(text())='Knowledge']/following::*[normalize-space(.)='Add'][1]",
        "Knowledge > Add",
    )
    .await;
    b.find(Locator::XPath("//*[normalize-space(text())='Select reference Knowledge']"), "the knowledge picker", long)
        .await;
    // An entry of the list (a button from 1.14, a div before): its name, whose click reaches the entry.
    b.click_xpath(
        "//*[normalize-space(text())='Select reference Knowledge']/following::*[contains(normalize-space(text()), \
         'harness-ledger')]",
        "the knowledge base",
    )
    .await;
    b.shot("knowledge-picked").await;
    b.click_xpath(
        "//*[normalize-space(text())='Select reference Knowledge']/following::button[normalize-space(.)='Add']",
        "the picker's Add",
    )
    .await;
    b.find(
        Locator::XPath("//*[contains(normalize-space(text()), 'harness-ledger')]"),
        "the knowledge in the app",
        long,
    )
    .await;
    b.shot("knowledge-in-app").await;
    open_published_chat(b, url, &app_id).await;
    let message_box = b.find(Locator::Css("textarea"), "the knowledge chat's message box", long).await;
    let question = "What is the vault code in the harness ledger?";
    ask(b, &message_box, question, "the model's reply in the knowledge chat").await;
    // The reply streams a word at a time: wait until it stops growing.
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = b.client.execute("return document.body.innerText", vec![]).await.unwrap();
        let text = text.as_str().unwrap_or_default().to_string();
        if text == last {
            break;
        }
        last = text;
    }
    let shot = b.shot("knowledge-answer").await;
    let answer = last.lines().find(|l| l.contains(model_server::REPLY)).unwrap_or_default().to_string();
    (answer, shot)
}

/// Publishes the chat app whose orchestration page is open, then opens its web app.
async fn open_published_chat(b: &mut browser::Browser, url: &str, app_id: &str) {
    publish(b).await;
    let code = site_code(b, app_id).await;
    b.goto(&format!("{url}/chat/{code}")).await;
}

/// Publish > Publish Update, on an app's orchestration page: its web app serves what the page shows.
async fn publish(b: &mut browser::Browser) {
    b.click_button("Publish").await;
    // The menu's button holds the label beside its keyboard shortcut.
    b.click_xpath("//button[.//span[normalize-space(.)='Publish Update']]", "Publish Update").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// An `<img>` of the page as the browser holds it.
#[derive(Debug)]
pub struct ShownImage {
    pub src: String,
    /// 0 when the browser could not decode what `src` gave it.
    pub natural_width: u64,
}

/// The image chat: the picture the test sent, what the page showed before and after sending, and the screenshots.
pub struct ImageChat {
    pub png: Vec<u8>,
    /// The preview in the message box, before sending.
    pub attached: ShownImage,
    pub attached_shot: PathBuf,
    /// The sent message's image, once the conversation is loaded from the api (the page reloaded).
    pub sent: ShownImage,
    pub shot: PathBuf,
}

/// The app's orchestration page: Vision on (the model supports it), published. Its web app: the paperclip, Local
/// upload, a small PNG; the preview shows in the message box; a question sent with it. The page is then reloaded,
/// so that the conversation, and the image's address, come from the api.
async fn image_chat(b: &mut browser::Browser, url: &str, app_id: &str, dir: &Path) -> ImageChat {
    let long = Duration::from_secs(90);
    let png = tiny_png(24, 16);
    let file = dir.join("harness-image.png");
    std::fs::write(&file, &png).unwrap();
    b.goto(&format!("{url}/app/{app_id}/configuration")).await;
    // The switch shows once the page has the LLM list; one load in a test run never asked the api for it.
    let vision = b
        .find_reloading(
            Locator::XPath("//*[normalize-space(text())='Vision']/following::*[@role='switch'][1]"),
            "the Vision switch (the model supports vision)",
            Duration::from_secs(30),
            3,
        )
        .await;
    if vision.attr("aria-checked").await.ok().flatten().as_deref() != Some("true") {
        // The page's loading cover may still lie over it for a moment.
        b.click_element(&vision, "the Vision switch").await;
    }
    b.find(
        Locator::XPath("//*[normalize-space(text())='Vision']/following::*[@role='switch'][1][@aria-checked='true']"),
        "Vision on",
        long,
    )
    .await;
    b.shot("vision-on").await;
    open_published_chat(b, url, app_id).await;
    // A conversation keeps the app's configuration it began with: Vision applies to a new one.
    b.click_text("Start New chat").await;
    let send = "//button[@data-testid='send-button' or @aria-label='Send']";
    b.find(Locator::XPath(send), "the web app's send button", long).await;
    // The paperclip beside Send opens Paste file link / Local upload; the file input lies over Local upload.
    b.click_xpath(&format!("{send}/preceding-sibling::div//button"), "the attachment button").await;
    b.find(Locator::XPath("//button[normalize-space(.)='Local upload']"), "Local upload", long).await;
    b.upload("input[type='file'][accept*='png']", &file).await;
    // The preview comes from the browser's own copy of the file (FileReader); the upload runs beside it, with a
    // progress overlay on the preview until the api has the file.
    let preview = "const img = [...document.querySelectorAll('img')].find(i => i.src.startsWith('data:image'));
         if (!img) return null;
         const overlay = [...img.parentElement.parentElement.querySelectorAll(
           '.bg-background-overlay-alt, .bg-background-overlay-destructive')].some(o => o.offsetParent !== null);
         return {src: img.src, width: img.complete ? img.naturalWidth : 0, uploading: overlay};";
    let attached = wait_for_image(b, preview, "the image's preview in the message box, uploaded").await;
    // A click in the message box closes the upload menu.
    let message_box = b.find(Locator::Css("textarea"), "the web app's message box", long).await;
    b.click_element(&message_box, "the message box").await;
    let attached_shot = b.shot("chat-image-attached").await;
    // A new conversation: the only reply on the page is this one's.
    ask(b, &message_box, "What is in this picture?", "the model's reply to the image").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Reloaded: the web app loads its conversation from the api, and the sent image's address with it.
    b.client.refresh().await.unwrap();
    let sent = "const img = [...document.querySelectorAll('img')].find(i => i.src.includes('/files/'));
         if (!img) return null;
         img.scrollIntoView({block: 'center'});
         return {src: img.src, width: img.complete ? img.naturalWidth : 0, uploading: false};";
    let sent = wait_for_image(b, sent, "the sent image in the reloaded conversation").await;
    // The conversation as a person sees it again: the question beside the image, and the model's answer.
    // The question shows beside the image (the sidebar names the conversation with the same words, far to the left).
    let beside = "const img = [...document.querySelectorAll('img')].find(i => i.src.includes('/files/'));
         const at = img.getBoundingClientRect();
         return [...document.querySelectorAll('*')]
           .filter(e => e.children.length === 0 && e.textContent.trim() === 'What is in this picture?')
           .map(e => e.getBoundingClientRect())
           .some(r => r.width > 0 && Math.abs(r.left - at.left) < 300 && Math.abs(r.top - at.bottom) < 150);";
    let deadline = Instant::now() + long;
    while b.client.execute(beside, vec![]).await.ok() != Some(serde_json::Value::Bool(true)) {
        if Instant::now() > deadline {
            b.give_up("the question never showed beside the sent image in the reloaded conversation".into()).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reply = format!("//*[contains(normalize-space(.), '{}')]", model_server::REPLY);
    b.find(Locator::XPath(&reply), "the model's answer in the reloaded conversation", long).await;
    let shot = b.shot("chat-image").await;
    ImageChat { png, attached, attached_shot, sent, shot }
}

/// Waits until `script` finds its image loaded (or broken: complete with no width) and no longer uploading.
async fn wait_for_image(b: &mut browser::Browser, script: &str, what: &str) -> ShownImage {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = b.client.execute(script, vec![]).await.unwrap_or_default();
        if let Some(src) = found["src"].as_str()
            && found["uploading"] == false
            && (found["width"].as_u64().unwrap_or(0) > 0 || Instant::now() > deadline)
        {
            return ShownImage { src: src.to_string(), natural_width: found["width"].as_u64().unwrap_or(0) };
        }
        if Instant::now() > deadline {
            b.give_up(format!("{what} never appeared")).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A `width`×`height` PNG of four coloured quarters: 8-bit RGB, one stored (uncompressed) deflate block.
fn tiny_png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!0u32, |crc, &b| {
            (0..8).fold(crc ^ u32::from(b), |c, _| if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 })
        })
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let quarter = (u32::from(y >= height / 2) << 1) | u32::from(x >= width / 2);
            raw.extend([[230, 60, 40], [40, 160, 80], [40, 90, 220], [250, 200, 30]][quarter as usize]);
        }
    }
    let len = raw.len() as u16;
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend(len.to_le_bytes());
    zlib.extend((!len).to_le_bytes());
    zlib.extend(&raw);
    let (a, b) = raw.iter().fold((1u32, 0u32), |(a, b), &x| {
        let a = (a + u32::from(x)) % 65521;
        (a, (b + a) % 65521)
    });
    zlib.extend(((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// What the document's Download action gave: the signed address the console made, and what it answered.
pub struct DocumentDownload {
    pub url: String,
    pub status: u64,
    pub body: String,
    pub shot: PathBuf,
}

/// On the knowledge base's document list: the document's ··· menu > Download. The page asks the console for a
/// signed address of the file and hands it to a download link; the test keeps that address instead of saving a
/// file, and fetches it from the page, as the download would.
async fn download_document(b: &mut browser::Browser) -> DocumentDownload {
    let keep = "window.__downloads = [];
         HTMLAnchorElement.prototype.click = function () { window.__downloads.push(this.href); };";
    b.client.execute(keep, vec![]).await.expect("keeping the page's download links");
    b.click_xpath(
        "(//tr[.//*[contains(normalize-space(text()), 'harness-ledger')]]//button)[last()]",
        "the document's ··· menu",
    )
    .await;
    b.find(
        Locator::XPath("//*[normalize-space(.)='Download']"),
        "the document's Download action",
        Duration::from_secs(30),
    )
    .await;
    // The menu fades in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shot = b.shot("knowledge-download").await;
    b.click_text("Download").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let links = b.client.execute("return window.__downloads", vec![]).await.unwrap_or_default();
        if let Some(url) = links[0].as_str() {
            break url.to_string();
        }
        if Instant::now() > deadline {
            b.give_up("Download never gave the document's address".into()).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let fetch = format!(
        "const done = arguments[0];
         fetch({url:?}, {{credentials: 'include'}})
           .then(async r => done({{status: r.status, body: await r.text()}}))
           .catch(e => done({{status: 0, body: String(e)}}));"
    );
    let got = b.run_async(&fetch).await;
    DocumentDownload {
        url,
        status: got["status"].as_u64().unwrap_or(0),
        body: got["body"].as_str().unwrap_or_default().to_string(),
        shot,
    }
}

/// What the sandbox workflow showed in its web app: the Code node's outputs.
pub struct SandboxRun {
    pub squares: String,
    pub private: String,
    pub allowed: String,
    pub shot: PathBuf,
}

/// Import the sandbox workflow (a DSL file, as a user imports one), publish it, and run it in its web app: its Code
/// node runs in the sandbox and asks `targets` (a private address, and one the allow-list admits) for a page
/// through the SSRF proxy.
async fn run_sandbox_workflow(
    b: &mut browser::Browser,
    url: &str,
    targets: (&str, &str),
    dir: &Path,
    sandbox_log: &Path,
) -> SandboxRun {
    let long = Duration::from_secs(90);
    // The sandbox answers its probes at once and builds the jail for Python snippets afterwards (copying the
    // interpreter's library into it); a snippet run before that ends with exit 255. No probe of the chart can see
    // it, so the test waits for the sandbox's own log line.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(sandbox_log).unwrap_or_default().contains("python dependencies sandbox initialized")
    {
        assert!(Instant::now() < deadline, "the sandbox never built its Python jail: see {}", sandbox_log.display());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let dsl = std::fs::read_to_string(root().join("tests/dify/fixtures/sandbox-workflow.yml")).unwrap();
    let file = dir.join("sandbox-workflow.yml");
    std::fs::write(&file, dsl.replace("TARGET_URL", targets.0).replace("ALLOWED_URL", targets.1)).unwrap();
    b.goto(&format!("{url}/apps")).await;
    b.find(Locator::XPath("//*[contains(normalize-space(.),'Harness chat')]"), "the app list", long).await;
    b.click_text("Import DSL file").await;
    b.upload("input#fileUploader", &file).await;
    b.shot("import-dsl").await;
    b.click_button("Create").await;
    b.wait_url("/workflow", long).await;
    let app_url = b.url().await;
    let app_id = app_id_in(&app_url);
    b.find(Locator::XPath("//*[normalize-space(text())='Sandbox']"), "the imported Code node", long).await;
    b.shot("workflow-imported").await;
    publish(b).await;
    b.find(
        Locator::XPath("//*[normalize-space(text())='Published' or starts-with(normalize-space(.), 'Published ')]"),
        "the published state",
        long,
    )
    .await;
    let code = site_code(b, &app_id).await;
    b.goto(&format!("{url}/workflow/{code}")).await;
    b.click_button("Execute").await;
    // The result panel shows the outputs (in an editor whose text is split into spans): read the page's text. On a
    // loaded machine the run's event stream has once ended early, leaving the page at "Running" although the
    // sandbox had answered: a second Execute is allowed, and says so, before the step fails.
    let mut deadline = Instant::now() + long;
    let mut executed = 1;
    let body = loop {
        let text = b.client.execute("return document.body.innerText", vec![]).await.unwrap();
        let text = text.as_str().unwrap_or_default().to_string();
        if text.contains("private=") && text.contains("allowed=") {
            break text;
        }
        if Instant::now() > deadline {
            if executed == 2 {
                b.give_up("the workflow's outputs never appeared, in two runs".into()).await;
            }
            let stalled = b.shot("sandbox-workflow-stalled").await;
            eprintln!("dify: the workflow's outputs never appeared ({}); executing it again", stalled.display());
            b.click_button("Execute").await;
            (executed, deadline) = (2, Instant::now() + long);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let shot = b.shot("sandbox-workflow-result").await;
    let field = |name: &str| {
        body.split(['"', '\n'])
            .find(|t| t.starts_with(name))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {name} in the workflow's output; {}", shot.display()))
    };
    SandboxRun {
        squares: field("squares="),
        private: field("private="),
        allowed: field("allowed="),
        shot: shot.clone(),
    }
}

/// The app id in a console URL (`…/app/<id>/configuration`), or an empty string.
fn app_id_in(url: &str) -> String {
    url.split("/app/").nth(1).and_then(|s| s.split('/').next()).unwrap_or_default().to_string()
}

/// The web app code of app `app_id`, asked of the console API with the page's session (as the app's overview
/// shows it).
async fn site_code(b: &browser::Browser, app_id: &str) -> String {
    let script = format!(
        "const done = arguments[0];
         const csrf = (document.cookie.match(/csrf_token=([^;]+)/) || [])[1] || '';
         fetch('/dify/console/api/apps/{app_id}', {{credentials: 'include', headers: {{'X-CSRF-Token': csrf}}}})
           .then(r => r.json()).then(j => done(j)).catch(e => done({{error: String(e)}}));"
    );
    let app = b.run_async(&script).await;
    app["site"]["access_token"]
        .as_str()
        .or(app["site"]["code"].as_str())
        .unwrap_or_else(|| panic!("the console API gave no site code for the app: {app}"))
        .to_string()
}

async fn sign_in(b: &mut browser::Browser, email: &str, password: &str) {
    let long = Duration::from_secs(90);
    b.find(Locator::Css("input#email"), "the sign-in form", long).await;
    b.shot("signin").await;
    b.fill("input#email", email).await;
    b.fill("input#password", password).await;
    b.click_text("Sign in").await;
}
