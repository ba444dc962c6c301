//! The `chatd` program, built as a binary of the test package so that `cargo test` always
//! builds it fresh, with the same dependency features as the tests: the process suites
//! (`shutdown.rs`, `crash.rs`) run it as a child.

fn main() -> std::process::ExitCode {
    chatd::cli::main()
}
