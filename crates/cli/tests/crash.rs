//! Crash safety of download tasks: the real `mongobak serve` is killed
//! (SIGKILL) at random moments while it packages, ten times over, and
//! restarted on the same data folder each time. Every task must still end
//! done with a file that holds exactly the source's documents, and no URL
//! handed out on the way may ever have led to a partial file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mongobak_archive::{gunzip, ArchiveReader};
use mongobak_blob::BlobStore;
use mongobak_testkit::snapshot::snapshot;
use mongobak_testkit::MongoServer;
use rand::Rng;
use serde_json::Value;

const INSTANCE: &str = "cmgo-crsh0001";
/// Documents of 100 KB of random bytes: a file of 13 MB, which reaches the
/// storage in 4 MiB chunks over the last third of a run, so some kills cut
/// a file in the middle. Packaging one backup alone takes about 5 s in a
/// debug build on two cores.
const DOCUMENTS: usize = 130;
const DOCUMENT_BYTES: usize = 100_000;
const ROUNDS: usize = 10;
/// Unfinished tasks kept in the queue during the rounds. One worker packages
/// one at a time, so a run is not slowed by another and some finish between
/// kills; a restarted process claims a waiting task at once, and takes the
/// killed ones back once their leases have expired.
const QUEUED: usize = 3;

/// What the test knows about the files handed out.
#[derive(Default)]
struct Seen {
    /// SHA-256 and size of each done task's file, by task id.
    files: BTreeMap<u64, (String, u64)>,
    /// Every URL handed out, with its task and the server process
    /// (generation) that signed it.
    urls: BTreeMap<String, (u64, usize)>,
}

impl Seen {
    /// Records the tasks of a Describe by server process `generation`;
    /// fetches the URL of a task seen done for the first time and checks
    /// the bytes behind it.
    async fn record(&mut self, http: &Http, generation: usize, tasks: &[Value]) {
        for task in tasks {
            let status = task["Status"].as_i64().unwrap();
            assert_ne!(status, 3, "a task failed: {task}");
            let url = task["Url"].as_str().unwrap();
            if status != 2 {
                assert_eq!(url, "", "a URL before the file is done: {task}");
                assert_eq!(task["BackupSize"], 0, "{task}");
                continue;
            }
            let id = task_id(url);
            let sha = task["SHA256"].as_str().unwrap().to_string();
            let size = task["BackupSize"].as_u64().unwrap();
            match self.files.get(&id) {
                Some(known) => {
                    assert_eq!(known, &(sha.clone(), size), "task {id} changed its file")
                }
                None => {
                    let fetched = http.get(url).await.expect("the download answers");
                    assert_eq!(fetched.status, 200, "{url}");
                    assert_eq!(
                        (sha256(&fetched.body), fetched.body.len() as u64),
                        (sha.clone(), size),
                        "the file behind {url} is not the one described"
                    );
                    self.files.insert(id, (sha, size));
                }
            }
            self.urls.insert(url.to_string(), (id, generation));
        }
    }
}

/// The task id in a download URL (`/download/<id>/<name>`).
fn task_id(url: &str) -> u64 {
    url.split("/download/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no task id in {url}"))
}

/// The task ids a server process started packaging, from its log.
fn claims(log: &Path) -> Vec<u64> {
    log_lines(log)
        .iter()
        .filter(|l| message(l) == "packaging started")
        .filter_map(|l| l["fields"]["task_id"].as_u64())
        .collect()
}

/// The tasks a server process is packaging: started and not yet ended,
/// by its log.
fn packaging(log: &Path) -> BTreeSet<u64> {
    let mut running = BTreeSet::new();
    for line in log_lines(log) {
        let Some(id) = line["fields"]["task_id"].as_u64() else {
            continue;
        };
        match message(&line) {
            "packaging started" => running.insert(id),
            // Done, failed, or given up for a lost lease.
            m if m.starts_with("packaging ") || m.starts_with("lease lost") => running.remove(&id),
            _ => false,
        };
    }
    running
}

