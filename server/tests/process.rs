//! meshcached as a process: its configuration (file, environment, flags; mistakes exit 2
//! with a message), SIGTERM, the sample config file, and the README's curl examples.

mod common;

use std::time::Duration;

use common::{Node, Origin, Start};

const MINIMAL: &str = r#"
listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[[groups]]
name = "g"
"#;

async fn refused(config: &str, args: &[&str]) -> String {
    let opts = Start {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Start::default()
    };
    let Err(f) = Node::start_with(config, opts).await else {
        panic!("meshcached started with a bad configuration:\n{config}\n{args:?}");
    };
    assert_eq!(f.status.code(), Some(2), "{}", f.stderr);
    assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
    f.stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_exits_2_with_a_message_naming_what_is_wrong() {
    let e = refused(&format!("{MINIMAL}capacityy = \"1MiB\"\n"), &[]).await;
    assert!(e.contains("capacityy"), "{e}");
    let e = refused(&format!("listne = \"x\"\n{MINIMAL}"), &[]).await;
    assert!(e.contains("listne"), "{e}");
    let e = refused(&format!("{MINIMAL}capacity = \"lots\"\n"), &[]).await;
    assert!(e.contains("lots"), "{e}");
    let e = refused(&format!("{MINIMAL}[groups.origin]\nurl = \"http://h/\"\n"), &[]).await;
    assert!(e.contains("{key}"), "{e}");
    let e = refused("this is not toml", &[]).await;
    assert!(e.contains("meshcached.toml"), "{e}");
    let e = refused(MINIMAL, &["--membership", "zookeeper://x"]).await;
    assert!(e.contains("membership"), "{e}");
    let e = refused(MINIMAL, &["--listen", "not an address"]).await;
    assert!(e.contains("not an address"), "{e}");
    let e = refused(MINIMAL, &["--token-file", "/nonexistent/token"]).await;
    assert!(e.contains("/nonexistent/token"), "{e}");
    let e = refused(MINIMAL, &["--no-such-flag"]).await;
    assert!(e.contains("--no-such-flag"), "{e}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshcached"))
        .args(["--config", "/nonexistent/meshcached.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("/nonexistent/meshcached.toml"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_the_environment_which_beats_the_file() {
    let config = format!("http_token = \"from-file\"\n{MINIMAL}");
    let env_only = Start {
        env: vec![("MESHCACHE_HTTP_TOKEN", "from-env".into())],
        ..Start::default()
    };
    let node = Node::start_with(&config, env_only).await.unwrap();
    let path = "/v1/groups/g/keys/k";
    node.client(Some("from-file"))
        .get(path)
        .await
        .problem(401, "Unauthorized");
    node.client(Some("from-env"))
        .get(path)
        .await
        .problem(404, "NotFound");
    drop(node);

    let both = Start {
        env: vec![("MESHCACHE_HTTP_TOKEN", "from-env".into())],
        args: vec!["--http-token".into(), "from-flag".into()],
    };
    let node = Node::start_with(&config, both).await.unwrap();
    node.client(Some("from-env"))
        .get(path)
        .await
        .problem(401, "Unauthorized");
    node.client(Some("from-flag"))
        .get(path)
        .await
        .problem(404, "NotFound");
    drop(node);

    // JSON logs on stderr, the ready line alone on stdout.
    let json = Start {
        env: vec![("MESHCACHE_LOG_FORMAT", "json".into())],
        ..Start::default()
    };
    let node = Node::start_with(MINIMAL, json).await.unwrap();
    let (status, stderr) = node.signal_and_wait("TERM", common::BOUND).await;
    assert!(status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = (stderr.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |m: &str| events.iter().any(|e| e["fields"]["message"] == m);
    assert!(said("meshcached ready") && said("meshcached stopped"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_drain_and_exit_0() {
    for signal in ["TERM", "INT"] {
        let node = Node::start(MINIMAL).await;
        let c = node.client(None);
        assert_eq!(c.put("/v1/groups/g/keys/k", "v").await.status, 204);
        // An idle keep-alive connection must not hold the shutdown up.
        assert_eq!(c.get("/v1/groups/g/keys/k").await.status, 200);
        let http = node.http;
        let started = std::time::Instant::now();
        let (status, stderr) = node.signal_and_wait(signal, Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "SIG{signal}: {stderr}");
        assert!(stderr.contains(&format!("signal=\"SIG{signal}\"")), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            tokio::net::TcpStream::connect(http).await.is_err(),
            "still listening"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish() {
    let origin = Origin::start().await;
    let config = format!(
        "{MINIMAL}[groups.origin]\nurl = \"{}\"\ntimeout_ms = 1500\n",
        origin.url()
    );
    let node = Node::start(&config).await;
    let c = node.client(None);
    // A get waiting on an origin that does not answer (until the origin timeout).
    let in_flight = tokio::spawn(async move { c.get("/v1/groups/g/keys/hang-1").await });
    origin.wait_hits("hang-1", 1).await;
    let (status, stderr) = node.signal_and_wait("TERM", Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    // It got its answer (the origin's timeout, 502) rather than a closed connection.
    let r = in_flight.await.unwrap();
    r.problem(502, "Load");
}

/// The lines of the fenced blocks of `lang` in the README section titled `title`.
fn readme_blocks(readme: &str, title: &str, lang: &str) -> Vec<String> {
    let start = readme.find(&format!("\n{title}\n")).expect("README section");
    let section = &readme[start + 1..];
    let end = section[title.len()..]
        .find("\n## ")
        .map_or(section.len(), |e| e + title.len());
    let section = &section[..end];
    let mut blocks = Vec::new();
    let mut rest = section;
    let fence = format!("```{lang}\n");
    while let Some(at) = rest.find(&fence) {
        let body = &rest[at + fence.len()..];
        let close = body.find("```\n").expect("closed block");
        blocks.push(body[..close].to_string());
        rest = &body[close..];
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_config_and_the_readme_curl_examples_work() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/meshcached.toml")).unwrap();
    // The README shows the sample file as it is.
    let tomls = readme_blocks(&readme, "## meshcached", "toml");
    assert_eq!(
        tomls,
        std::slice::from_ref(&sample),
        "the README's config differs from server/meshcached.toml"
    );

    // The sample as shipped, on ports of the test's choosing (flags beat the file).
    let opts = Start {
        args: ["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec(),
        ..Start::default()
    };
    let node = Node::start_with(&sample, opts).await.unwrap();
    let scripts = readme_blocks(&readme, "## meshcached", "sh");
    let curl: Vec<&String> = scripts.iter().filter(|s| s.contains("curl")).collect();
    assert!(!curl.is_empty(), "no curl example in the README");
    let mut out = String::new();
    for script in curl {
        let script = script.replace("127.0.0.1:7080", &node.http.to_string());
        let run = tokio::process::Command::new("sh")
            .arg("-euc")
            .arg(&script)
            .kill_on_drop(true)
            .output();
        let run = tokio::time::timeout(common::BOUND, run).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "{script}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        out.push_str(&stdout);
    }
    let lines: Vec<&str> = out.lines().collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(lines.contains(&"hello"), "{out}");
    assert!(
        has(r#"{"missing":["bob"],"values":{"alice":"aGVsbG8="}}"#),
        "{out}"
    );
    assert!(has(r#""kind":"NotFound""#), "{out}");
    assert!(has(r#""kind":"Unauthorized""#), "{out}");
    assert!(lines.contains(&"ready"), "{out}");
    assert!(has(&format!(r#""node":"{}""#, node.peer)), "{out}");
    assert!(has("meshcache_gets_total"), "{out}");
}
