import SMTPServer
import Testing

@testable import Gateway

/// The `STATUS=` line that `systemctl status` shows.
@Suite struct GatewayDaemonStatusTests {
    private var counters: SMTPServerStatistics.Snapshot {
        var snapshot = SMTPServerStatistics.Snapshot()
        snapshot.openConnections = 1
        snapshot.connectionsAdmitted = 12
        snapshot.connectionsRefused = 2
        snapshot.messagesAccepted = 9
        snapshot.messagesDeferred = 1
        snapshot.messagesRejected = 3
        return snapshot
    }

    @Test func running() {
        #expect(
            GatewayDaemon.statusLine(listening: "127.0.0.1:25", statistics: counters, stopping: false)
                == "Listening on 127.0.0.1:25; connections: 1 open, 12 served, 2 refused; "
                + "messages: 9 accepted, 1 deferred, 3 rejected")
    }

    @Test func stopping() {
        #expect(
            GatewayDaemon.statusLine(listening: "127.0.0.1:25", statistics: counters, stopping: true)
                == "Stopping: 1 connection still open, finishing their transactions; connections: 1 open, 12 served, "
                + "2 refused; messages: 9 accepted, 1 deferred, 3 rejected")
    }
}
