//! In-VM event and stream objects: eventfd, socketpair/pipe byte streams, epoll. They are
//! [`crate::fs::File`]s like any other fd target, keep their state inside the VM's
//! `Process` (so a reset restores them), and carry a wait key (`File::wait_id`) that
//! blocked threads wait on and that every state change notifies.
//!
//! TCP sockets are virtual ([`tcp`]): a program may listen only on the configured
//! address (`VmConfig::listen`), the host hands each request in as a connection on that
//! listener and reads the response back ([`http`]); no host socket is ever created.

pub mod epoll;
pub mod eventfd;
pub mod http;
pub mod pair;
pub mod tcp;
