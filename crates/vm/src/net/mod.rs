//! In-VM event and stream objects: eventfd, socketpair/pipe byte streams, epoll. They are
//! [`crate::fs::File`]s like any other fd target, keep their state inside the VM's
//! `Process` (so a reset restores them), and carry a wait key (`File::wait_id`) that
//! blocked threads wait on and that every state change notifies.
//!
//! Network sockets are not here yet: `socket(AF_INET…)` is refused with EAFNOSUPPORT.
//! A listening socket (issue 12) fits the same trait: `poll` reports a pending
//! connection, `read`/`write` move request and response bytes, `wait_id` is the key the
//! host notifies when it hands a connection in.

pub mod epoll;
pub mod eventfd;
pub mod pair;
