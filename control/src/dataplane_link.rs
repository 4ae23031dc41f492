//! The control process's end of a dataplane's control socket (`sluice --control-socket`):
//! connects (and reconnects), pushes snapshots, and tells the dataplane the xDS client's status
//! for its /stats and /config_dump. See `sluice::push` for the messages.

use serde_json::{json, Value};
use sluice::push::{read_message, write_message};
use std::path::{Path, PathBuf};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

pub struct DataplaneLink {
    path: PathBuf,
    stream: Option<(OwnedReadHalf, OwnedWriteHalf)>,
}

/// What a dataplane said when it was connected to.
pub struct Hello {
    /// The version it last applied from a push (`None`: it serves its file only).
    pub version: Option<String>,
    pub message: Value,
}

impl DataplaneLink {
    pub fn new(path: &Path) -> DataplaneLink {
        DataplaneLink {
            path: path.to_path_buf(),
            stream: None,
        }
    }

    pub async fn connect(&mut self) -> Result<Hello, String> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| format!("dataplane socket {}: {e}", self.path.display()))?;
        let (mut r, w) = stream.into_split();
        let hello = read_message(&mut r)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the dataplane closed the connection")?;
        let version = hello
            .pointer("/hello/version")
            .and_then(Value::as_str)
            .map(String::from);
        self.stream = Some((r, w));
        Ok(Hello {
            version,
            message: hello,
        })
    }

    /// Resolves when the dataplane closes the connection (it never speaks unasked); pending
    /// forever while not connected.
    pub async fn closed(&mut self) {
        match &mut self.stream {
            Some((r, _)) => {
                // Anything unasked, or the end of the stream, ends the connection.
                let _ = read_message(r).await;
                self.stream = None;
            }
            None => std::future::pending().await,
        }
    }

    async fn ask(&mut self, message: &Value) -> Result<Value, String> {
        let Some((r, w)) = &mut self.stream else {
            return Err("not connected to the dataplane".into());
        };
        let outcome = async {
            write_message(w, message).await.map_err(|e| e.to_string())?;
            read_message(r)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the dataplane closed the connection".to_string())
        }
        .await;
        if outcome.is_err() {
            self.stream = None;
        }
        outcome
    }

    /// Pushes a snapshot and returns the dataplane's answer as it came.
    pub async fn push_message(
        &mut self,
        version: &str,
        static_resources: &Value,
    ) -> Result<Value, String> {
        self.ask(&json!({"push": {"version": version, "static_resources": static_resources}}))
            .await
    }

    /// Pushes a snapshot. `Ok(Err(reason))`: the dataplane refused it; `Err`: the link failed.
    pub async fn push(
        &mut self,
        version: &str,
        static_resources: &Value,
    ) -> Result<Result<(), String>, String> {
        let reply = self.push_message(version, static_resources).await?;
        if reply.get("applied").is_some() {
            return Ok(Ok(()));
        }
        let reason = reply
            .pointer("/rejected/error")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("unexpected answer {reply}"));
        Ok(Err(reason))
    }

    /// Hands the dataplane the xDS client's status (shown in its /stats and /config_dump).
    pub async fn status(&mut self, status: Value) -> Result<(), String> {
        self.ask(&json!({"status": status})).await.map(|_| ())
    }
}
