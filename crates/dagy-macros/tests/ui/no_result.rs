#[dagy::task]
async fn nothing(x: f64) {
    let _ = x;
}

fn main() {}
