#[dagy::task]
async fn generic<T: serde::de::DeserializeOwned>(x: T) -> Result<(), dagy::TaskError> {
    let _ = x;
    Ok(())
}

fn main() {}
