fn main() -> Result<(), dagy::lambda::Error> {
    dagy::lambda::run_task_executor(my_flows::registry())
}
