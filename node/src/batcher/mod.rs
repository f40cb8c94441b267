//! The per-model request queue and dynamic batcher.
//!
//! Every call of a model goes through one bounded [`Queue`]. Each backend instance (a
//! replica actor) pulls its next batch with [`Queue::next_batch`] when it is idle, so
//! instances are fed from one queue. With dynamic batching on, a batch joins queued calls
//! along dimension 0 up to `max_batch_size`: it leaves at once when it is full or has a
//! preferred size, else when its oldest call has waited `max_queue_delay`, to the
//! microsecond ([`clock`]), or with `max_queue_delay_us = "auto"` the window
//! [`adaptive`] computes from the measured compute time and arrival rate.
//!
//! Calls never wait on the dead: a call whose client cancelled leaves the queue at once
//! (its [`Ticket`] is dropped with the handler), and a call whose deadline passed while
//! queued is answered DEADLINE_EXCEEDED and never run.
//!
//! * [`queue`]: the queue and its entries;
//! * [`clock`]: the queue's time, with waits precise to microseconds;
//! * [`adaptive`]: the adaptive window;
//! * [`plan`]: when a batch leaves (a pure function);
//! * [`join`]: joining a batch's inputs and splitting its outputs.

pub mod adaptive;
pub mod clock;
pub mod join;
pub mod plan;
pub mod queue;

pub use join::{concat, split};
pub use plan::{BatchConfig, Plan, plan};
pub use queue::{Entry, Queue, Ticket, Work};
