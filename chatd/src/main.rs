//! `chatd`: runs a chat node. See `chatd --help` and [`chatd::cli`].

fn main() -> std::process::ExitCode {
    chatd::alloc::limit_arenas();
    chatd::cli::main()
}
