//! The `litevault` binary: every subcommand lives in `cli`, one file each.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
