//! Where guest stdout/stderr go: a file, or a host callback
//! ([`OutputSink`]) called synchronously with each write, so the host gets
//! guest output without OS pipes or reader threads.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, OutputFile, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Receives a guest's output. `write` is called on the guest's task with
/// each chunk the guest writes, in order; it should not block for long.
pub trait OutputSink: Send + Sync {
    /// Takes one chunk of output.
    fn write(&self, bytes: &[u8]);
}

/// A guest output stream.
pub enum Output {
    /// Written through to this file.
    File(std::fs::File),
    /// Handed to the host's sink.
    Sink(Arc<dyn OutputSink>),
}

impl From<std::fs::File> for Output {
    fn from(file: std::fs::File) -> Self {
        Self::File(file)
    }
}

impl From<Arc<dyn OutputSink>> for Output {
    fn from(sink: Arc<dyn OutputSink>) -> Self {
        Self::Sink(sink)
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(file) => f.debug_tuple("File").field(file).finish(),
            Self::Sink(_) => f.write_str("Sink"),
        }
    }
}

/// The cheap-to-clone form of an [`Output`] that each store's WASI context
/// gets.
#[derive(Clone)]
pub(crate) enum GuestOutput {
    File(OutputFile),
    Sink(SinkStream),
}

impl From<Output> for GuestOutput {
    fn from(output: Output) -> Self {
        match output {
            Output::File(file) => Self::File(OutputFile::new(file)),
            Output::Sink(sink) => Self::Sink(SinkStream(sink)),
        }
    }
}

impl GuestOutput {
    pub(crate) fn set_stdout(&self, builder: &mut WasiCtxBuilder) {
        match self {
            Self::File(file) => builder.stdout(file.clone()),
            Self::Sink(sink) => builder.stdout(sink.clone()),
        };
    }

    pub(crate) fn set_stderr(&self, builder: &mut WasiCtxBuilder) {
        match self {
            Self::File(file) => builder.stderr(file.clone()),
            Self::Sink(sink) => builder.stderr(sink.clone()),
        };
    }
}

/// How much a guest may write at once to a sink.
const MAX_WRITE: usize = 1024 * 1024;

/// Adapts an [`OutputSink`] to WASI's p1 and p2 output streams.
#[derive(Clone)]
pub(crate) struct SinkStream(Arc<dyn OutputSink>);

impl IsTerminal for SinkStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SinkStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {}
}

impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_WRITE)
    }
}

impl AsyncWrite for SinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
