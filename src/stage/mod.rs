//! The pipeline stages, in the order data flows through them:
//! [`traverse`] (root cap -> manifest units), [`check`] (manifest units ->
//! check units) and [`repair`] (check units -> repair units). Each stage is
//! transport-agnostic: it reads units from an iterator or channel and hands
//! its output to a sink, so the file pipeline (`steward manifest`, `check`,
//! `repair`), the one-shot `steward deep-check` and a server drive the same
//! code.

pub mod traverse;
