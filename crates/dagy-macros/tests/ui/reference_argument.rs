#[derive(serde::Deserialize)]
struct Args {
    x: f64,
}

#[dagy::task]
async fn borrow(args: &Args) -> Result<f64, dagy::TaskError> {
    Ok(args.x)
}

fn main() {}
