//! Anshin's model runtime on candle and its OpenAI-compatible model server.
//!
//! Data flow: [`loader`] verifies and opens a model (Hugging Face directory or GGUF) into a [`model::Llama`],
//! a [`tokenizer::TextTokenizer`] and a [`chat_template::ChatTemplate`]. The [`scheduler`] actor owns the
//! model and runs continuous batching over per-sequence KV caches ([`kv_cache`], [`sequence`]), sampling
//! with [`sampling`] and streaming text through [`stop`]. The [`server`] turns HTTP requests into scheduler
//! requests (chats tokenized by [`prompt`], which keeps message text out of the control tokens) and events
//! into OpenAI responses; [`cli`] wires it together.

pub mod chat_template;
pub mod cli;
pub mod config;
pub mod cpu_kernels;
pub mod detok;
pub mod device;
pub mod fixture;
pub mod kv_cache;
pub mod loader;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod prefix;
pub mod prefix_cache;
pub mod projection;
pub mod prompt;
pub mod sampling;
pub mod scheduler;
pub mod sequence;
pub mod server;
pub mod stop;
pub mod telemetry;
pub mod tokenizer;
pub mod weights;
