//! The `steward` command line: a thin layer over the library.
//!
//! Parsing and validation live in [`cli`]; each subcommand builds its backend
//! and stages from the library and maps the outcome to an exit code
//! (see [`steward::error`]).

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code as i32);
}
