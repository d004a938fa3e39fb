import COpenSSL
import Dispatch

/// TLS as a layer of a ``SocketStream``: OpenSSL works on two memory BIOs (ciphertext in, ciphertext out) and
/// never touches the socket, so every call returns at once and runs on the connection's own queue. No thread
/// per connection, no blocking call on a Dispatch worker.
///
/// The layer keeps the stream's contract: input is delivered as plaintext only while reading is wanted
/// (suspending it suspends the socket, so back-pressure reaches the client's TCP window), writes made before
/// the handshake completes are held and sent encrypted after it, and ``unsentOctets`` counts what the socket
/// has not taken yet. Timeouts and the minimum data rate stay with the owner, which sees plaintext octets.
///
/// Renegotiation is refused (``TLSContext``); a peer's close_notify ends the stream like an EOF.
public final class TLSStream: ByteStream, ByteStreamDelegate, @unchecked Sendable {
    public var queue: DispatchQueue { lower.queue }
    public weak var delegate: (any ByteStreamDelegate)?
    /// The negotiated version and cipher, once the handshake completed.
    public private(set) var sessionInfo: TLSSessionInfo?

    private let lower: SocketStream
    private let ssl: OpaquePointer
    /// Ciphertext from the peer, read by OpenSSL.
    private let input: OpaquePointer
    /// Ciphertext from OpenSSL, for the peer.
    private let output: OpaquePointer
    private let context: TLSContext  // keeps the SSL_CTX alive as long as the session

    private enum State {
        case handshaking
        case established
        /// The stream ended (peer closed, TLS failure) or was closed: nothing more is read or written.
        case finished
    }
    private var state = State.handshaking
    private var readingWanted = true
    /// Plaintext written before the handshake completed.
    private var heldPlaintext: [UInt8] = []
    /// Plaintext octets decrypted per SSL_read: a TLS record holds at most 16 KiB.
    private static let plaintextChunk = 16 * 1024

