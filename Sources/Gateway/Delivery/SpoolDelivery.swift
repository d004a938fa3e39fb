import ACSClient
import ACSEmail
import Dispatch
import Foundation
import Glibc
import Logging
import SMTPProtocol
import SMTPServer
import Spool

/// Moves spooled messages through ACS: the one scheduler of a spool, for the life of the daemon.
///
/// Exactly once: each message's `Operation-Id` is fixed when it is spooled and sent on every attempt.
/// An attempt whose outcome was not seen (a timeout, a lost connection) leaves `outcomeUnknown`, and the
/// next attempt first reads the operation's status: ACS knows it → it was sent, follow it; 404 → send. A
/// crash leaves no mark of the sends it interrupted, so a start treats every message it finds `queued` as
/// unknown and asks first (`askFirst`): that costs one status read per queued message after a start, and
/// saves a durable record rewrite before every send, and another when ACS accepts (``AttemptResult``).
/// So neither a restart nor a retry sends a message twice,
/// without relying on ACS's undocumented handling of a repeated `Operation-Id`.
///
/// Order: FIFO by arrival (ids are time-ordered), alternating between messages never tried and messages
/// due for a retry, so a backlog of deferred mail does not starve new mail.
///
/// Concurrency: the index and timers live on one serial queue; attempts (file I/O, translation, ACS) run on
/// a work queue and hold the message's spool lock throughout, so `queue` commands wait for them.
public final class SpoolDelivery: @unchecked Sendable {
    /// What delivery needs that a reload may change.
    struct Dependencies: Sendable {
        var client: ACSEmailClient
        var translator: MessageTranslator
        var settings: DeliverySettings
        var bouncer: Bouncer
        var pollDeadline: Double
        var attemptTimeout: Double
    }

    private struct Entry {
        var state: SpoolState
        var due: Date
        var size: Int
        var attempts: Int
        var stamp: SpoolStamp?
        /// The record as ACS's acceptance left it, not yet written: the file still says what it said before
        /// the send (see ``AttemptResult/updated(_:pacer:unwrittenOver:)``). Valid while the file's `stamp` is
        /// unchanged.
        var unwritten: SpoolRecord? = nil
    }

    public let spool: Spool
    let pacer: DeliveryPacer
    private let daemonLock: SpoolDaemonLock
    private let logger: Logger
    private let metrics: SpoolMetrics
    private let queue = DispatchQueue(label: "delivery.scheduler")
    private let work = DispatchQueue(label: "delivery.work", attributes: .concurrent)
    private let usageLock = NSLock()

    // On `queue`:
    private var dependencies: Dependencies
    private var entries: [String: Entry] = [:]
    /// Every entry that may become due, by due time, in the lane of what its next attempt is
    /// (``indexDue(_:)``); stale items are skipped when they come first.
    private var agenda: [Lane: DueOrder] = [:]
    private var running: Set<String> = []
    /// When the queue gauges were last computed (a walk over every entry), and whether they are stale.
    private var metricsUpdatedAt = Date.distantPast
    private var metricsStale = false
    /// Messages found queued at start: an attempt of the previous run may have reached ACS unseen, so the
    /// first attempt of this run asks ACS before it sends (kept until an attempt has gone that way).
    private var askFirst: Set<String> = []
    private var pumpRequested = false
    private var pollsRunning = 0
    private var preferFresh = true
    private var stopping = false
    private var timer: DispatchSourceTimer?
    private var timerDue: DispatchTime?
    private var drained: (@Sendable () -> Void)?

    // Under `usageLock`:
    private var usageCount = 0
    private var usageBytes = 0
    private var freeBytes = Int.max
    private var freeCheckedAt = 0.0
    private var writable = true

    /// Opens the spool, takes its lock (one daemon per spool), removes what a crash left half-written and
    /// requeues attempts a crash interrupted. Call ``start()`` to begin delivering.
    init(directory: String, dependencies: Dependencies, logger: Logger) throws {
        self.spool = try Spool(directory: directory)
        self.daemonLock = try spool.lockForDelivery()
        self.dependencies = dependencies
        self.pacer = DeliveryPacer(limits: dependencies.settings.pacerLimits)
        self.logger = logger
        self.metrics = SpoolMetrics()
        for id in spool.recoverAfterCrash() {
            logger.notice(
                "removed a message the previous run was still writing (its client never got a 250)",
                metadata: ["smtp.message_id": "\(id)"])
        }
        try load()
    }

    /// Reads every record into the index. Every queued message is asked about before its next send
    /// (`askFirst`): the previous run may have stopped in the middle of sending it. A record found `sending`
    /// (written by earlier versions before each send) is queued again with `outcomeUnknown`.
    private func load() throws {
        let now = Date()
        for id in spool.ids() {
            let lock: SpoolMessageLock
            var record: SpoolRecord
            do {
                guard let held = try spool.lock(id: id, wait: true, timeout: 5), let read = try held.read() else {
                    continue
                }
                (lock, record) = (held, read)
            } catch {
                // One damaged record must not keep the daemon from delivering the rest: it stays on disk, untouched,
                // for a person to repair (`test_a_damaged_record_is_left_alone_and_the_rest_is_delivered`).
                logger.error(
                    "cannot read a spooled message; leaving it where it is",
                    metadata: ["smtp.message_id": "\(id)", "error": "\(error)", "spool": "\(spool.queueDirectory)"])
                continue
            }
            if record.state == .sending {
                record.state = .queued
                record.outcomeUnknown = true
                record.nextAttemptAt = now
                record.lastError = "interrupted by a stop; ACS is asked before the next send"
                try lock.write(record)
                logger.notice(
                    "requeued a message whose attempt a stop interrupted; ACS will be asked before it is sent again",
                    metadata: ["smtp.message_id": "\(id)", "acs.operation_id": "\(record.operationID)"])
            }
            if record.state == .queued && !record.outcomeUnknown { askFirst.insert(id) }
            entries[id] = Entry(
                state: record.state, due: record.nextAttemptAt, size: record.size, attempts: record.attempts,
                stamp: spool.stamp(id: id))
            indexDue(id)
            addUsage(count: 1, bytes: record.size)
        }
        logger.info("spool opened", metadata: ["spool": "\(spool.directory)", "messages": "\(entries.count)"])
        if !askFirst.isEmpty {
            logger.notice(
                "queued messages from the previous run: ACS is asked about each before it is sent, since that run may have stopped while sending it",
                metadata: ["messages": "\(askFirst.count)"])
        }
        metrics.update(states: stateCounts(), oldest: oldestAge(now: now))
    }

