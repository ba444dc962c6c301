//! The `chat` command-line client, built as a binary of the test package (like
//! `chatd-under-test`) so that `cargo test` always runs the current program: the
//! `clients_cli.rs` suite runs it as a child.

fn main() -> std::process::ExitCode {
    chat_client::cli::main()
}
