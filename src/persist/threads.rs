//! The persistence threads of a node (the background flusher and the
//! snapshot thread) and its INFO section.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::FLUSH_EVERY;
use crate::config::FsyncPolicy;
use crate::state::{InfoSection, Shared};
use crate::store::Db;

/// Starts the background flusher and snapshot threads of `shared`'s
/// persistent engine (none for an in-memory node).
pub fn spawn(shared: &Arc<Shared>) -> io::Result<Vec<JoinHandle<()>>> {
    if shared.persist.is_none() {
        return Ok(Vec::new());
    }
    let mut handles = Vec::new();
    let s = shared.clone();
    let stop = shared.shutdown.subscribe();
    handles.push(
        std::thread::Builder::new()
            .name("persist-flush".into())
            .spawn(move || {
                crate::failfast::checkpoint();
                let Some(p) = &s.persist else { return };
                let sync = p.policy() != FsyncPolicy::No;
                while stop.recv_timeout(FLUSH_EVERY).is_err() {
                    p.log.flush_all(sync);
                }
            })?,
    );
    let s = shared.clone();
    let stop = shared.shutdown.subscribe();
    handles.push(
        std::thread::Builder::new()
            .name("persist-snapshot".into())
            .spawn(move || {
                crate::failfast::checkpoint();
                let Some(p) = &s.persist else { return };
                while stop.recv_timeout(Duration::from_millis(200)).is_err() {
                    if p.should_snapshot() {
                        let _ = p.snapshot(&s.store, &|| s.shutdown.is_triggered());
                    }
                }
            })?,
    );
    Ok(handles)
}

/// `SAVE`: writes a snapshot on a thread of its own and answers
/// `responder` when it is done (`+OK`, or the snapshot's error).
pub fn save(shared: &Arc<Shared>, responder: crate::jobs::Responder) {
    let s = shared.clone();
    let slot = Arc::new(std::sync::Mutex::new(Some(responder)));
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("persist-save".into())
        .spawn(move || {
            crate::failfast::checkpoint();
            let result = match &s.persist {
                Some(p) => p
                    .snapshot(&s.store, &|| s.shutdown.is_triggered())
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Err("persistence is off".into()),
            };
            if let Some(r) = crate::sync::lock(&theirs).take() {
                r.respond(result);
            }
        });
    if let Err(e) = spawned
        && let Some(r) = crate::sync::lock(&slot).take()
    {
        r.respond(Err(format!("cannot start the snapshot: {e}")));
    }
}

/// The `persistence*` / `persist_*` lines of INFO.
pub struct PersistInfo;

impl InfoSection for PersistInfo {
    fn write_info(&self, shared: &Shared, _db: Db<'_>, s: &mut String) {
        match &shared.persist {
            Some(p) => p.write_info(s),
            None => s.push_str("persistence:0\r\n"),
        }
    }
}
