import Foundation
import Testing

@testable import ACSEmulator

/// The emulator's own JSON reader and writer: what it accepts, refuses and writes back.
@Suite struct JSONValueTests {
    private func parse(_ text: String) -> JSONValue? { JSONValue(parsing: Array(text.utf8)) }

    @Test func everyKindOfValue_isRead() {
        let value = parse(#" { "a" : [1, -2, 2.5, 1e3, true, false, null, "x"], "b": {} , "c": [] } "#)
        #expect(
            value
                == .object([
                    "a": .array([
                        .integer(1), .integer(-2), .number(2.5), .integer(1000), .bool(true), .bool(false), .null,
                        .string("x"),
                    ]),
                    "b": .object([:]), "c": .array([]),
                ]))
        #expect(parse("0") == .integer(0))
        #expect(parse("-0.5") == .number(-0.5))
        #expect(parse("1.0") == .integer(1))  // as Codable read it: an exact Int64 value is an integer
        #expect(parse("9223372036854775807") == .integer(Int64.max))
        #expect(parse("100000000000000000000") == .number(1e20))  // past Int64: a Double
    }

    @Test func escapes_includingSurrogatePairs_areDecoded() {
        #expect(parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{08}\u{0C}\n\r\t"))
        #expect(parse(#""\u00e9\u20AC\ud83d\ude00""#) == .string("é€😀"))
        #expect(parse("\"caf\u{E9} \u{1F600}\"") == .string("café 😀"))
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "1e", "-", "+1", "tru", "nul",
        "\"abc", "\"a\u{01}b\"", #""\x""#, #""\u12""#, #""\ud83d""#, #""\ude00""#, #""\ud83d\u0041""#, "1 2",
        "[1] x", "NaN", "1e400", "'a'",
    ])
    func malformedText_isRefused(_ text: String) {
        #expect(parse(text) == nil)
    }

    @Test func invalidUTF8_isRefused() {
        #expect(JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) == nil)
        #expect(JSONValue(parsing: [0x22, 0x5C, 0x6E, 0xFF, 0x22]) == nil)  // after an escape too
    }

    @Test func nesting_isBoundedInsteadOfRecursingWithoutEnd() {
        let limit = JSONValue.maximumDepth
        #expect(parse(String(repeating: "[", count: limit) + String(repeating: "]", count: limit)) != nil)
        #expect(parse(String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)) == nil)
        #expect(parse(String(repeating: "[", count: 100_000)) == nil)
    }

    @Test func repeatedKeys_keepTheLast() {
        #expect(parse(#"{"a":1,"a":2}"#) == .object(["a": .integer(2)]))
    }

    @Test func serialized_isCompact_sortedByBytes_andEscapesOnlyWhatJSONRequires() {
        let value = JSONValue.object([
            "b": .string("q\"\\/\n\u{01}\u{7F}é"), "B": .number(2.5), "a": .array([.null, .bool(true), .integer(-3)]),
            "c": .number(1e300),
        ])
        #expect(
            String(decoding: value.serialized(), as: UTF8.self)
                == #"{"B":2.5,"a":[null,true,-3],"b":"q\"\\/\n\u0001"# + "\u{7F}é\"" + #","c":1e+300}"#)
    }

    @Test func serializedText_readsBackAsTheSameValue_andMatchesJSONEncoderWhereBothAgree() throws {
        let text = #"{"to":[{"address":"a@example.com","displayName":"Ä \"B\""}],"n":[1,2.25,-7e-5],"x":null}"#
        let value = try #require(parse(text))
        #expect(JSONValue(parsing: value.serialized()) == value)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(value.serialized() == Array(try encoder.encode(value)))
    }

    @Test func recordLines_areTheCodableFields_withAbsentOnesLeftOut() throws {
        let record = RecordedMessage(
            operationId: "op", receivedAt: "2026-12-07T14:39:57.123Z", apiVersion: "2025-09-01",
            request: .object(["k": .string("v")]))
        #expect(
            String(decoding: record.jsonLine(), as: UTF8.self)
                == #"{"apiVersion":"2025-09-01","operationId":"op","receivedAt":"2026-12-07T14:39:57.123Z","#
                + #""request":{"k":"v"}}"#)
        var full = record
        full.droppedAttachments = ["a.exe"]
        full.httpVersion = "2"
        #expect(try JSONDecoder().decode(RecordedMessage.self, from: Data(full.jsonLine())) == full)
    }

    @Test func receivedAt_isISO8601WithMilliseconds_inUTC() {
        #expect(EmulatorStore.iso8601(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(EmulatorStore.iso8601(Date(timeIntervalSince1970: 1_796_654_397.1239)) == "2026-12-07T14:39:57.123Z")
        let now = Date()
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let written = EmulatorStore.iso8601(now)
        #expect(abs((formatter.date(from: written)?.timeIntervalSince1970 ?? 0) - now.timeIntervalSince1970) < 0.002)
    }
}
