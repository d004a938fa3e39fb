import Hummingbird

/// The connection a request came on: its HTTP version and the client's address, counted by `/admin/requests`
/// and kept with recorded messages, so tests can see that a client spoke h2 and shared connections.
struct RequestConnection: Sendable, Hashable {
    /// "1.1" or "2".
    var httpVersion: String
    /// The peer's address and port (one per TCP connection while it is open).
    var client: String
}

/// Hummingbird's basic context plus the ``RequestConnection``, read from the channel the request came on.
struct EmulatorRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let connection: RequestConnection

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        // An HTTP/1.1 request is handled on the accepted connection, a child of the listening channel; an
        // HTTP/2 request on a stream channel, a child of the connection. (`parent` is fixed at creation, so
        // reading it off the event loop is safe; the stream's address is its connection's.)
        let channel = source.channel
        connection = RequestConnection(
            httpVersion: channel.parent?.parent == nil ? "1.1" : "2",
            client: channel.remoteAddress.map { "\($0)" } ?? "unknown")
    }
}
