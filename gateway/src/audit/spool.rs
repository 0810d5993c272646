//! The audit spool: a local append-only log of every event not yet in the store, so
//! that neither a killed process nor a store outage loses one.
//!
//! A request appends its event before its answer leaves (one `write(2)` into the page
//! cache, which outlives the process); the writer fsyncs in batches, and once events
//! are in the store it records how far (`committed`) and deletes segments wholly
//! behind that mark. At start, whatever is past the mark is written again; the store
//! ignores events it already has (they carry an id unique to this spool).
//!
//! Layout of the directory: `id` (this spool's random id), `committed` (the last
//! sequence number known to be in the store), and segments `<first-seq>.jsonl`, one
//! event per line as `{"event":{…},"seq":N}`. The event's id is `<id>-<seq>`; lines
//! leave it empty, and reading fills it in.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::Deserialize;

use crate::store::AuditEvent;

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Room first made for a line: most events fit.
const LINE_CAPACITY: usize = 1024;
/// How a line starts: the event follows.
const LINE_START: &[u8] = b"{\"event\":";

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("audit spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit spool is full ({0} bytes, audit.spoolMaxBytes)")]
    Full(u64),
    #[error(
        "audit spool {0} is in use by another process (give each replica its own audit.spoolDir)"
    )]
    InUse(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Deserialize)]
struct LineIn {
    seq: u64,
    event: AuditEvent,
}

/// What the spool holds, behind its lock.
struct Inner {
    segment: File,
    segment_first: u64,
    segment_bytes: u64,
    /// Bytes of every segment on disk.
    total_bytes: u64,
    next_seq: u64,
    /// Appends since the last fsync.
    dirty: bool,
}

/// The spool of one replica.
pub struct Spool {
    dir: PathBuf,
    id: String,
    max_bytes: u64,
    inner: Mutex<Inner>,
    /// Held (locked) while the spool is open: one process per spool.
    _lock: File,
}

/// A place to continue reading from: the next line of a segment holds `seq`.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    segment: u64,
    offset: u64,
    seq: u64,
}

/// Reads events back (for the writer, after a restart or when its queue overflowed).
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    cursor: Option<Cursor>,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.jsonl")
}

/// Writes `e` as JSON: the same text as `serde_json::to_writer(out, e)` (members in
/// the struct's order, those `None` or empty left out), byte for byte, without serde's
/// per-member machinery (5.7 k instructions per audited call that way, 2.4 k this
/// way). A member added to [`AuditEvent`] must be written here too:
/// `props::the_spool_writes_an_event_as_serde_would` names every member, so it does
/// not build until it covers the new one, and then fails until this does.
pub fn write_event(out: &mut Vec<u8>, e: &AuditEvent) {
    let mut o = Object { out, first: true };
    o.string("eventId", Some(&e.event_id));
    o.key("tsMs");
    o.out
        .extend_from_slice(itoa::Buffer::new().format(e.ts.millis()).as_bytes());
    o.string("requestId", Some(&e.request_id));
    o.string("session", e.session.as_deref());
    o.string("replica", Some(&e.replica));
    o.string("subject", e.subject.as_deref());
    o.string("authType", e.auth_type.as_deref());
    if !e.groups.is_empty() {
        o.key("groups");
        for (i, group) in e.groups.iter().enumerate() {
            o.out.push(if i == 0 { b'[' } else { b',' });
            json_string(o.out, group);
        }
        o.out.push(b']');
    }
    o.string("remoteAddr", e.remote_addr.as_deref());
    o.string("userAgent", e.user_agent.as_deref());
    o.string("method", Some(&e.method));
    o.string("connection", e.connection.as_deref());
    o.string("target", e.target.as_deref());
    if let Some(params) = &e.params {
        o.key("params");
        o.out.extend_from_slice(params.to_json().as_bytes());
    }
    o.key("success");
    o.out
        .extend_from_slice(if e.success { b"true" } else { b"false" });
    o.string("errorCategory", e.error_category.as_deref());
    o.string("errorMessage", e.error_message.as_deref());
    o.key("durationMs");
    // serde_json's own number format (a non-finite number is `null`).
    if serde_json::to_writer(&mut *o.out, &e.duration_ms).is_err() {
        o.out.extend_from_slice(b"null");
    }
    o.integer("requestBytes", e.request_bytes);
    o.integer("responseBytes", e.response_bytes);
    o.integer("contentBlocks", e.content_blocks.map(i64::from));
    o.integer("progressCount", e.progress_count.map(i64::from));
    o.string("tokenSubject", e.token_subject.as_deref());
    o.out.push(b'}');
}

