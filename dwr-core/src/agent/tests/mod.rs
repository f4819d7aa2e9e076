//! Tests of the executor agent: with the fake runtime and the in-memory store
//! (`with_fake`), and with a mocked runtime injecting failures (`failures`).

mod failures;
mod fencing;
mod support;
mod with_fake;
