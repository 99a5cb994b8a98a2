//! A connection as frames in and frames out, whatever carries it.
//!
//! Each connection has a writer task, which takes frames from a
//! [`FrameSource`] and writes them. What arrives is split into frames (by the
//! length in each header on TLS and QUIC streams, one frame per binary message
//! on WebSockets) by a [`FrameStream`]: the relay reads it in its own
//! per-connection task ([`stream_frames`], [`websocket_frames`]); the apps
//! have a reader task put the frames in a bounded channel ([`spawn_stream`],
//! [`spawn_websocket`]). Either way nothing is read while the reader waits,
//! so the transport's own flow control pushes back on the sender. Either side
//! ending ends the connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use conclave_protocol::frame::{frame_len, FrameError, FrameRef, MAX_FRAME};
use conclave_protocol::sign::PublicKey;
use futures_util::stream::SplitStream;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::tls::{channel_binding, client_config, server_name, TlsError};

/// Frames buffered from the network before the reader waits.
pub const INCOMING_FRAMES: usize = 64;
/// Room made for a read while frames are under way: several frames share
/// one allocation, so a busy connection allocates once per this many bytes
/// rather than once per frame (on one TLS session, 0.76× a bare TLS splice's
/// throughput with a buffer per frame, 0.98× with this). A busy connection
/// holds at most this plus one frame; an idle one gives it back.
const READ_CHUNK: usize = 256 * 1024;
/// Room made for a read when no frame is under way (an idle connection holds
/// this): a header and a small frame's payload. A larger frame takes a second
/// read, sized to the rest of it.
const IDLE_READ: usize = 128;

/// When the peer last took data that this side had waited to send.
///
/// A write that cannot complete at once (the transport's send buffer or
/// the peer's flow-control credit is used up) completes only once the peer
/// acknowledges what went before, so its completion shows that the peer is
/// there even while nothing comes back: on a slow uplink a sender's own
/// pings queue behind its data, and their answers come late. A write that
/// completes at once shows nothing (the buffer had room), and a dead peer
/// never lets a full buffer drain.
#[derive(Debug, Clone, Default)]
pub struct Drained(Arc<Mutex<Option<Instant>>>);

impl Drained {
    /// The last time the peer took data this side had waited to send.
    pub fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}

/// Runs `write`; records in `drained` when it had to wait and then succeeded.
async fn watched<E>(
    drained: &Drained,
    write: impl core::future::Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let mut write = std::pin::pin!(write);
    let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    if let Poll::Ready(r) = first {
        return r;
    }
    write.await?;
    drained.record();
    Ok(())
}

/// Which transport carries a connection (R19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// QUIC over UDP.
    Quic,
    /// TLS 1.3 over TCP.
    Tls,
    /// WebSocket over TLS 1.3.
    WebSocket,
}

impl core::fmt::Display for Transport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Transport::Quic => "QUIC",
            Transport::Tls => "TLS/TCP",
            Transport::WebSocket => "WebSocket",
        })
    }
}

/// Why a connection failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Network I/O failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// TLS failed (including a relay without the pinned key).
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// rustls reported an error.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// QUIC failed.
    #[error("QUIC: {0}")]
    Quic(String),
    /// WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// The peer sent something that is not a frame.
    #[error("the peer sent a malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// Connecting took too long.
    #[error("connecting timed out")]
    Timeout,
}

/// Where a writer task takes its frames from.
pub trait FrameSource: Send + 'static {
    /// The next frame to write, or `None` when the connection should close.
    fn next_frame(&mut self) -> impl core::future::Future<Output = Option<Bytes>> + Send;
}

impl FrameSource for mpsc::Receiver<Bytes> {
    async fn next_frame(&mut self) -> Option<Bytes> {
        self.recv().await
    }
}