/// The members of a JSON object being written.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Object<'_> {
    /// `"name":`, after a comma unless first. Names need no escaping.
    fn key(&mut self, name: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.key(name);
            json_string(self.out, value);
        }
    }

    fn integer(&mut self, name: &str, value: Option<i64>) {
        if let Some(value) = value {
            self.key(name);
            self.out
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }
}

/// A JSON string: copied as it is when nothing in it needs escaping (the usual
/// case), else escaped by serde_json.
fn json_string(out: &mut Vec<u8>, s: &str) {
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`; returns it and the last sequence number
    /// known to be in the store (everything after it is to be written).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, u64), SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::InUse(dir.to_owned()));
        }
        let id_path = dir.join("id");
        let id = match fs::read_to_string(&id_path) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => {
                let id = format!("{:016x}", rand::random::<u64>());
                write_atomically(&id_path, id.as_bytes())?;
                id
            }
        };
        let committed = read_committed(dir);
        let segments = segments(dir)?;
        let mut total_bytes = 0;
        let mut next_seq = committed + 1;
        for (first, path) in &segments {
            let len = fs::metadata(path).map_err(io(path))?.len();
            total_bytes += len;
            next_seq = next_seq.max(*first);
        }
        // The last segment's last line names the highest sequence number used.
        if let Some((_, path)) = segments.last() {
            let file = File::open(path).map_err(io(path))?;
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(l) = serde_json::from_str::<LineIn>(&line) {
                    next_seq = next_seq.max(l.seq + 1);
                }
            }
        }
        let (segment_first, segment) = open_segment(dir, next_seq)?;
        let segment_bytes = segment.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((
            Self {
                dir: dir.to_owned(),
                id,
                max_bytes,
                inner: Mutex::new(Inner {
                    segment,
                    segment_first,
                    segment_bytes,
                    total_bytes,
                    next_seq,
                    dirty: false,
                }),
                _lock: lock,
            },
            committed,
        ))
    }

    /// This spool's id, unique among replicas: event ids are `<id>-<seq>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event (its id set from the sequence number it gets) and, still
    /// holding the spool's lock, hands it on with `then`, so events are handed on in
    /// their order in the spool. On failure the event comes back with the error.
    pub fn append(
        &self,
        mut event: Box<AuditEvent>,
        then: impl FnOnce(u64, Box<AuditEvent>),
    ) -> Result<(), Box<(SpoolError, Box<AuditEvent>)>> {
        // The line is made before the lock is taken, but for its number: it ends with
        // `"seq":N`. The event's id, made of that number, is left empty in the line and
        // made again when the line is read.
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        line.extend_from_slice(LINE_START);
        write_event(&mut line, &event);
        line.extend_from_slice(b",\"seq\":");
        let mut inner = self.lock();
        if inner.total_bytes >= self.max_bytes {
            return Err(Box::new((SpoolError::Full(self.max_bytes), event)));
        }
        let seq = inner.next_seq;
        line.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        line.extend_from_slice(b"}\n");
        // A full segment is replaced; it is fsynced once the lock is released.
        let mut retired = None;
        if inner.segment_bytes >= SEGMENT_BYTES {
            match open_segment(&self.dir, seq) {
                Ok((first, file)) => {
                    retired = Some(std::mem::replace(&mut inner.segment, file));
                    inner.segment_first = first;
                    inner.segment_bytes = 0;
                }
                Err(e) => return Err(Box::new((e, event))),
            }
        }
        if let Err(e) = inner.segment.write_all(&line) {
            let path = self.dir.join(segment_name(inner.segment_first));
            return Err(Box::new((io(&path)(e), event)));
        }
        inner.segment_bytes += line.len() as u64;
        inner.total_bytes += line.len() as u64;
        inner.next_seq = seq + 1;
        inner.dirty = true;
        event.event_id = self.event_id(seq);
        then(seq, event);
        drop(inner);
        if let Some(old) = retired
            && let Err(error) = old.sync_data()
        {
            tracing::warn!(%error, "audit spool fsync failed");
        }
        Ok(())
    }

    /// The id of the event numbered `seq`: `<spool id>-<seq>`.
    fn event_id(&self, seq: u64) -> String {
        let mut id = String::with_capacity(self.id.len() + 21);
        id.push_str(&self.id);
        id.push('-');
        id.push_str(itoa::Buffer::new().format(seq));
        id
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Flushes appended events to the disk (the batched fsync). The fsync runs without
    /// the spool's lock, on a second handle of the segment: requests appending meanwhile
    /// are not held up by the disk (their lines are in the next fsync, if not this one).
    pub fn sync(&self) {
        let segment = {
            let mut inner = self.lock();
            if !inner.dirty {
                return;
            }
            inner.dirty = false;
            inner.segment.try_clone()
        };
        if let Err(error) = segment.and_then(|s| s.sync_data()) {
            tracing::warn!(%error, "audit spool fsync failed");
            self.lock().dirty = true;
        }
    }

    /// Records that every event up to `seq` is in the store, and deletes the segments
    /// wholly behind it.
    pub fn commit(&self, seq: u64) -> Result<(), SpoolError> {
        write_atomically(&self.dir.join("committed"), seq.to_string().as_bytes())?;
        let current = self.lock().segment_first;
        let segments = segments(&self.dir)?;
        // A segment ends where the next begins; the current one is never deleted.
        for pair in segments.windows(2) {
            let ((first, path), (next, _)) = (&pair[0], &pair[1]);
            if *first < current && next - 1 <= seq {
                let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(path).is_ok() {
                    let mut inner = self.lock();
                    inner.total_bytes = inner.total_bytes.saturating_sub(len);
                }
            }
        }
        Ok(())
    }

    /// Bytes the spool holds on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().total_bytes
    }

    pub fn reader(&self) -> Reader {
        Reader { cursor: None }
    }

    /// Up to `max` events from sequence number `from` on, in order.
    pub fn read(
        &self,
        reader: &mut Reader,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, AuditEvent)>, SpoolError> {
        let mut out = Vec::new();
        let segments = segments(&self.dir)?;
        let start = match reader.cursor {
            Some(c) if c.seq == from => Some(c),
            _ => None,
        };
        // The last segment whose first number is at most `from`.
        let first_index = segments
            .iter()
            .rposition(|(first, _)| *first <= from)
            .unwrap_or(0);
        for (first, path) in segments.iter().skip(first_index) {
            let mut file = File::open(path).map_err(io(path))?;
            let mut offset = 0;
            if let Some(c) = start
                && c.segment == *first
            {
                offset = c.offset;
                file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
            }
            let mut lines = BufReader::new(file);
            let mut buf = String::new();
            loop {
                buf.clear();
                let n = lines.read_line(&mut buf).map_err(io(path))?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                if !buf.ends_with('\n') {
                    // A line still being written (or cut short by a crash).
                    break;
                }
                let Ok(line) = serde_json::from_str::<LineIn>(&buf) else {
                    tracing::warn!(segment = %path.display(), "unreadable line in the audit spool skipped");
                    continue;
                };
                if line.seq < from {
                    continue;
                }
                let mut event = line.event;
                if event.event_id.is_empty() {
                    event.event_id = self.event_id(line.seq);
                }
                out.push((line.seq, event));
                if out.len() >= max {
                    reader.cursor = Some(Cursor {
                        segment: *first,
                        offset,
                        seq: line.seq + 1,
                    });
                    return Ok(out);
                }
            }
        }
        reader.cursor = None;
        Ok(out)
    }
}

