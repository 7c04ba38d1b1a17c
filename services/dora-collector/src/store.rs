//! Where acknowledged facts live: an append-only table with a unique de-duplication key.
//!
//! `SQLite` (bundled) is the embedded default for one replica; `PostgreSQL` serves replicas > 1
//! (every replica appends to and tails the same table). Both are used synchronously from the
//! collector's own store threads, so the async server never blocks on disk.

use std::time::Duration;

use crate::facts::Fact;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the store {url}: {message}")]
    Open { url: String, message: String },
    #[error("{operation} in the {backend} store: {message}")]
    Query {
        backend: &'static str,
        operation: &'static str,
        message: String,
    },
    #[error(
        "unsupported store URL {0:?}: use sqlite://<path> (one replica) or postgres://user@host/db"
    )]
    Url(String),
}

/// What one append stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub new: Vec<bool>,
    pub last_seq: Option<i64>,
}

/// One connection to the store. The writer thread appends; the tailer thread reads.
pub trait Store: Send {
    /// Appends the facts whose key is new, and records a delivery from each of `sources` at
    /// `received_at`, in one transaction; says for each fact whether it was new, and the highest
    /// sequence number given to a new one.
    fn append(
        &mut self,
        facts: &[Fact],
        received_at: f64,
        sources: &[&str],
    ) -> Result<Appended, StoreError>;
    /// The last committed delivery of each source, and `store-created`: when the store was set
    /// up (what staleness is measured from before the first delivery).
    fn deliveries(&mut self) -> Result<Vec<(String, f64)>, StoreError>;
    /// Keeps the aggregates as of sequence number `seq` (a newer checkpoint is kept instead).
    fn save_checkpoint(&mut self, seq: i64, body: &str) -> Result<(), StoreError>;
    /// The newest checkpoint: (sequence number, body).
    fn load_checkpoint(&mut self) -> Result<Option<(i64, String)>, StoreError>;
    /// Facts stored after sequence number `after`, in order, at most `limit`.
    fn read_after(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, Fact)>, StoreError>;
    /// The facts with these sequence numbers that exist now (the tailer's re-read of gaps).
    fn read_seqs(&mut self, seqs: &[i64]) -> Result<Vec<(i64, Fact)>, StoreError>;
    fn backend(&self) -> &'static str;
}

/// Opens a connection for a store URL (`sqlite://…`, `postgres://…` or `postgresql://…`); the
/// URL is never logged as given since a `PostgreSQL` URL may carry a password.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Box::new(Sqlite::open(path)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(Postgres::open(url)?));
    }
    Err(StoreError::Url(redact_url(url)))
}

/// A store URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:(sensitive){}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn encode(fact: &Fact) -> String {
    serde_json::to_string(fact).unwrap_or_default()
}

fn decode(backend: &'static str, text: &str) -> Result<Fact, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Query {
        backend,
        operation: "decoding a stored fact",
        message: e.to_string(),
    })
}

pub struct Sqlite {
    conn: rusqlite::Connection,
}

/// Held while a connection sets a file up. Switching a new file to WAL takes an exclusive lock,
/// and `SQLite` answers `SQLITE_BUSY` at once instead of calling the busy handler when another
/// connection is doing the same (waiting could deadlock): the writer and the tailer, which start
/// together, would fail the collector's first start on an empty volume. One replica, one
/// process: serializing the set-up here is enough.
static OPENING: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Sqlite {
    pub fn open(path: &str) -> Result<Self, StoreError> {
        let err = |e: rusqlite::Error| StoreError::Open {
            url: format!("sqlite://{path}"),
            message: e.to_string(),
        };
        let _opening = OPENING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        // WAL: the tailer reads while the writer appends. synchronous=FULL: a commit is on disk
        // before the webhook is acknowledged (group commit keeps that affordable).
        // Afterwards the writer and the tailer wait for each other's locks.
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS facts (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                dedupe_key TEXT NOT NULL UNIQUE,
                fact TEXT NOT NULL,
                received_at REAL NOT NULL);
             CREATE TABLE IF NOT EXISTS deliveries (
                source TEXT PRIMARY KEY,
                last_at REAL NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoint (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq INTEGER NOT NULL,
                body TEXT NOT NULL)",
        )
        .map_err(err)?;
        conn.execute(
            "INSERT INTO deliveries (source, last_at) VALUES ('store-created', ?1)
             ON CONFLICT (source) DO NOTHING",
            rusqlite::params![crate::now()],
        )
        .map_err(err)?;
        Ok(Self { conn })
    }
}