/// Where a connection's frames come from.
pub trait FrameStream: Send + 'static {
    /// The next frame, an error, or `None` once the connection has ended;
    /// read no further after an error. Cancel-safe: a call dropped before it
    /// completes loses nothing.
    fn next_frame(
        &mut self,
    ) -> impl core::future::Future<Output = Option<Result<Bytes, ConnError>>> + Send;
}

/// Frames from the peer; the last item is an error if the connection failed.
pub type Incoming = mpsc::Receiver<Result<Bytes, ConnError>>;

/// The frames of a byte stream (TLS or QUIC), read as they are asked for.
///
/// Frames are read straight into one buffer and handed out as shared slices
/// of it: no copy, and no buffer of any size held while idle beyond
/// `IDLE_READ` bytes.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    max_payload: usize,
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameReader<R> {
    /// Frames of `reader` with payloads up to `max_payload` bytes.
    pub fn new(reader: R, max_payload: usize) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::new(),
            max_payload,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameStream for FrameReader<R> {
    async fn next_frame(&mut self) -> Option<Result<Bytes, ConnError>> {
        loop {
            let want = match frame_len(&self.buf, self.max_payload) {
                Ok(Some(total)) if self.buf.len() >= total => {
                    return Some(Ok(self.buf.split_to(total).freeze()));
                }
                Ok(Some(total)) => total - self.buf.len(),
                Ok(None) if self.buf.is_empty() => {
                    // Between frames. A busy connection reads on into the
                    // buffer it has (reclaimed once the last frame's bytes
                    // are gone, so nothing is allocated per frame); one with
                    // nothing to read gives the buffer back before it waits,
                    // so an idle connection holds only IDLE_READ bytes.
                    self.buf.reserve(IDLE_READ);
                    if self.buf.capacity() > IDLE_READ {
                        match self.reader.read_buf(&mut self.buf).now_or_never() {
                            Some(Ok(0)) => return None,
                            Some(Ok(_)) => continue,
                            Some(Err(e)) => return Some(Err(e.into())),
                            None => self.buf = BytesMut::new(),
                        }
                    }
                    IDLE_READ
                }
                Ok(None) => IDLE_READ,
                Err(e) => return Some(Err(e.into())),
            };
            self.buf.reserve(if want > IDLE_READ {
                want.max(READ_CHUNK)
            } else {
                want
            });
            // Cancel-safe: a read either completes into the buffer or reads nothing.
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// The frames of a WebSocket, one per binary message.
#[derive(Debug)]
pub struct WebSocketFrames<T> {
    stream: SplitStream<WebSocketStream<T>>,
    max_payload: usize,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> FrameStream for WebSocketFrames<T> {
    async fn next_frame(&mut self) -> Option<Result<Bytes, ConnError>> {
        loop {
            let item = match self.stream.next().await? {
                Ok(WsMessage::Binary(data)) => match FrameRef::parse(&data) {
                    Ok(f) if f.payload.len() <= self.max_payload => Ok(data),
                    Ok(f) => Err(ConnError::Frame(FrameError::PayloadTooLarge(
                        f.header.payload_len,
                    ))),
                    Err(e) => Err(e.into()),
                },
                Ok(WsMessage::Close(_)) => return None,
                Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_)) => continue,
                Ok(WsMessage::Text(_)) => {
                    Err(ConnError::WebSocket("text messages are not frames".into()))
                }
                Err(e) => Err(ConnError::WebSocket(e.to_string())),
            };
            return Some(item);
        }
    }
}

/// Starts the writer task for a byte stream (TLS or QUIC), which records in
/// `drained` when the peer took data it had waited to send; returns its
/// frames for the caller to read.
pub fn stream_frames<R, W, S>(
    reader: R,
    mut writer: W,
    mut source: S,
    max_payload: usize,
    drained: Drained,
) -> FrameReader<R>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    S: FrameSource,
{
    tokio::spawn(async move {
        while let Some(frame) = source.next_frame().await {
            if watched(&drained, write_frame(&mut writer, frame))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    FrameReader::new(reader, max_payload)
}

/// Writes a frame and flushes it: TLS streams hold written records until
/// flushed. A future of its own, so that the writer task keeps room for the
/// frame only while writing it; not an async fn, which would keep a second
/// copy of its arguments.
#[allow(clippy::manual_async_fn)]
fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: Bytes,
) -> impl core::future::Future<Output = std::io::Result<()>> + '_ {
    async move {
        writer.write_all(&frame).await?;
        writer.flush().await
    }
}

/// Starts the writer task for a WebSocket, which records in `drained` when
/// the peer took data it had waited to send; returns its frames for the
/// caller to read.
pub fn websocket_frames<T, S>(
    ws: WebSocketStream<T>,
    mut source: S,
    max_payload: usize,
    drained: Drained,
) -> WebSocketFrames<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: FrameSource,
{
    let (mut sink, stream) = ws.split();
    tokio::spawn(async move {
        while let Some(frame) = source.next_frame().await {
            if watched(&drained, sink.send(WsMessage::Binary(frame)))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    WebSocketFrames {
        stream,
        max_payload,
    }
}

/// Starts a reader task that puts `frames` in a bounded channel.
fn spawn_reader(mut frames: impl FrameStream) -> Incoming {
    let (tx, rx) = mpsc::channel(INCOMING_FRAMES);
    tokio::spawn(async move {
        while let Some(item) = frames.next_frame().await {
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// Starts the reader and writer tasks for a byte stream (TLS or QUIC); the
/// writer records in `drained`.
pub fn spawn_stream<R, W, S>(
    reader: R,
    writer: W,
    source: S,
    max_payload: usize,
    drained: Drained,
) -> Incoming
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    S: FrameSource,
{
    spawn_reader(stream_frames(reader, writer, source, max_payload, drained))
}

/// WebSocket limits: one frame per message, never more than a frame.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

/// Starts the reader and writer tasks for a WebSocket; the writer records
/// in `drained`.
pub fn spawn_websocket<T, S>(
    ws: WebSocketStream<T>,
    source: S,
    max_payload: usize,
    drained: Drained,
) -> Incoming
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: FrameSource,
{
    spawn_reader(websocket_frames(ws, source, max_payload, drained))
}

/// A client's connection to a relay.
#[derive(Debug)]
pub struct ClientConnection {
    /// Which transport.
    pub transport: Transport,
    /// The TLS channel binding a master signs in its Hello.
    pub channel_binding: [u8; 32],
    /// Frames from the relay.
    pub incoming: Incoming,
    /// Frames to the relay.
    pub outgoing: mpsc::Sender<Bytes>,
    /// When the relay last took frames this side had waited to send.
    pub drained: Drained,
    /// Keeps a QUIC endpoint and connection alive as long as this value.
    quic: Option<(quinn::Endpoint, quinn::Connection)>,
}

impl ClientConnection {
    /// Closes a QUIC connection at once (streams close when dropped).
    pub fn close(&self) {
        if let Some((_, c)) = &self.quic {
            c.close(0u32.into(), b"bye");
        }
    }
}

/// How long a client waits for one transport to connect before trying the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(
    f: impl core::future::Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    tokio::time::timeout(CONNECT_TIMEOUT, f)
        .await
        .map_err(|_| ConnError::Timeout)?
}

async fn tls_stream(
    addr: SocketAddr,
    pinned: PublicKey,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(pinned)?));
    Ok(connector.connect(server_name(), tcp).await?)
}

/// Connects over TLS 1.3 on TCP to the relay at `addr` holding `pinned`.
pub async fn connect_tls(
    addr: SocketAddr,
    pinned: PublicKey,
) -> Result<ClientConnection, ConnError> {
    bounded(async {
        let tls = tls_stream(addr, pinned).await?;
        let binding = channel_binding(tls.get_ref().1)?;
        let (r, w) = tokio::io::split(tls);
        let (out_tx, out_rx) = mpsc::channel(INCOMING_FRAMES);
        let drained = Drained::default();
        let incoming = spawn_stream(
            r,
            w,
            out_rx,
            conclave_protocol::frame::MAX_PAYLOAD,
            drained.clone(),
        );
        Ok(ClientConnection {
            transport: Transport::Tls,
            channel_binding: binding,
            incoming,
            outgoing: out_tx,
            drained,
            quic: None,
        })
    })
    .await
}

/// Connects over a WebSocket on TLS 1.3 to the relay at `addr` holding `pinned`.
pub async fn connect_websocket(
    addr: SocketAddr,
    pinned: PublicKey,
) -> Result<ClientConnection, ConnError> {
    bounded(async {
        let tls = tls_stream(addr, pinned).await?;
        let binding = channel_binding(tls.get_ref().1)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            "wss://conclave-relay/",
            tls,
            Some(websocket_config()),
        )
        .await
        .map_err(|e| ConnError::WebSocket(e.to_string()))?;
        let (out_tx, out_rx) = mpsc::channel(INCOMING_FRAMES);
        let drained = Drained::default();
        let incoming = spawn_websocket(
            ws,
            out_rx,
            conclave_protocol::frame::MAX_PAYLOAD,
            drained.clone(),
        );
        Ok(ClientConnection {
            transport: Transport::WebSocket,
            channel_binding: binding,
            incoming,
            outgoing: out_tx,
            drained,
            quic: None,
        })
    })
    .await
}

/// Connects over QUIC to the relay at `addr` holding `pinned`.
pub async fn connect_quic(
    addr: SocketAddr,
    pinned: PublicKey,
) -> Result<ClientConnection, ConnError> {
    bounded(async {
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|_| ConnError::Quic("bad bind address".into()))?;
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(
            crate::quic::client_config_quic(pinned).map_err(|e| ConnError::Quic(e.to_string()))?,
        );
        let conn = endpoint
            .connect(addr, "conclave-relay")
            .map_err(|e| ConnError::Quic(e.to_string()))?
            .await
            .map_err(|e| ConnError::Quic(e.to_string()))?;
        let mut binding = [0u8; 32];
        conn.export_keying_material(
            &mut binding,
            conclave_protocol::stage1::CHANNEL_BINDING_LABEL,
            b"",
        )
        .map_err(|_| ConnError::Quic("no channel binding".into()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ConnError::Quic(e.to_string()))?;
        let (out_tx, out_rx) = mpsc::channel(INCOMING_FRAMES);
        let drained = Drained::default();
        let incoming = spawn_stream(
            recv,
            send,
            out_rx,
            conclave_protocol::frame::MAX_PAYLOAD,
            drained.clone(),
        );
        Ok(ClientConnection {
            transport: Transport::Quic,
            channel_binding: binding,
            incoming,
            outgoing: out_tx,
            drained,
            quic: Some((endpoint, conn)),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// R18: a peer that takes what this side had to wait to send counts as
    /// alive; a write that went through at once, or one a silent peer never
    /// lets through, shows nothing.
    #[tokio::test]
    async fn only_writes_that_waited_and_went_through_show_the_peer() {
        let (mut near, mut far) = tokio::io::duplex(64);
        let drained = Drained::default();
        // Room in the buffer: no evidence of the peer.
        watched(&drained, near.write_all(&[1; 32])).await.unwrap();
        assert_eq!(drained.last(), None);
        // More than the buffer holds, and nobody reads: the write waits.
        let stuck = tokio::time::timeout(
            Duration::from_millis(100),
            watched(&drained, near.write_all(&[2; 224])),
        )
        .await;
        assert!(stuck.is_err());
        assert_eq!(drained.last(), None);
        // The peer reads: a write that had to wait goes through.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            while far.read(&mut buf).await.unwrap() > 0 {}
        });
        let before = Instant::now();
        watched(&drained, near.write_all(&[3; 224])).await.unwrap();
        assert!(drained.last().is_some_and(|t| t >= before));
        drop(near);
        reader.await.unwrap();
    }
}