    public func start() {
        queue.async { self.pump() }
        // A slow rescan catches records that a `queue` command changed when the daemon was not told.
        let rescan = DispatchSource.makeTimerSource(queue: queue)
        rescan.schedule(deadline: .now() + 30, repeating: 30)
        rescan.setEventHandler { [weak self] in self?.rescanOnQueue() }
        rescan.resume()
        rescanTimer = rescan
    }
    private var rescanTimer: DispatchSourceTimer?

    /// New settings, client and translator after a reload; attempts in flight finish with the old ones.
    func reconfigure(_ new: Dependencies) {
        queue.async {
            if new.settings.pacerLimits != self.dependencies.settings.pacerLimits {
                self.logger.warning("delivery rates and delivery.max_in_flight change only on restart")
            }
            self.dependencies = new
            self.requestPump()
        }
    }

    // MARK: Taking custody

    /// The reply for a new transaction when the spool cannot take more (452 4.3.1), else nil.
    func admissionRefusal(settings: DeliverySettings, incoming: Int = 0) -> SMTPReply? {
        usageLock.withLock {
            refreshDiskState()  // so a spool that became writable again takes mail again
            if !writable { return .insufficientStorage("the mail queue cannot be written") }
            if usageCount >= settings.spoolMaxMessages { return .insufficientStorage("the mail queue is full") }
            if usageBytes + incoming > settings.spoolMaxSize { return .insufficientStorage("the mail queue is full") }
            if freeBytes - incoming < settings.spoolMinFree { return .insufficientStorage("the disk is full") }
            return nil
        }
    }

    /// Whether the spool can be written (for `/readyz`).
    var isWritable: Bool {
        usageLock.withLock {
            refreshDiskState()
            return writable
        }
    }

    /// Re-reads free space and writability at most once a second (under `usageLock`).
    private func refreshDiskState() {
        let now = ProcessInfo.processInfo.systemUptime
        guard now - freeCheckedAt > 1 else { return }
        freeCheckedAt = now
        var status = statvfs()
        if statvfs(spool.directory, &status) == 0 {
            freeBytes = Int(clamping: UInt64(status.f_bavail) &* UInt64(status.f_frsize))
        }
        writable = spool.isWritable()
    }

    /// Writes a message into the spool and schedules it; `completion` hears success once the message is durable
    /// (the round of flushes that covers it has ended: only then may the client hear 250), or why the spool
    /// cannot take it (the caller answers 451/452). Writes the files on the calling thread, so call it off the
    /// connection queues; the flush is shared with other messages and does not block the caller.
    /// `completion` runs on the spool's commit thread and must not block.
    func take(
        _ message: ReceivedMessage, outcomeUnknown: Bool, lastError: String?, settings: DeliverySettings,
        completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) {
        if let refusal = admissionRefusal(settings: settings, incoming: message.data.count) {
            completion(.failure(CustodyRefused(reply: refusal)))
            return
        }
        var record = SpoolRecord(
            id: message.id, operationID: message.id, receivedAt: message.receivedAt,
            envelope: SpoolEnvelope(
                mailFrom: message.envelope.reversePath.address,
                rcptTo: message.envelope.forwardPaths.map(\.address),
                parameters: Dictionary(
                    message.envelope.mailParameters.map { ($0.keyword, $0.value) },
                    uniquingKeysWith: { first, _ in first })),
            client: SpoolClient(
                address: message.session.client.address?.ipString ?? "local", helo: message.session.heloName,
                sessionID: message.session.sessionID, transfer: message.session.transfer,
                local: message.session.client.localPeer.map {
                    SpoolLocalUser(uid: $0.uid, gid: $0.gid, pid: $0.pid, user: $0.userName)
                }),
            size: message.data.count, nextAttemptAt: Date())
        record.outcomeUnknown = outcomeUnknown
        record.lastError = lastError
        let spooled = record
        spool.add(record, message: message.data) { result in
            if case .failure(let error) = result {
                self.usageLock.withLock { self.writable = self.spool.isWritable() }
                completion(.failure(error))
                return
            }
            self.addUsage(count: 1, bytes: spooled.size)
            let stamp = self.spool.stamp(id: spooled.id)
            self.queue.async {
                self.entries[spooled.id] = Entry(
                    state: .queued, due: spooled.nextAttemptAt, size: spooled.size, attempts: 0, stamp: stamp)
                self.indexDue(spooled.id)
                self.requestPump()
            }
            completion(.success(()))
        }
    }

    // MARK: Scheduling

