//! The MCP endpoints clients use: `/mcp` (every connection, names prefixed) and
//! `/mcp/{connection}` (one connection, names unchanged), over Streamable HTTP.
//!
//! A request goes one way through these files:
//!
//! ```text
//! routes ─▶ admission ─▶ initialize          (no session yet)
//!                    └─▶ dispatch ─▶ forward ─▶ stream ─▶ relay
//!                                 └─▶ bus (answers and cancels for other replicas)
//! ```
//!
//! [`routes`] reads the path and hands the request to [`admission`] (Host/Origin,
//! identity, body, session). [`initialize`] starts sessions; [`dispatch`] answers what
//! the gateway knows itself (ping, lists) and routes the rest; [`forward`] sends a
//! request to its upstream and [`stream`] relays the answer as it comes, registering
//! server→client requests with [`relay`]. [`record`] writes metrics and audit events,
//! [`error`] says how every refusal is answered. [`listen`] serves GET streams,
//! [`background`] runs the sweeps, [`wellknown`] serves the protected resource
//! metadata that points clients at the identity provider. [`consent`] answers a call
//! that needs the caller's consent for a per-user upstream token.

mod admission;
mod background;
pub mod bridge;
mod bridged;
mod bus;
mod consent;
mod dispatch;
pub mod error;
mod forward;
mod initialize;
mod inputs;
mod listen;
pub mod listeners;
mod modern;
pub mod pool;
mod record;
pub mod relay;
pub mod reply;
pub mod request;
mod resume;
mod routes;
pub mod session;
mod state;
mod stream;
mod subscribed;
pub mod subscriptions;
mod task_ids;
mod task_status;
mod tasks;
pub mod throttle;
mod ticket;
pub mod version;
pub mod watch;
mod wellknown;
pub mod wire;

pub use background::spawn as spawn_background;
pub use error::Error;
pub use routes::router;
pub use state::Front;
