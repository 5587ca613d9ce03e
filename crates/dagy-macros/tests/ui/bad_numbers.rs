#[dagy::task(retries = -1)]
async fn a(x: f64) -> Result<f64, dagy::TaskError> {
    Ok(x)
}

#[dagy::task(retry_jitter_factor = 2.5)]
async fn b(x: f64) -> Result<f64, dagy::TaskError> {
    Ok(x)
}

#[dagy::task(timeout_seconds = "30")]
async fn c(x: f64) -> Result<f64, dagy::TaskError> {
    Ok(x)
}

#[dagy::task(retry_delay_seconds = [1, 1e300])]
async fn d(x: f64) -> Result<f64, dagy::TaskError> {
    Ok(x)
}

fn main() {}
