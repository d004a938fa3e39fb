import Foundation
import Hummingbird
import NIOCore

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
    /// The TCP connection (for HTTP/2, the stream's parent), which a `refuse` fault drops.
    private let connectionChannel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        // An HTTP/1.1 request is handled on the accepted connection, a child of the listening channel; an
        // HTTP/2 request on a stream channel, a child of the connection. (`parent` is fixed at creation, so
        // reading it off the event loop is safe; the stream's address is its connection's.)
        let channel = source.channel
        let isHTTP2 = channel.parent?.parent != nil
        connection = RequestConnection(
            httpVersion: isHTTP2 ? "2" : "1.1", client: channel.remoteAddress.map { "\($0)" } ?? "unknown")
        connectionChannel = isHTTP2 ? channel.parent ?? channel : channel
    }

    /// Closes the whole connection with a reset (SO_LINGER 0) rather than a FIN where the socket allows it, so
    /// the client sees "connection reset by peer", as from a server that went away. Over TLS the close may
    /// first send close_notify; either way no HTTP answer arrives. Every request in flight on the connection
    /// (other HTTP/2 streams included) fails with it, as in a real outage.
    func dropConnection() async {
        let channel = connectionChannel
        // NIO's socket channels provide socket options; SO_LINGER takes a `linger`, not the integer of
        // `ChannelOptions.socketOption`.
        if let socket = channel as? any SocketOptionProvider {
            try? await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await channel.close(mode: .all).get()
    }
}
