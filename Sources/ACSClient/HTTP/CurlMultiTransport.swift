import CCurl
import Dispatch
import Foundation
import Glibc

/// HTTP over libcurl's multi interface, driven by Dispatch: curl's socket callback turns into
/// `DispatchSourceRead`/`Write` on one serial queue, its timer callback into one `DispatchSourceTimer`,
/// and both call `curl_multi_socket_action`. Many requests are in flight at once, connections are
/// reused (HTTP/2 multiplexed when offered), and no thread is blocked — the shape of
/// swift-corelibs-foundation's `MultiHandle.swift`, minus its forced `try`s.
///
/// This file owns the multi handle (`CurlEasyTransfer` owns each easy handle); every libcurl call
/// happens on `queue`.
public final class CurlMultiTransport: HTTPTransport, @unchecked Sendable {
    /// Settings shared by every request.
    public struct Options: Sendable {
        /// A PEM file of CA certificates to trust instead of the system store (a private CA, a test CA).
        public var caFile: String?
        /// An explicit proxy URL; when nil, libcurl honours `https_proxy`/`no_proxy` from the environment.
        public var proxy: String?
        /// Connections per host. HTTP/1.1 needs one per concurrent request (HTTP/2 multiplexes), so this caps
        /// parallel sends: 64 keeps 50 concurrent SMTP clients from queueing behind ACS latency (measured
        /// with Tests/Benchmarks/acs_delivery_throughput.py: 32 capped a 200 ms ACS at 144 msg/s, 64 gives 235).
        public var maxConnectionsPerHost: Int = 64
        /// Largest response body accepted, in octets: ACS answers are small JSON documents.
        public var maxResponseSize: Int = 1 << 20

        public init(caFile: String? = nil, proxy: String? = nil) {
            self.caFile = caFile
            self.proxy = proxy
        }
    }

    private let multi: CurlMulti

    public struct InitializationError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(options: Options = Options()) throws {
        multi = try CurlMulti(options: options)
    }

    deinit {
        // The multi handle is torn down on its own queue; pending transfers fail with an error.
        let multi = self.multi
        multi.queue.async { multi.shutDown() }
    }

    public func perform(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
    ) {
        let multi = self.multi
        multi.queue.async { multi.start(request, completion: completion) }
    }

    /// Number of transfers in flight (for tests and status).
    public var inFlight: Int {
        let multi = self.multi
        return multi.queue.sync { multi.transferCount }
    }
}

/// The multi handle and everything attached to it, confined to `queue`. libcurl's callbacks point here
/// (not at the public facade), so they stay valid while the handle is torn down.
private final class CurlMulti: @unchecked Sendable {
    let queue = DispatchQueue(label: "acs.http.curl")
    private let handle: UnsafeMutableRawPointer
    private let options: CurlMultiTransport.Options
    private var transfers: [UnsafeMutableRawPointer: CurlEasyTransfer] = [:]
    private var sockets: [curl_socket_t: SocketWatch] = [:]
    private var timer: DispatchSourceTimer?
    private var isShutDown = false

    private static let globalInitialization: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    init(options: CurlMultiTransport.Options) throws {
        guard Self.globalInitialization == CURLE_OK else {
            throw CurlMultiTransport.InitializationError(description: "curl_global_init failed")
        }
        guard let handle = curl_multi_init() else {
            throw CurlMultiTransport.InitializationError(description: "curl_multi_init failed")
        }
        self.handle = handle
        self.options = options
        let me = Unmanaged.passUnretained(self).toOpaque()
        let results = [
            acsgw_curl_multi_setopt_pointer(handle, CURLMOPT_SOCKETDATA, me),
            acsgw_curl_multi_setopt_socket_callback(handle) { _, socket, what, userp, _ in
                guard let userp else { return -1 }
                Unmanaged<CurlMulti>.fromOpaque(userp).takeUnretainedValue().watch(socket, what: what)
                return 0
            },
            acsgw_curl_multi_setopt_pointer(handle, CURLMOPT_TIMERDATA, me),
            acsgw_curl_multi_setopt_timer_callback(handle) { _, timeoutMilliseconds, userp in
                guard let userp else { return -1 }
                Unmanaged<CurlMulti>.fromOpaque(userp).takeUnretainedValue().scheduleTimer(timeoutMilliseconds)
                return 0
            },
            acsgw_curl_multi_setopt_long(handle, CURLMOPT_MAX_HOST_CONNECTIONS, options.maxConnectionsPerHost),
            acsgw_curl_multi_setopt_long(handle, CURLMOPT_PIPELINING, Int(CURLPIPE_MULTIPLEX)),
        ]
        guard results.allSatisfy({ $0 == CURLM_OK }) else {
            curl_multi_cleanup(handle)
            throw CurlMultiTransport.InitializationError(description: "curl_multi_setopt failed")
        }
    }

