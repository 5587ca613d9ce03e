#[dagy::task(retry = 2)]
async fn double(x: f64) -> Result<f64, dagy::TaskError> {
    Ok(x * 2.0)
}

fn main() {}
