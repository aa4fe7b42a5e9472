//! Runnable programs a newcomer starts from; each lives in `src/bin/`.
//!
//! | program | run it with | shows |
//! |---|---|---|
//! | `demo` | `cargo run --release -p examples --bin demo` | three peers on loopback publishing typed events to each other |
//! | `chat` | `cargo run -p examples --bin chat -- alice` (one terminal per person) | a small chat room on loopback |
