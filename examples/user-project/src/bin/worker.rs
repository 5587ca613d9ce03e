fn main() -> std::process::ExitCode {
    dagy::worker::run(my_flows::registry())
}
