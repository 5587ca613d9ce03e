fn main() -> Result<(), dagy::lambda::Error> {
    dagy::lambda::run_router(my_flows::registry().catalog())
}
