import Dispatch
import Glibc

/// Why a stream stopped delivering input.
public enum StreamEnd: Sendable, Equatable, CustomStringConvertible {
    /// The peer closed its side (EOF, or a TLS close_notify).
    case peerClosed
    /// `read(2)` failed with this errno (ECONNRESET…).
    case readFailed(Int32)
    /// `send(2)` failed with this errno (EPIPE, ECONNRESET…).
    case writeFailed(Int32)
    /// The TLS layer failed: a handshake the client could not complete, a bad record. The text is OpenSSL's
    /// reason (never secret: no keys or plaintext).
    case tlsFailed(String)

    public var description: String {
        switch self {
        case .peerClosed: "client closed the connection"
        case .readFailed(let error): "read failed: \(String(cString: strerror(error)))"
        case .writeFailed(let error): "write failed: \(String(cString: strerror(error)))"
        case .tlsFailed(let reason): "TLS failed: \(reason)"
        }
    }
}

/// What a TLS session negotiated, for the audit line.
public struct TLSSessionInfo: Sendable, Hashable {
    /// `TLSv1.3`, `TLSv1.2`…
    public var version: String
    /// OpenSSL's name of the cipher suite, e.g. `TLS_AES_256_GCM_SHA384`.
    public var cipher: String

    public init(version: String, cipher: String) {
        self.version = version
        self.cipher = cipher
    }
}

/// Events of a ``ByteStream``, delivered on the stream's queue.
public protocol ByteStreamDelegate: AnyObject {
    /// Octets arrived (plaintext, for a TLS stream). Not called while reading is suspended.
    func streamReceived(_ bytes: ArraySlice<UInt8>)
    /// No more input will come; the owner closes the stream (possibly after writing a last reply).
    func streamEnded(_ end: StreamEnd)
    /// Every octet written so far has been handed to the kernel.
    func streamDrained()
    /// A TLS handshake completed; writes from now on are encrypted.
    func streamSecured(_ info: TLSSessionInfo)
}

extension ByteStreamDelegate {
    public func streamSecured(_ info: TLSSessionInfo) {}
}

/// A non-blocking, bidirectional byte stream on a serial queue: reads delivered to a delegate, writes
/// buffered (and bounded: a peer that does not read makes the stream stop reading), suspend and resume,
/// half-close and close. ``SocketStream`` is the socket itself; ``TLSStream`` is TLS layered over one.
///
/// Every member is used on ``queue`` only.
public protocol ByteStream: AnyObject {
    var queue: DispatchQueue { get }
    var delegate: (any ByteStreamDelegate)? { get set }
    /// Octets written but not yet handed to the kernel.
    var unsentOctets: Int { get }
    /// Starts reading (once).
    func start()
    func write(_ bytes: [UInt8])
    /// Stops delivering input (back-pressure): the kernel's buffers fill and the peer's writes stall.
    func suspendReading()
    /// Delivers input again, starting with anything already buffered.
    func resumeReading()
    /// Half-close once every written octet is out: the peer sees the end of the stream while we keep reading.
    func shutdownOutput()
    /// Closes now: what can be written without waiting is written, the rest is dropped. Idempotent.
    func close()
}

/// A connected, non-blocking socket driven by a Dispatch read source and write source on one serial queue.
/// No call blocks.
///
/// Reading: each wake-up reads until the socket is drained or ``Limits/readsPerTurn`` reads were made (then it
/// yields the queue to other connections and carries on); reading stops while the owner suspended it, and
/// while more than ``Limits/maxUnsentOctets`` wait to be written. The descriptor is closed once both sources
/// are cancelled (Dispatch requires that it outlive them), then `onClosed` runs on the queue.
public final class SocketStream: ByteStream, @unchecked Sendable {
    /// Every limit with its reason.
    public struct Limits: Sendable {
        /// Read buffer size: large enough for a pipelined group or a fat DATA segment in one read.
        public var readSize = 64 * 1024
        /// Reads in one turn before yielding the queue to other work (fairness between connections).
        public var readsPerTurn = 16
        /// Unsent octets beyond which the stream stops reading: a client that does not read its replies must
        /// not make us buffer without bound.
        public var maxUnsentOctets = 256 * 1024

        public init() {}
    }

    public let fd: Int32
    public let queue: DispatchQueue
    public weak var delegate: (any ByteStreamDelegate)?
    private let limits: Limits
    private let onClosed: @Sendable () -> Void
    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite

    private enum State {
        case created
        case open
        /// The peer's input ended or failed; writes may still go out until the owner closes.
        case ended
        case closed
    }
    private var state = State.created
    /// What the owner wants (``suspendReading()``/``resumeReading()``).
    private var readingWanted = true
    private var readSourceSuspended = true  // sources start suspended
    private var writeSourceSuspended = true
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var shutdownOutputWhenFlushed = false

    public init(fd: Int32, queue: DispatchQueue, limits: Limits = Limits(), onClosed: @escaping @Sendable () -> Void) {
        self.fd = fd
        self.queue = queue
        self.limits = limits
        self.onClosed = onClosed
        readSource = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        writeSource = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
    }