    /// Layers TLS over `lower`, which becomes this stream's source of ciphertext (its delegate is replaced).
    /// `lower` may already be started (STARTTLS) or not (implicit TLS: ``start()`` starts it).
    public init(over lower: SocketStream, context: TLSContext) throws(TLSConfigurationError) {
        guard let ssl = context.makeSession() else {
            throw TLSConfigurationError("TLS: cannot create a session: \(TLSContext.openSSLError())")
        }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSConfigurationError("TLS: cannot create memory buffers")
        }
        // SSL_set_bio takes ownership of both BIOs: SSL_free frees them.
        SSL_set_bio(ssl, input, output)
        SSL_set_accept_state(ssl)
        self.lower = lower
        self.ssl = ssl
        self.input = input
        self.output = output
        self.context = context
        lower.delegate = self
    }

    deinit {
        SSL_free(ssl)
    }

    public var unsentOctets: Int { lower.unsentOctets + heldPlaintext.count }

    public func start() {
        dispatchPrecondition(condition: .onQueue(queue))
        lower.start()
    }

    public func write(_ bytes: [UInt8]) {
        dispatchPrecondition(condition: .onQueue(queue))
        switch state {
        case .handshaking:
            heldPlaintext += bytes
        case .established:
            encrypt(bytes)
        case .finished:
            break
        }
    }

    public func suspendReading() {
        dispatchPrecondition(condition: .onQueue(queue))
        readingWanted = false
        lower.suspendReading()
    }

    public func resumeReading() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !readingWanted else { return }
        readingWanted = true
        lower.resumeReading()
        // Records already received and decrypted (or still in the input BIO) would otherwise wait for the
        // socket's next event, which may never come.
        queue.async { [weak self] in self?.decryptAvailable() }
    }

    public func shutdownOutput() {
        dispatchPrecondition(condition: .onQueue(queue))
        sendCloseNotify()
        lower.shutdownOutput()
    }

    public func close() {
        dispatchPrecondition(condition: .onQueue(queue))
        if state == .established { sendCloseNotify() }
        state = .finished
        lower.close()
    }

    // MARK: ByteStreamDelegate (the socket below)

    public func streamReceived(_ bytes: ArraySlice<UInt8>) {
        guard state != .finished else { return }
        let written = bytes.withUnsafeBytes { BIO_write(input, $0.baseAddress, Int32($0.count)) }
        guard written == bytes.count else {
            fail("cannot buffer received records")
            return
        }
        switch state {
        case .handshaking: handshake()
        case .established: decryptAvailable()
        case .finished: break
        }
    }

    public func streamEnded(_ end: StreamEnd) {
        guard state != .finished else { return }
        let handshaking = state == .handshaking
        state = .finished
        if handshaking, end == .peerClosed {
            delegate?.streamEnded(.tlsFailed("the client closed the connection during the handshake"))
        } else {
            delegate?.streamEnded(end)
        }
    }

    public func streamDrained() {
        guard state == .established, heldPlaintext.isEmpty else { return }
        delegate?.streamDrained()
    }

    // MARK: The TLS engine

    private func handshake() {
        ERR_clear_error()  // the error queue is per thread, and Dispatch workers serve other connections too
        let result = SSL_do_handshake(ssl)
        sendCiphertext()
        guard result == 1 else {
            let error = SSL_get_error(ssl, result)
            if error == SSL_ERROR_WANT_READ { return }
            fail(Self.reason(error))
            return
        }
        state = .established
        let version = SSL_get_version(ssl).map { String(cString: $0) } ?? "unknown"
        let cipher = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) }
        let info = TLSSessionInfo(version: version, cipher: cipher ?? "unknown")
        sessionInfo = info
        delegate?.streamSecured(info)
        guard state == .established else { return }  // the owner may have closed
        if !heldPlaintext.isEmpty {
            let held = heldPlaintext
            heldPlaintext = []
            encrypt(held)
        }
        // Application data may have arrived together with the client's Finished message.
        decryptAvailable()
    }

    private func decryptAvailable() {
        dispatchPrecondition(condition: .onQueue(queue))
        // Per call, not per connection: an idle connection holds no plaintext buffer.
        var plaintextBuffer = [UInt8](repeating: 0, count: Self.plaintextChunk)
        while state == .established && readingWanted {
            ERR_clear_error()
            let count = plaintextBuffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if count > 0 {
                delegate?.streamReceived(plaintextBuffer[0..<Int(count)])
                continue
            }
            let error = SSL_get_error(ssl, count)
            sendCiphertext()  // a post-handshake message (a key update) may need an answer
            switch error {
            case SSL_ERROR_WANT_READ:
                return
            case SSL_ERROR_ZERO_RETURN:
                state = .finished
                delegate?.streamEnded(.peerClosed)
            default:
                fail(Self.reason(error))
            }
            return
        }
    }

    private func encrypt(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        ERR_clear_error()
        let written = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        guard written == bytes.count else {
            fail(Self.reason(SSL_get_error(ssl, written)))
            return
        }
        sendCiphertext()
    }

    /// Moves what OpenSSL produced for the peer to the socket.
    private func sendCiphertext() {
        var pending = acsgw_bio_pending(output)
        while pending > 0 {
            var chunk = [UInt8](repeating: 0, count: pending)
            let count = chunk.withUnsafeMutableBytes { BIO_read(output, $0.baseAddress, Int32($0.count)) }
            guard count > 0 else { return }
            if Int(count) < chunk.count { chunk.removeLast(chunk.count - Int(count)) }
            lower.write(chunk)
            pending = acsgw_bio_pending(output)
        }
    }

    private func sendCloseNotify() {
        guard state == .established else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        sendCiphertext()
    }

    private func fail(_ reason: String) {
        guard state != .finished else { return }
        state = .finished
        // An alert OpenSSL prepared (protocol_version, handshake_failure) tells the client why.
        sendCiphertext()
        delegate?.streamEnded(.tlsFailed(reason))
    }

    private static func reason(_ error: Int32) -> String {
        switch error {
        case SSL_ERROR_SSL: TLSContext.openSSLError()
        case SSL_ERROR_SYSCALL: "unexpected end of the stream"
        default: "OpenSSL error \(error)"
        }
    }
}
