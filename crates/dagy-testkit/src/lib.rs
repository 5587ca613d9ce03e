//! Test support for Dagy's integration tests and benchmarks, one crate instead of a file each
//! test includes: a DynamoDB-compatible server ([`moto`]), clients with production's settings,
//! a fresh table per test, and a proxy that injects faults.

use dagy_store_dynamodb::DynamoStore;

pub mod moto;
pub use moto::endpoint;

/// An SDK client for the server at `url`: production's retry and timeout settings, dummy
/// credentials, and the endpoint set as `AWS_ENDPOINT_URL` would set it.
pub fn client_for(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "dagy-tests",
        ))
        .endpoint_url(url)
        .retry_config(dagy_store_dynamodb::retry_config())
        .timeout_config(dagy_store_dynamodb::timeout_config())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A store on a new table of its own.
pub async fn fresh_store(name: &str) -> DynamoStore {
    let url = endpoint();
    let table = format!("dagy-test-{name}-{:08x}", rand_u32());
    let store = DynamoStore::new(client_for(&url), table);
    store.create_table().await.expect("create table");
    store
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// A TCP proxy in front of `upstream` that injects transient faults, connection by connection:
/// the first two connections get `503 Service Unavailable`; every third connection after that
/// forwards its request but loses the answer (the write happened, the client never hears of it);
/// the others forward normally but are cut after a few answers, so faults keep coming during a
/// run. Returns the proxy's URL and a counter of faults injected.
pub async fn chaos_proxy(
    upstream: &str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let faults = Arc::new(AtomicUsize::new(0));
    let counter = faults.clone();
    tokio::spawn(async move {
        let mut index = 0usize;
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let faults = counter.clone();
            let i = index;
            index += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut back = vec![0u8; 64 * 1024];
                if i < 2 {
                    let _ = client.read(&mut buf).await;
                    faults.fetch_add(1, Ordering::Relaxed);
                    let _ = client
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let lose_answer = i % 3 == 2;
                let mut answers = 0;
                loop {
                    tokio::select! {
                        r = client.read(&mut buf) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(k) => if server.write_all(&buf[..k]).await.is_err() { return },
                        },
                        r = server.read(&mut back) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(k) => {
                                if lose_answer {
                                    faults.fetch_add(1, Ordering::Relaxed);
                                    return; // the server did the work; the answer is lost
                                }
                                if client.write_all(&back[..k]).await.is_err() { return }
                                answers += 1;
                                if answers >= 6 {
                                    faults.fetch_add(1, Ordering::Relaxed);
                                    return; // cut the connection: the next request reconnects
                                }
                            }
                        },
                    }
                }
            });
        }
    });
    (url, faults)
}
