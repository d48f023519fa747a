//! The L4 proxy: health-checked TCP balancing to the kube-apiservers.
//!
//! - [`pool`]: the backends of one frontend, their health and connection
//!   counts in atomics (the forwarding path reads them without a lock), and
//!   the balancing order (round robin, least connections, local first);
//! - [`counter`]: statistics counters with one slot per worker thread;
//! - [`session`]: one client: connect to the first backend that answers,
//!   then forward both ways with half-close and an idle timeout;
//! - [`splice`]: the zero-copy path (socket → pipe → socket);
//! - [`proxy_protocol`]: the PROXY protocol v2 header;
//! - [`frontend`]: the listeners, the connection limit, health checkers and drain;
//! - [`workers`]: the threads sessions run on, one single-threaded runtime
//!   and one listening socket per frontend each.

pub mod counter;
pub mod frontend;
pub mod pool;
pub mod proxy_protocol;
pub mod session;
pub mod splice;
pub mod workers;
