//! The server workload, shared by `server_load` (over the default ledger), `server_load_bare`
//! (bare jemalloc) and `server_load_trailer` (a trailer on every block): an axum server on tokio's
//! multi-thread runtime and client threads that load it over keep-alive HTTP/1.1 connections, as
//! a service under load is.
//!
//! - `POST /documents`: the body, a JSON document (`{"id", "title", "words"}`), is parsed with
//!   serde_json in the scope `requests`, its words go into a shared inverted index in the scope
//!   `index`, and the reply is a small JSON summary built in `requests`;
//! - `POST /search`: the body is a word; the reply lists the ids of up to 50 documents with it.
//!
//! [`CLIENTS`] threads send [`REQUESTS`] requests each, one in five a search. The request bodies are
//! built on the client threads and the replies freed there; the documents' words are parsed and
//! indexed on tokio's workers, which also free the parsed documents: memory crosses threads both
//! ways, as in a service.
//!
//! Prints one line: wall time in milliseconds, the process's peak RSS, its RSS at the end (the
//! index still held) and the mean and maximum of its RSS read every 100 ms over the run, in KiB,
//! and the distinct words and postings indexed (the same in every build, a check that the work is
//! the same).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use memledger_examples::{rss_kib, Rng, RssOverRun};

/// Client threads, each on a connection of its own.
const CLIENTS: usize = 4;
/// Requests each client sends.
const REQUESTS: usize = 20_000;
/// Distinct words the documents draw from.
const VOCABULARY: u64 = 20_000;

type Index = Arc<Mutex<HashMap<String, Vec<u32>>>>;

/// `POST /documents`: parses the document, indexes its words, replies with a summary.
async fn add(State(index): State<Index>, body: Bytes) -> String {
    let (id, words) = memledger::in_scope("requests", || {
        let document: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = document["id"].as_u64().unwrap_or(0) as u32;
        let words: Vec<String> = document["words"]
            .as_array()
            .map(|words| {
                words
                    .iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (id, words)
    });
    let count = words.len();
    memledger::in_scope("index", || {
        let mut index = index.lock().expect("the index's lock");
        for word in words {
            index.entry(word).or_default().push(id);
        }
    });
    memledger::in_scope("requests", || format!("{{\"id\":{id},\"words\":{count}}}"))
}

/// `POST /search`: the ids of up to 50 documents that have the word in the body.
async fn search(State(index): State<Index>, body: String) -> String {
    let ids: Vec<u32> = {
        let index = index.lock().expect("the index's lock");
        index
            .get(body.as_str())
            .map(|ids| ids.iter().rev().take(50).copied().collect())
            .unwrap_or_default()
    };
    memledger::in_scope("requests", || {
        serde_json::to_string(&ids).unwrap_or_default()
    })
}

/// One client: [`REQUESTS`] requests over one keep-alive connection, each reply read whole.
fn client(addr: SocketAddr, me: usize) {
    let stream = TcpStream::connect(addr).expect("the server listens");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
    let mut writer = stream;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (me as u64 + 1));
    let mut line = String::new();
    for i in 0..REQUESTS {
        let (path, body) = if i % 5 == 4 {
            ("/search", format!("w{}", rng.next() % VOCABULARY))
        } else {
            let id = me * REQUESTS + i;
            let words: Vec<String> = (0..8 + rng.next() % 32)
                .map(|_| format!("w{}", rng.next() % VOCABULARY))
                .collect();
            let document = serde_json::json!({
                "id": id,
                "title": format!("document {id}"),
                "words": words,
            });
            ("/documents", document.to_string())
        };
        write!(
            writer,
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("the request is sent");
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("a reply");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("a length");
                }
            }
        }
        let mut reply = vec![0u8; length];
        reader.read_exact(&mut reply).expect("the reply's body");
        std::hint::black_box(reply);
    }
}

pub fn run() {
    let start = Instant::now();
    let over_the_run = RssOverRun::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let index = Index::default();
    let app = Router::new()
        .route("/documents", post(add))
        .route("/search", post(search))
        .with_state(index.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let addr = listener.local_addr().expect("the port");
    runtime.spawn(async move { axum::serve(listener, app).await });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|me| std::thread::spawn(move || client(addr, me)))
        .collect();
    for client in clients {
        client.join().expect("a client finished");
    }
    let wall = start.elapsed();
    let (words, postings) = {
        let index = index.lock().expect("the index's lock");
        (index.len(), index.values().map(Vec::len).sum::<usize>())
    };
    let (rss_mean, rss_max) = over_the_run.stop();
    let (peak, rss) = rss_kib();
    println!(
        "wall_ms={} peak_rss_kib={peak} rss_kib={rss} rss_mean_kib={rss_mean} \
         rss_max_kib={rss_max} words={words} postings={postings}",
        wall.as_millis()
    );
    runtime.shutdown_background();
}