/// The median length of the runs that ended in these logs (the machine's
/// load decides it, so it is measured as the test goes).
fn typical_run(logs: &[PathBuf]) -> Duration {
    let mut seconds: Vec<f64> = logs
        .iter()
        .flat_map(|log| log_lines(log))
        .filter(|l| message(l) == "packaging done")
        .filter_map(|l| l["fields"]["seconds"].as_f64())
        .collect();
    seconds.sort_by(f64::total_cmp);
    Duration::from_secs_f64(seconds[seconds.len() / 2])
}

/// Checks, while no server runs, that every object in the store's download
/// folder is a whole archive: objects appear only complete, so a kill can
/// leave nothing partial there. `verified` remembers files already read.
async fn check_store(store: &BlobStore, verified: &mut BTreeSet<String>) {
    for file in objects_under(store, "downloads/").await {
        if verified.contains(&file) {
            continue;
        }
        let bytes = store.get(&file).await.expect("a listed object reads");
        if let Err(e) = ArchiveReader::verify(gunzip(&bytes[..])) {
            panic!(
                "a partial file in the store after a kill: {file} ({} bytes): {e}",
                bytes.len()
            );
        }
        verified.insert(file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaging_survives_kill_9_at_random_moments() {
    let started = Instant::now();
    let mongo = MongoServer::start().await;
    insert_random(&mongo.client(), "crash", "docs", DOCUMENTS, DOCUMENT_BYTES).await;
    let expected = snapshot(&mongo.client()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = store_of(dir.path(), &data);
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(
            &data,
            INSTANCE,
            &mongo.uri(),
            "[downloads]\nlease_secs = 5\nworkers = 1\n",
        ),
    )
    .unwrap();
    let log = |generation: usize| dir.path().join(format!("serve-{generation}.log"));
    let http = root_http();
    let mut generation = 0;
    let mut server = Mongobak::start(&config_path, &log(generation));
    let mut seen = Seen::default();

    // One uninterrupted task first: how long packaging takes here.
    let first = take_backup(&http, server.addr, INSTANCE).await;
    create_task(&http, server.addr, INSTANCE, &first).await;
    eventually(Duration::from_secs(60), "the first task", || async {
        let tasks = tasks(&http, server.addr, INSTANCE).await;
        (tasks[0]["Status"] == 2).then_some(())
    })
    .await;
    eprintln!("packaging one backup: {:?}", typical_run(&[log(0)]));

    let mut verified = BTreeSet::new();
    let mut backups = vec![first];
    for round in 1..=ROUNDS {
        // Keep work queued: a new backup and task for each one finished.
        loop {
            let tasks = tasks(&http, server.addr, INSTANCE).await;
            seen.record(&http, generation, &tasks).await;
            if tasks.iter().filter(|t| t["Status"] != 2).count() >= QUEUED {
                break;
            }
            let backup = take_backup(&http, server.addr, INSTANCE).await;
            create_task(&http, server.addr, INSTANCE, &backup).await;
            backups.push(backup);
        }
        // Wait until this process packages a task (a claim in its log, the
        // task at Status 1), then let it run for a random while.
        let deadline = Deadline::after("a task being packaged", Duration::from_secs(30));
        let claimed = loop {
            let ids = packaging(&server.log);
            if !ids.is_empty() {
                let tasks = tasks(&http, server.addr, INSTANCE).await;
                seen.record(&http, generation, &tasks).await;
                if tasks.iter().any(|t| t["Status"] == 1) {
                    break ids;
                }
            }
            deadline.tick().await;
        };
        // Anywhere from the claim to a little after a typical run would
        // have ended: early, mid-stream, near the publish, or just after.
        let logs: Vec<PathBuf> = (0..=generation).map(log).collect();
        let window = typical_run(&logs) * 6 / 5;
        let delay = rand::rng().random_range(Duration::ZERO..window);
        // The pause is the point: the kill lands at a random moment.
        tokio::time::sleep(delay).await;
        let tasks = tasks(&http, server.addr, INSTANCE).await;
        seen.record(&http, generation, &tasks).await;
        server.kill();
        let partial: Vec<u64> = files_under(&data.join("blobs.tmp"))
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .collect();
        eprintln!(
            "round {round}: killed {delay:?} after the claim of tasks {claimed:?}; packaging then: {:?}; \
             {} of {} tasks done; temporary files: {partial:?} bytes",
            packaging(&server.log),
            tasks.iter().filter(|t| t["Status"] == 2).count(),
            tasks.len()
        );
        check_store(&store, &mut verified).await;
        generation += 1;
        server = Mongobak::start(&config_path, &log(generation));
    }
    let rounds_took = started.elapsed();

    // After the last restart every task ends done, its file whole.
    let deadline = Deadline::after("every task done", Duration::from_secs(120));
    let tasks = loop {
        let tasks = tasks(&http, server.addr, INSTANCE).await;
        seen.record(&http, generation, &tasks).await;
        if tasks.iter().all(|t| t["Status"] == 2) {
            break tasks;
        }
        deadline.tick().await;
    };
    assert_eq!(tasks.len(), backups.len(), "one task per backup");
    let mut files = BTreeMap::new();
    let mut checked = BTreeSet::new();
    for task in &tasks {
        let url = task["Url"].as_str().unwrap();
        let file = http.get(url).await.expect("the download answers");
        assert_eq!(file.status, 200, "{url}");
        let sha = sha256(&file.body);
        assert_eq!(task["SHA256"], sha, "{task}");
        assert_eq!(file.headers["etag"], format!("\"{sha}\"").as_str());
        assert_eq!(task["BackupSize"], file.body.len() as u64, "{task}");
        // Files of the same bytes need reading once.
        if checked.insert(sha) {
            if let Err(problem) = check_archive(&file.body, &expected) {
                panic!("the file of {task} is wrong: {problem}");
            }
        }
        files.insert(task_id(url), file.body);
    }
    // Every URL handed out during the rounds, asked of the last process:
    // refused, or the complete file described then. The first URL of each
    // task and process is read whole; the others (the same path, signed
    // for a later expiry) for their last KiB, under the file's ETag.
    let mut read_whole = BTreeSet::new();
    for (url, (id, handed_out_by)) in &seen.urls {
        let url = on_server(url, server.addr);
        let file = &files[id];
        let whole = read_whole.insert((*id, *handed_out_by));
        let etag = format!("\"{}\"", seen.files[id].0);
        let fetched = match whole {
            true => http.get(&url).await,
            false => {
                let range = [("range", "bytes=-1024"), ("if-range", etag.as_str())];
                http.get_with(&url, &range).await
            }
        }
        .expect("the download answers");
        match (fetched.status, whole) {
            (200, true) => assert!(
                fetched.body == file,
                "task {id}: the URL of process {handed_out_by} gives {} other bytes",
                fetched.body.len()
            ),
            (206, false) => {
                let tail = file.len() - 1024;
                assert_eq!(
                    fetched.headers["content-range"],
                    format!("bytes {tail}-{}/{}", file.len() - 1, file.len()).as_str(),
                    "{url}"
                );
                assert!(
                    fetched.body == file[tail..],
                    "task {id}: another tail at {url}"
                );
            }
            (403 | 404 | 410, _) => {}
            (other, _) => panic!("task {id}: status {other} for {url}"),
        }
    }
    server.kill();
    check_store(&store, &mut verified).await;

    let all_claims: Vec<u64> = (0..=generation).flat_map(|g| claims(&log(g))).collect();
    let published = objects_under(&store, "downloads/").await;
    let leftovers = files_under(&data.join("blobs.tmp"));
    eprintln!(
        "{ROUNDS} kills in {rounds_took:?}, {:?} in all; {} tasks, {} claims ({:?}); {} URLs checked; \
         {} files under downloads/ for {} tasks; {} temporary files left in blobs.tmp ({} bytes)",
        started.elapsed(),
        tasks.len(),
        all_claims.len(),
        all_claims,
        seen.urls.len(),
        published.len(),
        tasks.len(),
        leftovers.len(),
        leftovers
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum::<u64>()
    );
}
