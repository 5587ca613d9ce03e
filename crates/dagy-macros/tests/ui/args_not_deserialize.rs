struct NotJson {
    x: f64,
}

#[dagy::task]
async fn opaque(args: NotJson) -> Result<f64, dagy::TaskError> {
    Ok(args.x)
}

fn main() {}