    var transferCount: Int {
        dispatchPrecondition(condition: .onQueue(queue))
        return transfers.count
    }

    func start(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
    ) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !isShutDown else {
            completion(.failure(HTTPTransportError(.other, "HTTP transport shut down")))
            return
        }
        let transfer: CurlEasyTransfer
        do {
            transfer = try CurlEasyTransfer(
                request: request, options: options, maxResponseSize: options.maxResponseSize, completion: completion)
        } catch let error as CurlEasyTransfer.SetupError {
            completion(.failure(HTTPTransportError(.other, error.message)))
            return
        } catch {
            completion(.failure(HTTPTransportError(.other, "\(error)")))
            return
        }
        transfers[transfer.handle] = transfer
        let code = curl_multi_add_handle(handle, transfer.handle)
        guard code == CURLM_OK else {
            transfers[transfer.handle] = nil
            transfer.cleanUp()
            completion(.failure(HTTPTransportError(.other, String(cString: curl_multi_strerror(code)))))
            return
        }
        // curl_multi_add_handle has asked for a 0 ms timeout through the timer callback: the
        // transfer starts when that timer fires.
    }

    /// Fails pending transfers, closes cached connections and frees the multi handle.
    func shutDown() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !isShutDown else { return }
        isShutDown = true
        timer?.cancel()
        timer = nil
        for (easy, transfer) in transfers {
            curl_multi_remove_handle(handle, easy)
            transfer.cleanUp()
            transfer.completion(.failure(HTTPTransportError(.other, "HTTP transport shut down")))
        }
        transfers = [:]
        curl_multi_cleanup(handle)  // closes cached connections
    }

    // MARK: Driving libcurl

    private func socketAction(_ socket: curl_socket_t, _ events: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !isShutDown else { return }
        var running: Int32 = 0
        _ = curl_multi_socket_action(handle, socket, events, &running)
        collectFinishedTransfers()
    }

    private func collectFinishedTransfers() {
        while true {
            var remaining: Int32 = 0
            guard let message = curl_multi_info_read(handle, &remaining) else { return }
            var result = CURLE_OK
            guard let easy = acsgw_curl_msg_done_handle(message, &result),
                let transfer = transfers.removeValue(forKey: easy)
            else { continue }
            curl_multi_remove_handle(handle, easy)
            let outcome = transfer.result(for: result)
            transfer.cleanUp()
            transfer.completion(outcome)
        }
    }

    // MARK: Callbacks (called by libcurl from within curl_multi_* calls, hence on `queue`)

    private func scheduleTimer(_ milliseconds: Int) {
        dispatchPrecondition(condition: .onQueue(queue))
        if timer == nil {
            let source = DispatchSource.makeTimerSource(queue: queue)
            source.setEventHandler { [weak self] in self?.socketAction(curl_socket_t(CURL_SOCKET_TIMEOUT), 0) }
            source.schedule(deadline: .distantFuture)
            source.resume()
            timer = source
        }
        // -1 deletes the timer; 0 means "as soon as possible" — but not from inside this callback.
        if milliseconds < 0 {
            timer?.schedule(deadline: .distantFuture)
        } else {
            timer?.schedule(deadline: .now() + .milliseconds(milliseconds))
        }
    }

    private func watch(_ socket: curl_socket_t, what: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        let watch =
            sockets[socket]
            ?? {
                let created = SocketWatch(socket: socket, queue: queue) { [weak self] events in
                    self?.socketAction(socket, events)
                } onIdle: { [weak self] in
                    self?.sockets[socket] = nil
                }
                sockets[socket] = created
                return created
            }()
        switch what {
        case CURL_POLL_IN: watch.want(read: true, write: false)
        case CURL_POLL_OUT: watch.want(read: false, write: true)
        case CURL_POLL_INOUT: watch.want(read: true, write: true)
        default: watch.want(read: false, write: false)  // CURL_POLL_REMOVE
        }
    }
}

