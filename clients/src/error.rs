//! [`Error`]: everything the SDK can fail with, each variant keeping its cause.

use chat_proto::ErrorCode;

/// An SDK failure. The messages are written for people: the `chat` program prints them as
/// they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP API answered with an error body (`{"error":{"code","message"}}`).
    #[error("the server refused: {message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's error code (`conflict`, `unauthorized` ...).
        code: String,
        /// The API's message.
        message: String,
    },
    /// The HTTP request did not get an answer (connection refused, timeout, TLS).
    #[error("cannot reach the HTTP API at {url}: {cause}")]
    Http {
        /// The URL asked.
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// The HTTP API answered something that is not the documented shape.
    #[error("unexpected answer from {url}: {cause}")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        cause: String,
    },
    /// The server refused a request over MQTT with an `error` event.
    #[error("the server refused the {request}: {message} ({code})")]
    Refused {
        /// The request type (`send`, `history` ...).
        request: String,
        /// The protocol error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("no answer to the {0} within the timeout")]
    Timeout(String),
    /// The connection ended before the answer came; the request may or may not have been
    /// carried out (sends are different: they stay in the outbox and are retried).
    #[error("the connection ended before the answer to the {0}")]
    ConnectionLost(String),
    /// Not connected to the MQTT broker in time; the cause is the last connection failure.
    #[error("cannot connect to the MQTT broker: {0}")]
    Unreachable(String),
    /// The client was closed (or its task ended).
    #[error("the client is closed")]
    Closed,
    /// Bad input from the caller (an invalid id, an empty message, a mismatched state file).
    #[error("{0}")]
    Invalid(String),
    /// Keys, CSRs, certificates or the TLS configuration.
    #[error("certificate or key problem: {0}")]
    Tls(String),
    /// Reading or writing the state file.
    #[error("state file {path}: {cause}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        cause: String,
    },
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
