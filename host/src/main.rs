fn main() -> std::process::ExitCode {
    sparkwasm::cli::main()
}
