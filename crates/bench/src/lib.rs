//! The parts of the benchmark that steward's own tests use too: the
//! synthetic gateway ([`synth`]) and instruction counting under callgrind
//! ([`callgrind`]), which together hold steward's instructions per object
//! (the guard in `tests/integration/instructions.rs`). The benchmark
//! itself is the `steward-bench` binary (`src/main.rs`).

pub mod callgrind;
pub mod cost;
pub mod synth;
