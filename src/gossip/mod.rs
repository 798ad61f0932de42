//! gossip: nodes sync their repositories over TCP (see docs/design.md and docs/protocol.md).
//!
//! Flow: peer → gossip → merge → db. Objects move through the db's transfer verbs
//! (`db::transfer`), merges through the merge layer, and news of head moves comes from the db's
//! one news channel; nothing here names the store or the mount.
//!
//! - [`cli`]: the daemons' gossip flags and their `-o` form;
//! - [`key`]: the cluster key (file → Noise pre-shared key);
//! - [`message`]: the messages and their compact encoding, with their bounds;
//! - [`connection`]: preamble, Noise handshake, encrypted length-delimited frames;
//! - [`peers`]: the peer table (liveness, backoff, random choice of partners);
//! - [`sources`]: backoff by where a peer connects from and the node id it claims, which holds
//!   off a misbehaving peer that dials us;
//! - [`exchange`]: one push-pull exchange over one connection;
//! - [`merging`]: a merge asked for by hand (`gitdb merge`), the binaries' one door to merge;
//! - [`skew`]: noticing a peer whose clock runs ahead of ours (the bound our HLC keeps);
//! - [`node`]: the state the service's tasks share, and its rounds of exchanges;
//! - [`listener`]: accepting peers, within bounds on handshakes and exchanges at once;
//! - [`service`]: the runtime, anti-entropy timer and news push ([`Gossip`]);
//! - [`headless`]: a node without a mount (`gitdb serve`), until a signal.

pub mod cli;
pub mod connection;
pub mod exchange;
pub mod headless;
pub mod key;
pub mod listener;
pub mod merging;
pub mod message;
pub mod node;
pub mod peers;
pub mod service;
pub mod skew;
pub mod sources;

pub use headless::{ServeError, serve_until_signalled};
pub use key::ClusterKey;
pub use service::{Gossip, GossipConfig, GossipError};
