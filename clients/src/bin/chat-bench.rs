//! `chat-bench`: the load generator (see `chat_client::bench`).

fn main() -> std::process::ExitCode {
    chat_client::bench::main()
}