/// The Dispatch sources watching one of libcurl's sockets.
///
/// Dispatch requires a descriptor to stay open until every source on it is cancelled, but libcurl closes
/// its sockets when it likes — some (its resolver's socketpair) without any close callback — and the number
/// is reused at once. So the sources watch a `dup` of the socket, which this object owns and closes only once
/// its sources are cancelled: whatever curl does with its own descriptor, the watched one cannot be reused
/// under a live source (`CurlMultiTransportTests.hostNamesResolve_andManyTransfersByNameAllComplete`).
private final class SocketWatch: @unchecked Sendable {  // confined to the transport's queue
    private let socket: curl_socket_t
    private let queue: DispatchQueue
    private let onEvent: (Int32) -> Void
    private let onIdle: () -> Void
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var cancelling = 0
    private var wanted = (read: false, write: false)
    /// Our duplicate of `socket`, open while sources may use it.
    private var watched: Int32 = -1
    /// Set on CURL_POLL_REMOVE: curl may close its socket and reuse the number, so the current duplicate
    /// must not serve a later registration of that number.
    private var retired = false

    init(
        socket: curl_socket_t, queue: DispatchQueue, onEvent: @escaping (Int32) -> Void,
        onIdle: @escaping () -> Void
    ) {
        self.socket = socket
        self.queue = queue
        self.onEvent = onEvent
        self.onIdle = onIdle
    }

    func want(read: Bool, write: Bool) {
        if !read && !write { retired = true }
        wanted = (read, write)
        apply()
    }

    private func apply() {
        guard cancelling == 0 else { return }  // resumed by the last cancel handler
        if !wanted.read, let source = readSource {
            readSource = nil
            cancel(source)
        }
        if !wanted.write, let source = writeSource {
            writeSource = nil
            cancel(source)
        }
        guard cancelling == 0 else { return }
        if readSource == nil, writeSource == nil, watched >= 0, retired || (!wanted.read && !wanted.write) {
            close(watched)
            watched = -1
        }
        retired = false
        let needsSource = (wanted.read && readSource == nil) || (wanted.write && writeSource == nil)
        if needsSource && watched < 0 {
            watched = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            guard watched >= 0 else {
                // Out of descriptors: let curl fail the transfer rather than wait for an event that never comes
                // (later, not from inside curl's socket callback, which must not re-enter curl).
                queue.async { [self] in onEvent(Int32(CURL_CSELECT_ERR)) }
                return
            }
        }
        if wanted.read, readSource == nil {
            let source = DispatchSource.makeReadSource(fileDescriptor: watched, queue: queue)
            source.setEventHandler { [unowned self] in onEvent(Int32(CURL_CSELECT_IN)) }
            source.resume()
            readSource = source
        }
        if wanted.write, writeSource == nil {
            let source = DispatchSource.makeWriteSource(fileDescriptor: watched, queue: queue)
            source.setEventHandler { [unowned self] in onEvent(Int32(CURL_CSELECT_OUT)) }
            source.resume()
            writeSource = source
        }
        if readSource == nil, writeSource == nil, !wanted.read, !wanted.write {
            onIdle()
        }
    }

    private func cancel(_ source: DispatchSourceProtocol) {
        cancelling += 1
        source.setCancelHandler { [self] in
            cancelling -= 1
            if cancelling == 0 { apply() }
        }
        source.cancel()
    }
}
