import Foundation
import Testing

@testable import Gateway

/// The delivery and spool keys: their parsers, defaults and the retry schedule.
@Suite struct DeliverySettingsTests {
    @Test func bounceRecipient_parsesSenderNoneAndAdmin() {
        let parser = ValueParser<BounceRecipient>.bounceRecipient
        #expect(parser.parse("sender") == .sender)
        #expect(parser.parse("none") == BounceRecipient.none)
        #expect(parser.parse("admin postmaster@example.com") == .admin("postmaster@example.com"))
        for bad in ["admin", "admin nobody", "admin a@b.example extra", "everyone", ""] {
            #expect(parser.parse(bad) == nil, "\(bad)")
        }
        #expect(parser.render(.admin("p@example.com")) == "admin p@example.com")
    }

    @Test func durationsTakeDays_andSizesTakeGiB() {
        #expect(ValueParser<Double>.duration(1...(60 * 86_400)).parse("5d") == Double(432_000))
        #expect(ValueParser<Double>.duration(1...(60 * 86_400)).render(Double(432_000)) == "5d")
        #expect(ValueParser<Int>.size(1...(1 << 40)).parse("4GiB") == 4 << 30)
        #expect(ValueParser<Int>.size(1...(1 << 40)).render(4 << 30) == "4GiB")
    }

    @Test func backoff_doublesFromTheMinimum_upToTheMaximum_withJitterInTheUpperHalf() {
        var settings = DeliverySettings()
        settings.minBackoff = 60
        settings.maxBackoff = 3600
        #expect(settings.backoff(afterAttempts: 1, random: 0) == 30)
        #expect(settings.backoff(afterAttempts: 1, random: 1) == 60)
        #expect(settings.backoff(afterAttempts: 3, random: 1) == 240)
        #expect(settings.backoff(afterAttempts: 40, random: 1) == 3600)
        #expect(settings.backoff(afterAttempts: 40, random: 0) == 1800)
    }

    @Test func defaults_areHybridWithFiveDaysAndTheStateDirectory() {
        let settings = GatewaySettings()
        #expect(settings.delivery.mode == .hybrid)
        #expect(settings.delivery.maxLifetime == 5 * 86_400)
        #expect(settings.delivery.spoolDirectory == "/var/lib/acs-smtp-gateway/spool")
        #expect(settings.delivery.pacerLimits.perMinute == nil)
    }
}
