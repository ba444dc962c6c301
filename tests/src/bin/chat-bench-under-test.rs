//! The `chat-bench` load generator, built as a binary of the test package (like
//! `chatd-under-test`): the `clients_bench.rs` suite runs it as a child.

fn main() -> std::process::ExitCode {
    chat_client::bench::main()
}
