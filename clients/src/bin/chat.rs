//! `chat`: the command-line chat client (see `chat_client::cli`).

fn main() -> std::process::ExitCode {
    chat_client::cli::main()
}
