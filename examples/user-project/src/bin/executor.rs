fn main() -> Result<(), dagy::lambda::Error> {
    dagy::lambda::run_executor(my_flows::registry())
}
