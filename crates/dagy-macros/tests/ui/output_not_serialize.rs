struct NotJson;

#[dagy::task]
async fn opaque(x: f64) -> Result<NotJson, dagy::TaskError> {
    let _ = x;
    Ok(NotJson)
}

fn main() {
    let mut registry = dagy::HandlerRegistry::new();
    registry.add(opaque);
}
