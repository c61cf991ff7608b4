//! A raw Kubernetes watch: `GET …?watch=true`, newline-delimited `{"type": …, "object": …}` events.

use std::time::Duration;

use serde_json::Value;

pub struct WatchStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    ended: bool,
}

impl WatchStream {
    /// Opens `url` (which must carry `watch=true`); panics unless the server answers 200.
    pub async fn open(http: &reqwest::Client, url: &str) -> WatchStream {
        let response = tokio::time::timeout(Duration::from_secs(15), http.get(url).send())
            .await
            .unwrap_or_else(|_| panic!("GET {url}: no response headers within 15 s"))
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            panic!("GET {url} -> {status}: {body}");
        }
        WatchStream {
            response,
            buffer: Vec::new(),
            ended: false,
        }
    }

    /// The next event, or `None` if the stream ended or nothing arrived within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(newline) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=newline).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                return Some(
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {line}")),
                );
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.ended = true;
                    // A final event may lack its newline.
                    if !self.buffer.iter().all(u8::is_ascii_whitespace) {
                        self.buffer.push(b'\n');
                    }
                }
            }
        }
    }

    /// Collects events until `done` holds for one of them (included) or `timeout` passes.
    /// Returns all events seen and whether `done` was reached.
    pub async fn until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return (events, false);
            }
            match self.next(left).await {
                Some(event) => {
                    let finished = done(&event);
                    events.push(event);
                    if finished {
                        return (events, true);
                    }
                }
                None => return (events, false),
            }
        }
    }
}

/// `TYPE name rv` of an event, for messages.
pub fn describe(event: &Value) -> String {
    format!(
        "{} {} rv={}",
        super::s(event, "/type"),
        super::s(event, "/object/metadata/name"),
        super::s(event, "/object/metadata/resourceVersion")
    )
}