    /// Asks for a ``pump()`` after the blocks already on the scheduler queue: events that arrive together (the
    /// messages of one spool commit round, attempts ending at once) share one pass over the index.
    private func requestPump() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !pumpRequested else { return }
        pumpRequested = true
        queue.async {
            self.pumpRequested = false
            self.pump()
        }
    }

    /// Starts every attempt that is due and allowed, then sets the timer for the next one.
    ///
    /// Runs on every arrival and every attempt's end, so it touches only what starts now: each lane (status
    /// reads, first sends, retries and bounces) is a heap by due time, and an entry comes off it only when
    /// its attempt starts. A walk over every entry here made a backlog of n messages cost O(n log n) per
    /// message, and so did taking every due entry off only to put it back while the pacer said wait (the
    /// agenda: `DueOrderTests`; the scheduling it drives: `Tests/EndToEnd/test_spool.py`).
    private func pump() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !stopping else { return }
        let now = Date()
        var sendBlocked: Double?  // monotonic time the pacer named, if it said wait
        var sendWaitsForRelease = false
        // Follow-ups of accepted messages (status reads) are not sends: they do not use the pacer.
        while pollsRunning < dependencies.settings.maxInFlight, let (id, entry) = nextDue(.polls, now: now) {
            agenda[.polls]?.removeFirst()
            pollsRunning += 1
            dispatch(id, entry: entry, usesPermit: false)
        }
        while true {
            let fresh = nextDue(.freshSends, now: now)
            let retry = nextDue(.retries, now: now)
            let lane: Lane =
                preferFresh ? (fresh != nil ? .freshSends : .retries) : (retry != nil ? .retries : .freshSends)
            guard let (id, entry) = lane == .freshSends ? fresh : retry else { break }
            if case .wait(let until, _) = pacer.request(now: Self.monotonic()) {
                sendBlocked = until
                sendWaitsForRelease = until == nil
                break
            }
            preferFresh.toggle()
            agenda[lane]?.removeFirst()
            dispatch(id, entry: entry, usesPermit: true)
        }
        updateMetrics(now: now)
        // The next wake-up: the earliest future due time, or when the pacer allows sends again.
        // Status reads waiting for a free slot are left out: the end of a running one pumps again.
        let waking = pollsRunning < dependencies.settings.maxInFlight ? Lane.allCases : [.freshSends, .retries]
        var next = waking.compactMap { nextDue($0, now: .distantFuture) }
            .map { max(0, $0.entry.due.timeIntervalSince(now)) }.min()
        if let blocked = sendBlocked {
            let wait = max(0.05, blocked - Self.monotonic())
            next = min(next ?? wait, wait)
        } else if sendWaitsForRelease {
            next = next.map { max($0, 1) }  // a release pumps again; the timer is only a safety net
        }
        if metricsStale { next = min(next ?? Self.metricsInterval, Self.metricsInterval) }
        if let next, !(sendWaitsForRelease && next == 0) { schedule(after: max(next, 0.01)) }
    }

    /// The first current item of `lane` if it is due by `now`, left in place; stale items before it (the
    /// entry changed, went, is running, or belongs to another lane now) are dropped.
    private func nextDue(_ lane: Lane, now: Date) -> (id: String, entry: Entry)? {
        while let (due, id) = agenda[lane]?.first {
            guard let entry = entries[id], entry.due == due, !running.contains(id), Self.lane(of: entry) == lane
            else {
                agenda[lane]?.removeFirst()
                continue
            }
            return due <= now ? (id, entry) : nil
        }
        return nil
    }

    /// What an entry's next attempt is: a status read, a first send, or a retry or bounce. Sends alternate
    /// between first sends and retries so that neither starves the other.
    private enum Lane: CaseIterable { case polls, freshSends, retries }

    private static func lane(of entry: Entry) -> Lane? {
        switch entry.state {
        case .accepted: .polls
        case .queued: entry.attempts == 0 ? .freshSends : .retries
        // `sending` is what earlier versions wrote before each send; start-up queues such a record again.
        case .bouncing, .sending: .retries
        case .held, .failed: nil
        }
    }

    /// Puts `id`'s entry, as it is now, in the lane of its next attempt: after every change of an entry.
    private func indexDue(_ id: String) {
        guard let entry = entries[id], let lane = Self.lane(of: entry) else { return }
        agenda[lane, default: DueOrder()].insert(entry.due, id)
        // Items made stale by later changes are dropped when they come first; a long-lived backlog whose
        // entries change often would keep them, so the lanes are rebuilt when they are mostly stale.
        if agenda.values.map(\.count).reduce(0, +) > 2 * entries.count + 1024 {
            agenda = [:]
            for id in entries.keys { indexDue(id) }
        }
    }

    /// The queue gauges walk every entry: at most every ``metricsInterval`` seconds, so that a burst of
    /// arrivals does not walk a backlog once per message. A stale gauge keeps a timer set until it is redone.
    private static let metricsInterval = 0.5

    private func updateMetrics(now: Date) {
        guard now.timeIntervalSince(metricsUpdatedAt) >= Self.metricsInterval else {
            metricsStale = true
            return
        }
        metrics.update(states: stateCounts(), oldest: oldestAge(now: now))
        metricsUpdatedAt = now
        metricsStale = false
    }

    private func schedule(after seconds: Double) {
        let when = DispatchTime.now() + min(seconds, 3600)
        if let timerDue, timerDue <= when, timer != nil { return }
        timer?.cancel()
        let source = DispatchSource.makeTimerSource(queue: queue)
        source.schedule(deadline: when, leeway: .milliseconds(10))
        source.setEventHandler { [weak self] in
            self?.timer = nil
            self?.timerDue = nil
            self?.pump()
        }
        source.resume()
        timer = source
        timerDue = when
    }

    private func dispatch(_ id: String, entry: Entry, usesPermit: Bool) {
        running.insert(id)
        let dependencies = self.dependencies
        // A message with an unwritten acceptance whose file a command changed since (held, then released) reads
        // `queued` there: ACS is asked before it is sent again, however many attempts later that is. An attempt
        // that goes as far as asking, or finds the acceptance still valid, clears it.
        if entry.unwritten != nil { askFirst.insert(id) }
        let mustAsk = askFirst.contains(id)
        let unwritten = entry.unwritten.flatMap { record in entry.stamp.map { (record: record, stamp: $0) } }
        work.async {
            self.attempt(
                id, size: entry.size, usesPermit: usesPermit, mustAsk: mustAsk, unwritten: unwritten,
                dependencies: dependencies
            ) { result, asked in
                self.queue.async {
                    if asked { self.askFirst.remove(id) }
                    self.attemptEnded(id, result: result, usedPermit: usesPermit, polled: !usesPermit)
                }
            }
        }
    }

    /// What an attempt left behind, for the index.
    enum AttemptResult {
        /// The record as the attempt left it. `unwrittenOver` is set when the file was deliberately not
        /// rewritten: it is the file's stamp read while the attempt still held the lock, so that a command that
        /// changes the file right after cannot pass for the daemon's own file.
        ///
        /// One change only is left unwritten: ACS accepted the message and its final status is pending. The
        /// rewrite that would record it (a new file, a rename, a directory fsync: a third of the spool's work
        /// per message) buys nothing for exactly-once, because a start asks ACS about every message its files
        /// show `queued` before sending it (`askFirst`), and the first status read usually finds the message
        /// delivered, which removes it. A status read that finds it still running writes the record, so
        /// `queue list` shows it accepted from then on; a stop writes the rest.
        case updated(SpoolRecord, pacer: DeliveryPacer.Outcome?, unwrittenOver: SpoolStamp? = nil)
        /// The message is no longer in the queue (delivered, bounced, deleted, moved to failed/).
        case removed(size: Int, pacer: DeliveryPacer.Outcome?)
        /// The message was busy (a command holds it) or unreadable: look again later.
        case skipped(pacer: DeliveryPacer.Outcome?)
    }

    private func attemptEnded(_ id: String, result: AttemptResult, usedPermit: Bool, polled: Bool) {
        dispatchPrecondition(condition: .onQueue(queue))
        running.remove(id)
        if polled { pollsRunning -= 1 }
        let pacerOutcome: DeliveryPacer.Outcome?
        switch result {
        case .updated(let record, let outcome, let unwrittenOver):
            entries[id] = Entry(
                state: record.state, due: record.nextAttemptAt, size: record.size, attempts: record.attempts,
                stamp: unwrittenOver ?? spool.stamp(id: id), unwritten: unwrittenOver.map { _ in record })
            indexDue(id)
            pacerOutcome = outcome
        case .removed(let size, let outcome):
            if entries.removeValue(forKey: id) != nil { addUsage(count: -1, bytes: -size) }
            askFirst.remove(id)  // gone, whether or not the attempt went as far as asking
            pacerOutcome = outcome
        case .skipped(let outcome):
            if var entry = entries[id] {
                entry.due = Date().addingTimeInterval(1)
                entries[id] = entry
                indexDue(id)
            }
            pacerOutcome = outcome
        }
        if usedPermit {
            let outcome = pacerOutcome ?? .other
            let wasPaused = pacer.pausedUntil(now: Self.monotonic()) != nil
            pacer.finished(outcome, now: Self.monotonic())
            if case .throttled = outcome, !wasPaused {
                metrics.pacingPause()
                logger.notice(
                    "ACS is throttling; all sends pause until its Retry-After has passed",
                    metadata: [
                        "resume_in_s":
                            "\(Int(((pacer.pausedUntil(now: Self.monotonic()) ?? 0) - Self.monotonic()).rounded(.up)))"
                    ])
            }
        }
        if stopping {
            if running.isEmpty, let drained {
                self.drained = nil
                drained()
            }
            return
        }
        requestPump()
    }

    // MARK: One attempt (on the work queue)

    /// One attempt at message `id`. `mustAsk`: ACS is asked before a send (see `askFirst`); `completion`
    /// hears whether the attempt went that far (`asked`), so the question is not lost on a busy message.
    private func attempt(
        _ id: String, size: Int, usesPermit: Bool, mustAsk: Bool,
        unwritten: (record: SpoolRecord, stamp: SpoolStamp)?, dependencies: Dependencies,
        completion: @escaping @Sendable (AttemptResult, _ asked: Bool) -> Void
    ) {
        let lock: SpoolMessageLock
        var record: SpoolRecord
        do {
            guard let held = try spool.lock(id: id, wait: false) else {
                // Busy (a command holds it) or gone: the index learns which on the next look.
                let gone = spool.stamp(id: id) == nil
                completion(gone ? .removed(size: size, pacer: nil) : .skipped(pacer: nil), false)
                return
            }
            let current: SpoolRecord
            if let unwritten, spool.stamp(id: id) == unwritten.stamp {
                current = unwritten.record  // the file is as this process left it: the newer record is ours
            } else {
                guard let read = try held.read() else {
                    held.unlock()
                    completion(.removed(size: size, pacer: nil), false)
                    return
                }
                current = read
            }
            lock = held
            record = current
            if mustAsk && current.state == .queued { record.outcomeUnknown = true }
        } catch {
            // Damaged since it was indexed: logged once and left on disk; retrying it every second helps no one.
            logger.error(
                "cannot read a spooled message; leaving it where it is",
                metadata: ["smtp.message_id": "\(id)", "error": "\(error)", "spool": "\(spool.queueDirectory)"])
            completion(.removed(size: size, pacer: nil), false)
            return
        }
        let needsPermit = record.state == .queued || record.state == .bouncing || record.state == .sending
        guard needsPermit == usesPermit, record.state != .held, record.state != .failed else {
            // A command changed it since the index was built (held, released, retried): take the record as it is.
            completion(.updated(record, pacer: nil), false)
            return
        }
        let context = AttemptContext(
            lock: lock, record: record, dependencies: dependencies, completion: { completion($0, true) })
        switch record.state {
        case .queued, .sending:
            send(context)
        case .accepted:
            followFinalStatus(context)
        case .bouncing:
            sendBounce(context)
        case .held, .failed:
            completion(.updated(record, pacer: nil), false)
        }
    }

    /// One attempt's lock, record and settings; finishing it releases the lock.
    struct AttemptContext: Sendable {
        let lock: SpoolMessageLock
        var record: SpoolRecord
        let dependencies: Dependencies
        let completion: @Sendable (AttemptResult) -> Void

        func finish(_ result: AttemptResult) {
            lock.unlock()
            completion(result)
        }
    }

    private func send(_ context: AttemptContext) {
        var context = context
        let settings = context.dependencies.settings
        let now = Date()
        if now.timeIntervalSince(context.record.receivedAt) > settings.maxLifetime {
            let days = Int(settings.maxLifetime / 86_400)
            startBouncing(
                &context,
                SpoolFailure(
                    status: "4.4.7",
                    diagnostic: "not delivered within \(days > 0 ? "\(days) days" : "\(Int(settings.maxLifetime)) s")"
                        + "; last error: \(context.record.lastError ?? "none")",
                    kind: "expired"),
                pacer: .other)
            return
        }
        // Not written before the send: a crash during it leaves the record `queued`, and the next start asks
        // ACS before it sends any queued message (`askFirst`). The next write records both.
        context.record.state = .sending
        context.record.attempts += 1
        guard let message = try? context.lock.message() else {
            fail(context, "the spooled message file is missing or unreadable")
            return
        }
        if context.record.outcomeUnknown {
            let context = context
            context.dependencies.client.lookUp(operationID: context.record.operationID) { lookup in
                switch lookup {
                case .found(let status, _):
                    self.audit(context, "ACS already has the operation; not sending it again", status: status.status)
                    self.sent(context, result: ACSSendResult(outcome: status.outcome, attempts: 0, requestID: nil))
                case .notFound:
                    var next = context
                    next.record.outcomeUnknown = false
                    self.translateAndSend(next, message: message)
                case .unknown(let reason):
                    self.deferred(
                        context, error: "could not ask ACS whether an earlier attempt arrived: \(reason)",
                        retryAfter: nil, pacer: .other, outcomeUnknown: true)
                }
            }
            return
        }
        translateAndSend(context, message: message)
    }

    private func translateAndSend(_ context: AttemptContext, message: [UInt8]) {
        var context = context
        let received = ReceivedMessage(
            id: context.record.id, receivedAt: context.record.receivedAt,
            envelope: context.record.smtpEnvelope, data: message,
            session: SessionInfo(
                sessionID: context.record.client.sessionID, client: context.record.client.peer,
                heloName: context.record.client.helo, transfer: context.record.client.transfer))
        switch context.dependencies.translator.translate(received, logger: logger) {
        case .failure(let rejection):
            let reply = ACSReplyMapping.reply(for: rejection)
            startBouncing(
                &context,
                SpoolFailure(
                    status: reply.enhancedCode?.description ?? "5.0.0", diagnostic: rejection.text,
                    kind: "refused"),
                pacer: .other)
        case .success(let translated):
            let timeout = context.dependencies.attemptTimeout
            let context = context
            context.dependencies.client.send(
                body: translated.requestBody, operationID: context.record.operationID,
                retry: RetryPolicy.singleAttempt(timeout: timeout), replyAfter: .accepted
            ) { result in
                self.sent(context, result: result)
            }
        }
    }

    /// Records what ACS answered to a send (or what a status read found for an earlier one).
    private func sent(_ context: AttemptContext, result: ACSSendResult) {
        var context = context
        let reply = ACSReplyMapping.reply(for: result.outcome)
        switch result.outcome {
        case .accepted(_, let status):
            context.record.lastError = nil
            context.record.outcomeUnknown = false
            if status.lowercased() == "succeeded" {
                delivered(context, status: status, pacer: .accepted)
                return
            }
            context.record.state = .accepted
            context.record.acceptedAt = Date()
            context.record.nextAttemptAt = Date().addingTimeInterval(
                context.dependencies.client.configuration.defaultPollInterval)
            audit(context, "ACS accepted the message", status: status)
            metrics.attempt("accepted")
            if let stamp = spool.stamp(id: context.record.id) {
                context.finish(.updated(context.record, pacer: .accepted, unwrittenOver: stamp))
            } else {
                finishWriting(context, pacer: .accepted)
            }
        case .failed(_, let status, let code, let message):
            startBouncing(
                &context,
                SpoolFailure(
                    status: reply.enhancedCode?.description ?? "5.0.0",
                    diagnostic: "ACS \(status.lowercased()) the message: \(Self.describe(code, message))",
                    kind: "failed"),
                pacer: .accepted)
        case .rejected(let status, let code, let message):
            startBouncing(
                &context,
                SpoolFailure(
                    status: reply.enhancedCode?.description ?? "5.0.0",
                    diagnostic: "ACS refused the message (HTTP \(status)): \(Self.describe(code, message))",
                    kind: "rejected"),
                pacer: .other)
        case .throttled(let retryAfter):
            deferred(
                context, error: "throttled by ACS", retryAfter: retryAfter ?? 60,
                pacer: .throttled(retryAfter: retryAfter), outcomeUnknown: result.outcomeUncertain)
        case .authenticationFailed(let status, let code, let message):
            deferred(
                context,
                error: "ACS refused the gateway's credentials (HTTP \(status)): "
                    + Self.describe(code, message), retryAfter: nil, pacer: .other,
                outcomeUnknown: result.outcomeUncertain)
        case .unavailable(_, let detail):
            // Asked again before the next send even when the client's status read found nothing: after a broken
            // connection ACS (and the emulator, seen under load with HTTP/2) may still be processing the request
            // when that read arrives, so its 404 does not prove the send never arrived; seconds later it does.
            deferred(
                context, error: "ACS unavailable: \(detail)", retryAfter: nil, pacer: .other,
                outcomeUnknown: true)
        case .notAuthenticated(let error):
            deferred(
                context, error: "no credentials for ACS: \(error.message)", retryAfter: nil, pacer: .other,
                outcomeUnknown: false)
        }
    }

    private func deferred(
        _ context: AttemptContext, error: String, retryAfter: Double?, pacer outcome: DeliveryPacer.Outcome,
        outcomeUnknown: Bool
    ) {
        var context = context
        let settings = context.dependencies.settings
        let wait =
            retryAfter ?? settings.backoff(afterAttempts: context.record.attempts, random: Double.random(in: 0..<1))
        // A bounce that must wait stays a bounce: the original message is never sent again.
        context.record.state = context.record.state == .bouncing ? .bouncing : .queued
        context.record.lastError = error.replacingOccurrences(of: "\n", with: " ")
        context.record.outcomeUnknown = context.record.outcomeUnknown || outcomeUnknown
        context.record.nextAttemptAt = Date().addingTimeInterval(wait)
        metrics.attempt(retryAfter != nil && outcome != .other ? "throttled" : "deferred")
        audit(context, "delivery deferred", status: nil, extra: ["retry_in_s": "\(Int(wait.rounded(.up)))"])
        finishWriting(context, pacer: outcome)
    }

    private func followFinalStatus(_ attempt: AttemptContext) {
        let deadline = attempt.dependencies.pollDeadline
        attempt.dependencies.client.lookUp(operationID: attempt.record.operationID) { lookup in
            var context = attempt
            context.record.polls += 1
            let acceptedFor = Date().timeIntervalSince(context.record.acceptedAt ?? context.record.receivedAt)
            switch lookup {
            case .found(let status, _) where status.succeeded:
                self.delivered(context, status: status.status, pacer: nil)
                return
            case .found(let status, _) where status.isTerminal:
                self.sent(context, result: ACSSendResult(outcome: status.outcome, attempts: 0, requestID: nil))
                return
            case .found(_, let retryAfter):
                if acceptedFor > deadline { break }
                let wait = max(retryAfter ?? 0, min(300, 5 * pow(2, Double(min(context.record.polls, 6)))))
                context.record.nextAttemptAt = Date().addingTimeInterval(wait)
                self.finishWriting(context, pacer: nil)
                return
            case .notFound, .unknown:
                if acceptedFor > deadline { break }
                context.record.nextAttemptAt = Date().addingTimeInterval(
                    min(300, 5 * pow(2, Double(min(context.record.polls, 6)))))
                self.finishWriting(context, pacer: nil)
                return
            }
            // ACS accepted it long ago and never said more: delivered as far as anyone can tell.
            self.delivered(context, status: "Unknown", pacer: nil)
        }
    }

    private func startBouncing(_ context: inout AttemptContext, _ failure: SpoolFailure, pacer: DeliveryPacer.Outcome?)
    {
        context.record.state = .bouncing
        context.record.failure = failure
        context.record.lastError = failure.diagnostic
        context.record.outcomeUnknown = false
        context.record.nextAttemptAt = Date()
        context.record.bounceOperationID = context.record.bounceOperationID ?? Bouncer.operationID()
        metrics.attempt(failure.kind)
        audit(
            context, "delivery failed for good; bouncing", status: nil,
            extra: ["failure": "\(failure.kind)", "status": "\(failure.status)"])
        finishWriting(context, pacer: pacer)
    }

    private func sendBounce(_ context: AttemptContext) {
        var context = context
        guard let failure = context.record.failure, let message = try? context.lock.message() else {
            fail(context, "bouncing without a recorded failure or message")
            return
        }
        let plan = context.dependencies.bouncer.plan(
            messageID: context.record.id, envelopeSender: context.record.envelope.mailFrom,
            recipients: context.record.envelope.rcptTo, receivedAt: context.record.receivedAt, message: message,
            failure: failure)
        switch plan {
        case .none(let reason):
            moveToFailed(context, fate: "failed", reason: "no bounce: \(reason)", pacer: .other)
        case .send(let recipient, let body):
            let operationID = context.record.bounceOperationID ?? Bouncer.operationID()
            context.record.bounceOperationID = operationID
            if context.record.outcomeUnknown {
                // An earlier bounce attempt may have reached ACS: ask before sending it again.
                let attempt = context
                attempt.dependencies.client.lookUp(operationID: operationID) { lookup in
                    var context = attempt
                    switch lookup {
                    case .found:
                        self.logFate(
                            context, fate: "bounced",
                            extra: [
                                "bounce.to": "\(recipient)",
                                "bounce.operation_id": "\(operationID)",
                            ])
                        self.remove(context, pacer: .other)
                    case .notFound:
                        context.record.outcomeUnknown = false
                        self.sendBounce(context)
                    case .unknown(let reason):
                        self.deferred(
                            context, error: "could not ask ACS whether the bounce arrived: \(reason)",
                            retryAfter: nil, pacer: .other, outcomeUnknown: true)
                    }
                }
                return
            }
            context.record.attempts += 1
            context.record.outcomeUnknown = true  // until ACS answers: a crash now must not send it twice
            let marked = context
            write(marked) {
                var context = marked
                context.record.outcomeUnknown = false
                self.sendBounce(context, to: recipient, body: body, operationID: operationID)
            }
        }
    }

    /// Sends a bounce whose attempt is marked on disk (`outcomeUnknown`), and records what ACS answered.
    private func sendBounce(_ context: AttemptContext, to recipient: String, body: [UInt8], operationID: String) {
        context.dependencies.client.send(
            body: body, operationID: operationID,
            retry: RetryPolicy.singleAttempt(timeout: context.dependencies.attemptTimeout), replyAfter: .accepted
        ) { result in
            switch result.outcome {
            case .accepted:
                self.logFate(
                    context, fate: "bounced",
                    extra: [
                        "bounce.to": "\(recipient)",
                        "bounce.operation_id": "\(operationID)",
                    ])
                self.remove(context, pacer: .accepted)
            case .failed, .rejected:
                self.moveToFailed(
                    context, fate: "failed",
                    reason: "the bounce to \(recipient) was refused: \(ACSReplyMapping.reply(for: result.outcome))",
                    pacer: .other)
            case .throttled(let retryAfter):
                self.deferred(
                    context, error: "bounce throttled by ACS", retryAfter: retryAfter ?? 60,
                    pacer: .throttled(retryAfter: retryAfter), outcomeUnknown: false)
            default:
                let lifetime = context.dependencies.settings.maxLifetime
                if Date().timeIntervalSince(context.record.receivedAt) > lifetime * 2 {
                    self.moveToFailed(
                        context, fate: "failed", reason: "the bounce could not be sent in time",
                        pacer: .other)
                } else {
                    self.deferred(
                        context, error: "bounce not sent: \(ACSReplyMapping.reply(for: result.outcome))",
                        retryAfter: nil, pacer: .other, outcomeUnknown: result.outcomeUncertain)
                }
            }
        }
    }

    // MARK: Endings

    private func delivered(_ context: AttemptContext, status: String, pacer: DeliveryPacer.Outcome?) {
        logFate(context, fate: "delivered", extra: ["acs.status": "\(status)"])
        metrics.attempt("delivered")
        remove(context, pacer: pacer)
    }

    /// Removes the message; its directory fsync rides the spool's next round of flushes.
    private func remove(_ context: AttemptContext, pacer: DeliveryPacer.Outcome?) {
        context.lock.remove { result in
            switch result {
            case .success:
                context.finish(.removed(size: context.record.size, pacer: pacer))
            case .failure(let error):
                self.logger.error(
                    "cannot remove a delivered message from the spool",
                    metadata: ["smtp.message_id": "\(context.record.id)", "error": "\(error)"])
                context.finish(.skipped(pacer: pacer))
            }
        }
    }

    private func moveToFailed(_ context: AttemptContext, fate: String, reason: String, pacer: DeliveryPacer.Outcome?) {
        var record = context.record
        record.state = .failed
        record.lastError = reason
        logger.error(
            "message moved to failed/ for inspection",
            metadata: ["smtp.message_id": "\(record.id)", "reason": "\(reason)", "spool": "\(spool.failedDirectory)"])
        logFate(context, fate: fate, extra: ["reason": "\(reason)"])
        do {
            try context.lock.moveToFailed(record)
            context.finish(.removed(size: record.size, pacer: pacer))
        } catch {
            logger.error(
                "cannot move a message to failed/", metadata: ["smtp.message_id": "\(record.id)", "error": "\(error)"])
            context.finish(.skipped(pacer: pacer))
        }
    }

    private func fail(_ context: AttemptContext, _ reason: String) {
        moveToFailed(context, fate: "failed", reason: reason, pacer: .other)
    }

    /// Writes the record in the spool's next round of flushes, then goes on with `next` on the work queue (the
    /// round's thread only commits). On failure logs, releases and reports the attempt as skipped.
    private func write(_ context: AttemptContext, then next: @escaping @Sendable () -> Void) {
        context.lock.write(context.record) { result in
            switch result {
            case .success:
                self.work.async(execute: next)
            case .failure(let error):
                self.logger.error(
                    "cannot update a spool record",
                    metadata: ["smtp.message_id": "\(context.record.id)", "error": "\(error)"])
                context.finish(.skipped(pacer: nil))
            }
        }
    }

    private func finishWriting(_ context: AttemptContext, pacer: DeliveryPacer.Outcome?) {
        write(context) { context.finish(.updated(context.record, pacer: pacer)) }
    }

    // MARK: Audit

    /// The audit line of one attempt (`msg=delivery`).
    private func audit(_ context: AttemptContext, _ text: String, status: String?, extra: Logger.Metadata = [:]) {
        var metadata = baseMetadata(context.record)
        if let status { metadata["acs.status"] = "\(status)" }
        if let error = context.record.lastError { metadata["error"] = "\(error)" }
        metadata["state"] = "\(context.record.state.rawValue)"
        metadata.merge(extra) { $1 }
        logger.log(level: context.record.state == .queued ? .notice : .info, "delivery: \(text)", metadata: metadata)
    }

    /// The audit line of a message's final fate (`delivered`, `bounced`, `expired`, `failed`, `deleted`).
    private func logFate(_ context: AttemptContext, fate: String, extra: Logger.Metadata = [:]) {
        var metadata = baseMetadata(context.record)
        metadata["fate"] = "\(fate)"
        metadata["age_s"] = "\(Int(Date().timeIntervalSince(context.record.receivedAt)))"
        metadata.merge(extra) { $1 }
        metrics.fate(fate)
        logger.log(level: fate == "delivered" ? .info : .notice, "message fate", metadata: metadata)
    }

    private func baseMetadata(_ record: SpoolRecord) -> Logger.Metadata {
        [
            "smtp.message_id": "\(record.id)", "acs.operation_id": "\(record.operationID)",
            "smtp.mail_from": "\(record.envelope.mailFrom)", "smtp.rcpt_count": "\(record.envelope.rcptTo.count)",
            "attempt": "\(record.attempts)",
        ]
    }

    // MARK: Commands, shutdown, usage

    /// Re-reads records a `queue` command changed (SIGUSR1, and every 30 s).
    public func rescan() {
        queue.async { self.rescanOnQueue() }
    }

    private func rescanOnQueue() {
        dispatchPrecondition(condition: .onQueue(queue))
        let ids = Set(spool.ids())
        for (id, entry) in entries where !ids.contains(id) && !running.contains(id) {
            entries.removeValue(forKey: id)
            askFirst.remove(id)
            addUsage(count: -1, bytes: -entry.size)
        }
        for id in ids where !running.contains(id) {
            let stamp = spool.stamp(id: id)
            if let entry = entries[id], entry.stamp == stamp { continue }
            guard let record = try? spool.record(id: id) else { continue }
            if entries[id]?.unwritten != nil { askFirst.insert(id) }  // its file does not know ACS accepted it
            if entries[id] == nil { addUsage(count: 1, bytes: record.size) }
            entries[id] = Entry(
                state: record.state, due: record.nextAttemptAt, size: record.size, attempts: record.attempts,
                stamp: stamp)
            indexDue(id)
        }
        requestPump()
    }

    /// Stops starting attempts; calls `completion` once those in flight have ended (or at once). What is not
    /// delivered stays spooled for the next start.
    public func shutdown(completion: @escaping @Sendable () -> Void) {
        let completion: @Sendable () -> Void = {
            self.writeUnwrittenRecords()  // on `queue`, where both callers below run it
            self.spool.finishWriting()
            completion()
        }
        queue.async {
            self.stopping = true
            self.timer?.cancel()
            self.rescanTimer?.cancel()
            if self.running.isEmpty {
                completion()
            } else {
                self.logger.notice("waiting for deliveries in flight", metadata: ["in_flight": "\(self.running.count)"])
                self.drained = completion
            }
        }
    }

    /// At a stop, once no attempt runs: writes the acceptances kept in memory, so that the files (and `queue
    /// list`) show them. One that cannot be written costs the next start one status read, nothing more.
    private func writeUnwrittenRecords() {
        dispatchPrecondition(condition: .onQueue(queue))
        for (id, entry) in entries {
            guard let record = entry.unwritten, let stamp = entry.stamp else { continue }
            guard let lock = try? spool.lock(id: id, wait: false) else { continue }
            if spool.stamp(id: id) == stamp { try? lock.write(record) }
            lock.unlock()
            entries[id]?.unwritten = nil
        }
    }

    private func addUsage(count: Int, bytes: Int) {
        usageLock.withLock {
            usageCount += count
            usageBytes += bytes
        }
    }

    private func stateCounts() -> [SpoolState: Int] {
        var counts: [SpoolState: Int] = [:]
        for entry in entries.values { counts[entry.state, default: 0] += 1 }
        for id in running { if let state = entries[id]?.state, state == .queued { counts[.sending, default: 0] += 1 } }
        return counts
    }

    private func oldestAge(now: Date) -> Double {
        guard let oldest = entries.keys.min(), let time = Identifiers.timestamp(ofMessageID: oldest) else { return 0 }
        return max(0, now.timeIntervalSince(time))
    }

    static func monotonic() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    static func describe(_ code: String?, _ message: String?) -> String {
        let text = [code, message].compactMap { $0?.isEmpty == false ? $0 : nil }.joined(separator: ": ")
        return text.isEmpty ? "no detail given" : text.replacingOccurrences(of: "\n", with: " ")
    }
}

