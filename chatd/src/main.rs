//! `chatd`: runs a chat node. See `chatd --help` and [`chatd::cli`].

fn main() -> std::process::ExitCode {
    chatd::cli::main()
}
