fn main() -> std::process::ExitCode {
    litevault::cli::main()
}
