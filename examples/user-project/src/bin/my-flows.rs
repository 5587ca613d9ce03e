fn main() -> std::process::ExitCode {
    dagy::cli::main(my_flows::registry())
}
