//! Threads. The process runs one single-threaded scheduler on its main thread (start-up,
//! the accept loop, background work such as the audit writer) and, when it has more
//! than one core, one single-threaded scheduler per core for client connections. Each
//! accepted connection lives on one connection thread for its whole life: its requests,
//! their timers and the Streamable HTTP upstream connections they use are all driven
//! there, so such a call wakes no other thread. (stdio and legacy SSE upstreams, and
//! the store's connections, are driven where they were opened, mostly on the main
//! thread.) With tokio's multi-threaded scheduler, two threads spent 24–36 % more CPU
//! per call than one on a two-core machine, in cross-thread wake-ups and in the search
//! for work to steal; with this layout, 6–16 % (`docs/performance.md`).
//!
//! The price is balance: a connection does not move once placed (each goes to the
//! thread holding the fewest), so a few very busy connections may share a thread while
//! another idles. HTTP/1.1 serves one request at a time per connection anyway.

use std::cell::Cell;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio_util::sync::CancellationToken;

use crate::config::{Env as _, ProcessEnv};

thread_local! {
    /// Which connection thread this is: 1..=n, 0 for any other thread.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Connection threads of this process: `HAWSER_WORKER_THREADS`, or the cores
/// available to it (which honours a container's CPU limit). One means everything runs
/// on the main thread.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        ProcessEnv
            .var("HAWSER_WORKER_THREADS")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(1)
            })
    })
}

/// How many per-thread copies a per-thread resource needs: one per connection thread,
/// and one for every other thread.
pub fn slots() -> usize {
    threads() + 1
}

/// The calling thread's place among [`slots`]: its connection thread's number, or 0.
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

/// The main thread's scheduler.
pub fn main_runtime() -> std::io::Result<Runtime> {
    Builder::new_current_thread().enable_all().build()
}

/// The connection threads, running until dropped.
pub struct Workers {
    workers: Vec<Worker>,
    stop: CancellationToken,
    /// Where the search for the least busy thread starts, so ties take turns.
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
}

/// A connection's hold on its thread's count; released on drop.
pub struct Placed {
    open: Arc<AtomicUsize>,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` connection threads; none when `n` is 1 (connections then stay on the
    /// calling thread's scheduler, which must be a tokio runtime's).
    pub fn start(n: usize) -> std::io::Result<Self> {
        // Built as it goes, so that a thread that cannot be started stops those that were
        // (dropping `Workers` cancels them).
        let mut workers = Self {
            workers: Vec::new(),
            stop: CancellationToken::new(),
            next: AtomicUsize::new(0),
        };
        if n <= 1 {
            tokio::spawn(keep_next_wake_near(workers.stop.clone()));
        } else {
            for index in 1..=n {
                let runtime = Builder::new_current_thread().enable_all().build()?;
                let handle = runtime.handle().clone();
                let stop = workers.stop.clone();
                std::thread::Builder::new()
                    .name(format!("hawser-conn-{index}"))
                    .spawn(move || {
                        SLOT.with(|s| s.set(index));
                        runtime.block_on(keep_next_wake_near(stop));
                        // Dropping the runtime cancels what is left on it.
                    })?;
                workers.workers.push(Worker {
                    handle,
                    open: Arc::new(AtomicUsize::new(0)),
                });
            }
        }
        Ok(workers)
    }

    /// Runs `serve` for an accepted connection on the least busy connection thread (or
    /// here, without connection threads). The socket is moved to that thread's
    /// scheduler, so its reads and writes wake that thread only.
    pub fn place<F, Fut>(&self, tcp: tokio::net::TcpStream, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream, Option<Placed>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.workers.is_empty() {
            tokio::spawn(serve(tcp, None));
            return;
        }
        let std_tcp: TcpStream = match tcp.into_std() {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(%error, "accepted connection lost before it was placed");
                return;
            }
        };
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.workers.len();
        let worker = (0..n)
            .map(|i| &self.workers[(start + i) % n])
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .unwrap_or(&self.workers[0]);
        worker.open.fetch_add(1, Ordering::Relaxed);
        let placed = Placed {
            open: worker.open.clone(),
        };
        worker.handle.spawn(async move {
            match tokio::net::TcpStream::from_std(std_tcp) {
                Ok(tcp) => serve(tcp, Some(placed)).await,
                Err(error) => tracing::debug!(%error, "accepted connection could not be placed"),
            }
        });
    }
}

/// Keeps a timer due within the next second on this thread. tokio wakes a thread's
/// own driver (a `write(2)` to its eventfd, then an `epoll_wait` that returns at once)
/// whenever a new timer is due before every other; on a connection thread with no
/// other timer, each request's timers (header read, call timeout: 1 s or longer) were
/// that timer, several times per call. Runs until `stop`.
async fn keep_next_wake_near(stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_busy_thread_and_run_there() {
        let workers = Workers::start(2).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..4 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
            held.push(hold_tx);
            workers.place(tcp, move |tcp, placed| async move {
                let _ = tx.send((slot(), placed.is_some()));
                // Hold the connection (and its place) open until the test lets go.
                let _ = hold_rx.await;
                drop((tcp, placed));
            });
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(rx.recv().await.unwrap());
        }
        assert!(seen.iter().all(|(_, placed)| *placed));
        let on = |s: usize| seen.iter().filter(|(slot, _)| *slot == s).count();
        assert_eq!((on(1), on(2)), (2, 2), "two each: {seen:?}");
        assert_eq!(slot(), 0, "the test's own thread is no connection thread");
    }

    #[tokio::test]
    async fn one_thread_means_the_callers_scheduler() {
        let workers = Workers::start(1).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.place(tcp, move |_tcp, placed| async move {
            let _ = tx.send((slot(), placed.is_none()));
        });
        assert_eq!(rx.await.unwrap(), (0, true));
    }
}