    public var unsentOctets: Int { output.count - outputOffset }

    public func start() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard state == .created else { return }
        state = .open
        readSource.setEventHandler { [unowned self] in readAvailable() }
        writeSource.setEventHandler { [unowned self] in flush() }
        ListeningSocket.closeWhenCancelled(fd, sources: [readSource, writeSource], queue: queue, then: onClosed)
        updateReading()
    }

    public func suspendReading() {
        dispatchPrecondition(condition: .onQueue(queue))
        readingWanted = false
        updateReading()
    }

    public func resumeReading() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !readingWanted else { return }
        readingWanted = true
        updateReading()
    }

    public func write(_ bytes: [UInt8]) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard state == .open || state == .ended, !bytes.isEmpty else { return }
        if outputOffset == output.count {
            output = bytes
            outputOffset = 0
        } else {
            output.append(contentsOf: bytes)
        }
        flush()
    }

    public func shutdownOutput() {
        dispatchPrecondition(condition: .onQueue(queue))
        shutdownOutputWhenFlushed = true
        if unsentOctets == 0 { Glibc.shutdown(fd, Int32(SHUT_WR)) }
    }

    public func close() {
        dispatchPrecondition(condition: .onQueue(queue))
        switch state {
        case .closed:
            return
        case .created:
            // Never started: nothing watches the descriptor yet, but the sources exist and must be cancelled.
            state = .closed
            ListeningSocket.closeWhenCancelled(fd, sources: [readSource, writeSource], queue: queue, then: onClosed)
        case .open, .ended:
            state = .closed
            // A last reply (421 at shutdown) usually fits the socket buffer: one try, no waiting.
            if unsentOctets > 0 { sendPending() }
        }
        // Cancelling a suspended source never delivers its cancel handler: resume first.
        if readSourceSuspended { readSource.resume() }
        if writeSourceSuspended { writeSource.resume() }
        readSourceSuspended = false
        writeSourceSuspended = false
        readSource.cancel()
        writeSource.cancel()
    }

    // MARK: Reading

    private var shouldRead: Bool {
        state == .open && readingWanted && unsentOctets <= limits.maxUnsentOctets
    }

    private func updateReading() {
        if shouldRead && readSourceSuspended {
            readSourceSuspended = false
            readSource.resume()
            // Input may already be waiting in the socket, and Dispatch may not report it again: look now.
            queue.async { [weak self] in self?.readAvailable() }
        } else if !shouldRead && !readSourceSuspended && state != .closed {
            readSourceSuspended = true
            readSource.suspend()
        }
    }

    private func readAvailable() {
        dispatchPrecondition(condition: .onQueue(queue))
        // Read until the socket is drained (EAGAIN) or at end of stream: Dispatch may not report the
        // descriptor again for data (or an EOF) that was already there when we stopped. The buffer lives for
        // one turn only, so an idle connection holds none.
        var readBuffer = [UInt8](repeating: 0, count: limits.readSize)
        for _ in 0..<limits.readsPerTurn {
            guard shouldRead else { return }
            let size = limits.readSize
            let count = readBuffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, size) }
            if count > 0 {
                delegate?.streamReceived(readBuffer[0..<count])
            } else if count == 0 {
                end(.peerClosed)
                return
            } else {
                let error = errno
                if error == EAGAIN || error == EWOULDBLOCK { return }
                if error == EINTR { continue }
                end(.readFailed(error))
                return
            }
        }
        // A fast client still has data waiting: yield the queue to other work, then carry on.
        queue.async { [weak self] in self?.readAvailable() }
    }

    private func end(_ end: StreamEnd) {
        guard state == .open else { return }
        state = .ended
        updateReading()
        delegate?.streamEnded(end)
    }

    // MARK: Writing

    /// Sends what the socket takes now; true when everything is out, false when it would block or failed.
    @discardableResult
    private func sendPending() -> Bool {
        while outputOffset < output.count {
            let written = output.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + outputOffset, raw.count - outputOffset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                outputOffset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= limits.maxUnsentOctets)
        outputOffset = 0
        return true
    }

    private func flush() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard state == .open || state == .ended else { return }
        if !sendPending() {
            let error = errno
            guard error == EAGAIN || error == EWOULDBLOCK else {
                output = []
                outputOffset = 0
                if state == .open {
                    end(.writeFailed(error))
                } else {
                    delegate?.streamEnded(.writeFailed(error))
                }
                return
            }
            if writeSourceSuspended {
                writeSourceSuspended = false
                writeSource.resume()
            }
            updateReading()  // stops reading while too much is unsent
            return
        }
        if !writeSourceSuspended {
            writeSourceSuspended = true
            writeSource.suspend()
        }
        if shutdownOutputWhenFlushed { Glibc.shutdown(fd, Int32(SHUT_WR)) }
        updateReading()
        delegate?.streamDrained()
    }
}