fn sqlite_err(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Query {
        backend: "sqlite",
        operation,
        message: e.to_string(),
    }
}

impl Store for Sqlite {
    fn append(
        &mut self,
        facts: &[Fact],
        received_at: f64,
        sources: &[&str],
    ) -> Result<Appended, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sqlite_err("starting a transaction"))?;
        let mut new = Vec::with_capacity(facts.len());
        let mut last_seq = None;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO facts (dedupe_key, fact, received_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (dedupe_key) DO NOTHING",
                )
                .map_err(sqlite_err("preparing the insert"))?;
            for fact in facts {
                let changed = insert
                    .execute(rusqlite::params![
                        fact.dedupe_key(),
                        encode(fact),
                        received_at
                    ])
                    .map_err(sqlite_err("inserting a fact"))?;
                new.push(changed == 1);
                if changed == 1 {
                    last_seq = Some(tx.last_insert_rowid());
                }
            }
            let mut delivered = tx
                .prepare_cached(
                    "INSERT INTO deliveries (source, last_at) VALUES (?1, ?2)
                     ON CONFLICT (source) DO UPDATE SET last_at = max(last_at, excluded.last_at)",
                )
                .map_err(sqlite_err("preparing the delivery record"))?;
            for source in sources {
                delivered
                    .execute(rusqlite::params![source, received_at])
                    .map_err(sqlite_err("recording a delivery"))?;
            }
        }
        tx.commit().map_err(sqlite_err("committing"))?;
        Ok(Appended { new, last_seq })
    }

    fn save_checkpoint(&mut self, seq: i64, body: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO checkpoint (id, seq, body) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, body = excluded.body
                 WHERE excluded.seq > checkpoint.seq",
                rusqlite::params![seq, body],
            )
            .map(drop)
            .map_err(sqlite_err("saving the checkpoint"))
    }

    fn load_checkpoint(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        let mut select = self
            .conn
            .prepare_cached("SELECT seq, body FROM checkpoint WHERE id = 1")
            .map_err(sqlite_err("preparing the checkpoint query"))?;
        let mut rows = select
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sqlite_err("reading the checkpoint"))?;
        rows.next()
            .transpose()
            .map_err(sqlite_err("reading the checkpoint"))
    }

    fn deliveries(&mut self) -> Result<Vec<(String, f64)>, StoreError> {
        let mut select = self
            .conn
            .prepare_cached("SELECT source, last_at FROM deliveries")
            .map_err(sqlite_err("preparing the deliveries query"))?;
        let rows = select
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?))
            })
            .map_err(sqlite_err("reading deliveries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sqlite_err("reading deliveries"))
    }

    fn read_after(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, Fact)>, StoreError> {
        let mut select = self
            .conn
            .prepare_cached("SELECT seq, fact FROM facts WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(sqlite_err("preparing the tail query"))?;
        let rows = select
            .query_map(
                rusqlite::params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .map_err(sqlite_err("reading facts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, text) = row.map_err(sqlite_err("reading facts"))?;
            out.push((seq, decode("sqlite", &text)?));
        }
        Ok(out)
    }

    fn read_seqs(&mut self, seqs: &[i64]) -> Result<Vec<(i64, Fact)>, StoreError> {
        let list = serde_json::to_string(seqs).unwrap_or_else(|_| "[]".into());
        let mut select = self
            .conn
            .prepare_cached(
                "SELECT seq, fact FROM facts WHERE seq IN (SELECT value FROM json_each(?1)) ORDER BY seq",
            )
            .map_err(sqlite_err("preparing the gap query"))?;
        let rows = select
            .query_map(rusqlite::params![list], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sqlite_err("reading facts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, text) = row.map_err(sqlite_err("reading facts"))?;
            out.push((seq, decode("sqlite", &text)?));
        }
        Ok(out)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

pub struct Postgres {
    client: postgres::Client,
}

/// Serialises appends across replicas so sequence numbers become visible in order and a tailer
/// never skips a row committed late (any constant; it only has to be the same in every replica).
const APPEND_LOCK: i64 = 0x0d0a_c011;

fn pg_err(operation: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::Query {
        backend: "postgres",
        operation,
        message: e.as_db_error().map_or_else(
            || e.to_string(),
            |db| format!("{}: {}", db.code().code(), db.message()),
        ),
    }
}

impl Postgres {
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let open_err = |e: &postgres::Error| StoreError::Open {
            url: redact_url(url),
            message: e.as_db_error().map_or_else(
                || e.to_string(),
                |db| format!("{}: {}", db.code().code(), db.message()),
            ),
        };
        let mut client =
            postgres::Client::connect(url, postgres::NoTls).map_err(|e| open_err(&e))?;
        // Replicas (and a replica's two connections) start together: CREATE TABLE IF NOT EXISTS
        // is not safe against itself in PostgreSQL, so creation is serialised.
        // Three statements, three transactions: the lock is released only after the CREATE
        // committed.
        for statement in [
            format!("SELECT pg_advisory_lock({APPEND_LOCK})"),
            "CREATE TABLE IF NOT EXISTS dora_facts (
                seq BIGSERIAL PRIMARY KEY,
                dedupe_key TEXT NOT NULL UNIQUE,
                fact TEXT NOT NULL,
                received_at DOUBLE PRECISION NOT NULL)"
                .to_owned(),
            "CREATE TABLE IF NOT EXISTS dora_deliveries (
                source TEXT PRIMARY KEY,
                last_at DOUBLE PRECISION NOT NULL)"
                .to_owned(),
            "CREATE TABLE IF NOT EXISTS dora_checkpoint (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq BIGINT NOT NULL,
                body TEXT NOT NULL)"
                .to_owned(),
            format!(
                "INSERT INTO dora_deliveries (source, last_at) VALUES ('store-created', {})
                 ON CONFLICT (source) DO NOTHING",
                crate::now()
            ),
            format!("SELECT pg_advisory_unlock({APPEND_LOCK})"),
        ] {
            client.batch_execute(&statement).map_err(|e| open_err(&e))?;
        }
        Ok(Self { client })
    }
}

impl Store for Postgres {
    fn append(
        &mut self,
        facts: &[Fact],
        received_at: f64,
        sources: &[&str],
    ) -> Result<Appended, StoreError> {
        let mut tx = self
            .client
            .transaction()
            .map_err(pg_err("starting a transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
            .map_err(pg_err("taking the append lock"))?;
        // One statement for the whole batch (UNNEST of three arrays), not one round trip per
        // fact: a key repeated inside the batch conflicts with its first copy and is skipped.
        let keys: Vec<String> = facts.iter().map(Fact::dedupe_key).collect();
        let bodies: Vec<String> = facts.iter().map(encode).collect();
        let times = vec![received_at; facts.len()];
        let rows = if facts.is_empty() {
            Vec::new()
        } else {
            tx.query(
                "INSERT INTO dora_facts (dedupe_key, fact, received_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::float8[])
                 ON CONFLICT (dedupe_key) DO NOTHING RETURNING seq, dedupe_key",
                &[&keys, &bodies, &times],
            )
            .map_err(pg_err("inserting facts"))?
        };
        let mut inserted: std::collections::HashMap<String, i64> = rows
            .iter()
            .map(|row| (row.get::<_, String>(1), row.get::<_, i64>(0)))
            .collect();
        let last_seq = inserted.values().copied().max();
        // The first copy of a key is the new one; the map empties as copies are seen.
        let new: Vec<bool> = keys.iter().map(|k| inserted.remove(k).is_some()).collect();
        for source in sources {
            tx.execute(
                "INSERT INTO dora_deliveries (source, last_at) VALUES ($1, $2)
                 ON CONFLICT (source) DO UPDATE
                 SET last_at = GREATEST(dora_deliveries.last_at, EXCLUDED.last_at)",
                &[source, &received_at],
            )
            .map_err(pg_err("recording a delivery"))?;
        }
        tx.commit().map_err(pg_err("committing"))?;
        Ok(Appended { new, last_seq })
    }

    fn save_checkpoint(&mut self, seq: i64, body: &str) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO dora_checkpoint (id, seq, body) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, body = EXCLUDED.body
                 WHERE EXCLUDED.seq > dora_checkpoint.seq",
                &[&seq, &body],
            )
            .map(drop)
            .map_err(pg_err("saving the checkpoint"))
    }

    fn load_checkpoint(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT seq, body FROM dora_checkpoint WHERE id = 1", &[])
            .map_err(pg_err("reading the checkpoint"))?;
        Ok(row.map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1))))
    }

    fn deliveries(&mut self) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = self
            .client
            .query("SELECT source, last_at FROM dora_deliveries", &[])
            .map_err(pg_err("reading deliveries"))?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, f64>(1)))
            .collect())
    }

    fn read_after(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, Fact)>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT seq, fact FROM dora_facts WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .map_err(pg_err("reading facts"))?;
        rows.iter()
            .map(|row| Ok((row.get::<_, i64>(0), decode("postgres", row.get(1))?)))
            .collect()
    }

    fn read_seqs(&mut self, seqs: &[i64]) -> Result<Vec<(i64, Fact)>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT seq, fact FROM dora_facts WHERE seq = ANY($1) ORDER BY seq",
                &[&seqs],
            )
            .map_err(pg_err("reading facts"))?;
        rows.iter()
            .map(|row| Ok((row.get::<_, i64>(0), decode("postgres", row.get(1))?)))
            .collect()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_messages() {
        assert_eq!(
            redact_url("postgres://dora:s3cr3t@db:5432/dora"),
            "postgres://dora:(sensitive)@db:5432/dora"
        );
        let err = open("mysql://dora:s3cr3t@db/dora")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn sqlite_keeps_one_copy_per_key_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dora.db");
        let fact = Fact::Commit {
            project: "g/p".into(),
            sha: "abc".into(),
            at: 1.0,
        };
        let mut store = Sqlite::open(path.to_str().unwrap()).unwrap();
        assert_eq!(
            store
                .append(&[fact.clone(), fact.clone()], 1.0, &["gitlab"])
                .unwrap(),
            Appended {
                new: vec![true, false],
                last_seq: Some(1)
            }
        );
        drop(store);
        let mut store = Sqlite::open(path.to_str().unwrap()).unwrap();
        assert_eq!(
            store
                .append(std::slice::from_ref(&fact), 2.0, &[])
                .unwrap()
                .new,
            [false]
        );
        assert_eq!(store.read_after(0, 10).unwrap(), vec![(1, fact)]);
    }

    /// The writer and the tailer open a new file at the same moment (the first start on an empty
    /// volume): both must succeed.
    #[test]
    fn two_connections_open_a_new_file_at_once() {
        for _ in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("dora.db").to_str().unwrap().to_owned();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let opens: Vec<_> = (0..2)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Sqlite::open(&path).map(drop)
                    })
                })
                .collect();
            for open in opens {
                open.join().unwrap().unwrap();
            }
        }
    }
}
