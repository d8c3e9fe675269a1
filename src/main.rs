fn main() -> std::process::ExitCode {
    feathur::cli::main()
}
