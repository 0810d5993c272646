//! stdio upstreams: a child process speaking newline-delimited JSON-RPC.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::UpstreamError;
use super::channel::Channel;

/// Largest line accepted from the process (one message).
const MAX_LINE: usize = 256 * 1024 * 1024;

/// Variables of the gateway's own environment a server process gets: what programs
/// need to run (search path, home, locale, time zone, temp dir). Nothing else — the
/// gateway's environment holds its database URL, encryption keys and admin token.
/// Anything more a server needs goes in the connection's `env`.
fn inherited_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    const KEEP: &[&str] = &[
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    ];
    crate::config::ProcessEnv::vars_where(|k| KEEP.contains(&k) || k.starts_with("LC_")).into_iter()
}

/// Spawns the process and wires it to a new channel. The process is killed when the
/// channel's tasks end (the channel closes or is dropped).
pub fn spawn(
    connection: &str,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    prefix: String,
) -> Result<Arc<Channel>, UpstreamError> {
    let mut child = Command::new(command)
        .args(args)
        .env_clear()
        .envs(inherited_env())
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| UpstreamError::Unavailable(format!("cannot start {command:?}: {e}")))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(UpstreamError::Unavailable(
            "child process has no pipes".into(),
        ));
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let channel = Channel::new(tx, prefix);

    // Writer: one message per line.
    let closed = channel.closed();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                () = closed.cancelled() => break,
                m = rx.recv() => m,
            };
            let Some(msg) = msg else { break };
            if stdin.write_all(&msg).await.is_err()
                || stdin.write_all(b"\n").await.is_err()
                || stdin.flush().await.is_err()
            {
                break;
            }
        }
    });

    // stderr: the server's logs.
    let name = connection.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(connection = %name, "upstream stderr: {line}");
        }
    });

    // Reader: dispatch each line; when stdout ends, reap the process and close.
    let ch = channel.clone();
    let name = connection.to_owned();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let why = loop {
            line.clear();
            let closed = ch.closed();
            let read = tokio::select! {
                () = closed.cancelled() => break "connection closed".to_owned(),
                r = read_line(&mut reader, &mut line) => r,
            };
            match read {
                Ok(0) => break "process closed its output".to_owned(),
                Ok(_) => {
                    let trimmed = line.trim_ascii();
                    if !trimmed.is_empty() {
                        ch.dispatch(Bytes::copy_from_slice(trimmed));
                    }
                }
                Err(e) => break format!("reading process output failed: {e}"),
            }
        };
        let _ = child.start_kill();
        let status = child
            .wait()
            .await
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        tracing::warn!(connection = %name, %status, reason = %why, "stdio upstream ended");
        ch.close(format!("process ended ({status})"));
    });
    Ok(channel)
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let n = reader.read_until(b'\n', buf).await?;
    if buf.len() > MAX_LINE {
        return Err(std::io::Error::other("message larger than 256 MiB"));
    }
    Ok(n)
}
