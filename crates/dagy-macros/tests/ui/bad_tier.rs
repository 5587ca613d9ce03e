#[dagy::task(runtime_tier = "huge")]
async fn big(x: f64) -> Result<f64, dagy::TaskError> {
    Ok(x)
}

fn main() {}