/// The segments on disk, by first sequence number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

fn open_segment(dir: &Path, first: u64) -> Result<(u64, File), SpoolError> {
    // Append to the newest segment when it is the one starting here or earlier.
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    Ok((first, file))
}

fn read_committed(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("committed"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `path` so that a reader sees the old content or the new, never a mix.
fn write_atomically(path: &Path, content: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(content).map_err(io(&tmp))?;
    file.sync_data().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Box<AuditEvent> {
        Box::new(AuditEvent {
            request_id: format!("r{n}"),
            method: "tools/call".into(),
            ..AuditEvent::default()
        })
    }

    #[test]
    fn events_survive_a_reopen_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, committed) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(committed, 0);
        let mut handed = Vec::new();
        for n in 0..5 {
            spool
                .append(event(n), |seq, e| handed.push((seq, e.event_id)))
                .map_err(|b| b.0)
                .unwrap();
        }
        assert_eq!(handed[0].0, 1);
        assert_eq!(handed[0].1, format!("{}-1", spool.id()));
        spool.sync();
        spool.commit(2).unwrap();
        let id = spool.id().to_owned();
        drop(spool);

        // After a restart: the same id, numbering goes on, the rest is read back.
        let (spool, committed) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.id(), id);
        assert_eq!(committed, 2);
        assert_eq!(spool.next_seq(), 6);
        let mut reader = spool.reader();
        let back = spool.read(&mut reader, committed + 1, 2).unwrap();
        assert_eq!(back.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(back[0].1.request_id, "r2");
        assert_eq!(back[0].1.event_id, format!("{id}-3"), "ids are made again");
        let rest = spool.read(&mut reader, 5, 10).unwrap();
        assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn lines_of_the_earlier_layout_are_read_back_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("id"), "0123456789abcdef").unwrap();
        let old = r#"{"seq":1,"event":{"eventId":"0123456789abcdef-1","tsMs":0,"requestId":"r0","session":null,"replica":"a","subject":null,"authType":null,"remoteAddr":null,"userAgent":null,"method":"tools/call","connection":null,"target":null,"params":{"a":1},"success":true,"errorCategory":null,"errorMessage":null,"durationMs":1.5,"requestBytes":null,"responseBytes":null,"contentBlocks":null,"progressCount":null}}"#;
        fs::write(dir.path().join(segment_name(1)), format!("{old}\n")).unwrap();
        let (spool, committed) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!((committed, spool.next_seq()), (0, 2));
        let back = spool.read(&mut spool.reader(), 1, 10).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.event_id, "0123456789abcdef-1");
        assert_eq!(
            back[0].1.params.as_ref().map(|p| p.to_json()),
            Some(r#"{"a":1}"#)
        );
        // New lines go on from there, in the current layout, and read back alike.
        let mut handed = None;
        spool
            .append(event(1), |seq, e| handed = Some((seq, e.event_id)))
            .map_err(|b| b.0)
            .unwrap();
        assert_eq!(handed, Some((2, "0123456789abcdef-2".to_owned())));
        let back = spool.read(&mut spool.reader(), 1, 10).unwrap();
        let ids: Vec<_> = back
            .iter()
            .map(|(s, e)| (*s, e.event_id.as_str()))
            .collect();
        assert_eq!(ids, [(1, "0123456789abcdef-1"), (2, "0123456789abcdef-2")]);
    }

    #[test]
    fn a_full_segment_is_replaced_and_every_event_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        let mut n = 0;
        while segments(dir.path()).unwrap().len() < 2 {
            spool.append(event(n), |_, _| {}).map_err(|b| b.0).unwrap();
            n += 1;
        }
        spool.sync();
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(
            spool.next_seq(),
            n + 1,
            "numbering goes on after the last line"
        );
        let back = spool.read(&mut spool.reader(), 1, usize::MAX).unwrap();
        let seqs: Vec<u64> = back.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
        assert_eq!(
            back.last().map(|(_, e)| e.request_id.clone()),
            Some(format!("r{}", n - 1))
        );
    }

    #[test]
    fn a_spool_is_used_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 30),
            Err(SpoolError::InUse(_))
        ));
        drop(first);
        assert!(Spool::open(dir.path(), 1 << 30).is_ok());
    }

    #[test]
    fn a_full_spool_refuses_and_committed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 200).unwrap();
        let mut n = 0;
        while spool.append(event(n), |_, _| {}).is_ok() {
            n += 1;
        }
        assert!(n > 0);
        assert!(matches!(
            spool.append(event(n), |_, _| {}).map_err(|b| b.0),
            Err(SpoolError::Full(200))
        ));
        assert!(spool.bytes() >= 200);
    }
}