/// The spool cannot take a message; `reply` is what the client hears (452 4.3.1).
struct CustodyRefused: Error, CustomStringConvertible {
    var reply: SMTPReply
    var description: String { reply.description }
}

extension SpoolRecord {
    /// The SMTP envelope the record keeps, for the translation.
    var smtpEnvelope: SMTPProtocol.Envelope {
        let reverse: ReversePath =
            envelope.mailFrom.isEmpty
            ? .null
            : (ValueParser<Mailbox>.mailbox.parse(envelope.mailFrom).map { ReversePath.mailbox($0) } ?? .null)
        let forward: [ForwardPath] = envelope.rcptTo.compactMap { address in
            address.lowercased() == "postmaster"
                ? .postmaster : ValueParser<Mailbox>.mailbox.parse(address).map { ForwardPath.mailbox($0) }
        }
        let parameters = ESMTPParameters(envelope.parameters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return SMTPProtocol.Envelope(reversePath: reverse, mailParameters: parameters, forwardPaths: forward)
    }
}

extension RetryPolicy {
    /// One attempt, no waiting inside the client: the spool's pacer and backoff decide what comes next.
    static func singleAttempt(timeout: Double) -> RetryPolicy {
        var policy = RetryPolicy()
        policy.attemptTimeout = timeout
        policy.budget = timeout + 1
        policy.maxRetryAfter = 0
        policy.retryableStatuses = []  // a 429 or 5xx is the attempt's outcome, for the pacer and the backoff
        policy.minimumDelay = policy.budget + 1  // and no second attempt after a network failure either
        return policy
    }
}

extension SpoolClient {
    /// The session's peer as the record keeps it (the port is not kept).
    var peer: SMTPPeer {
        if let local {
            return .local(LocalPeer(uid: local.uid, gid: local.gid, pid: local.pid, userName: local.user))
        }
        let address = SocketAddress(ip: address, port: 0) ?? SocketAddress(ip: "127.0.0.1", port: 0)!
        return .network(address)
    }
}

/// A min-heap of (due time, message id): the delivery scheduler's agenda. Earliest first; ids break ties so
/// that messages due together go in arrival order (ids sort by arrival).
struct DueOrder {
    private var items: [(due: Date, id: String)] = []

    var count: Int { items.count }
    var first: (due: Date, id: String)? { items.first }

    mutating func insert(_ due: Date, _ id: String) {
        items.append((due, id))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.precedes(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() {
        guard !items.isEmpty else { return }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < items.count, Self.precedes(items[left], items[first]) { first = left }
            if right < items.count, Self.precedes(items[right], items[first]) { first = right }
            guard first != parent else { return }
            items.swapAt(parent, first)
            parent = first
        }
    }

    private static func precedes(_ a: (due: Date, id: String), _ b: (due: Date, id: String)) -> Bool {
        a.due != b.due ? a.due < b.due : a.id < b.id
    }
}
