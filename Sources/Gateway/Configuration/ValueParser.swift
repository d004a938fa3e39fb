import ACSClient
import Foundation

/// Reads one configuration value from text — the same text whether it came from the file, the environment
/// or a flag — and writes it back for `check-config`. `expected` completes "expected …" in error messages.
public struct ValueParser<Value>: Sendable {
    public let expected: String
    let parse: @Sendable (String) -> Value?
    let render: @Sendable (Value) -> String

    init(expected: String, parse: @escaping @Sendable (String) -> Value?, render: @escaping @Sendable (Value) -> String)
    {
        self.expected = expected
        self.parse = parse
        self.render = render
    }
}

extension ValueParser where Value == String {
    /// Any non-empty text (surrounding white space removed).
    static func text(_ expected: String = "text") -> ValueParser {
        ValueParser(expected: expected, parse: { $0.isEmpty ? nil : $0 }, render: { $0 })
    }

    /// An absolute or relative file system path; never the secret itself pasted in its place.
    static let path = ValueParser(
        expected: "a file system path",
        parse: { $0.isEmpty || $0.contains("\0") || SecretRedaction.looksSecret($0) ? nil : $0 }, render: { $0 })
}

extension ValueParser where Value == Int {
    /// A whole number in `range`.
    static func integer(_ range: ClosedRange<Int>, unit: String = "") -> ValueParser {
        let upper = range.upperBound == Int.max ? "" : " to \(range.upperBound)"
        return ValueParser(
            expected: "a whole number\(unit.isEmpty ? "" : " of \(unit)") from \(range.lowerBound)\(upper)",
            parse: { Int($0).flatMap { range.contains($0) ? $0 : nil } }, render: { String($0) })
    }

    /// A size in octets: a whole number, optionally with a binary suffix K/KiB (1024) or M/MiB (1024²).
    static func size(_ range: ClosedRange<Int>) -> ValueParser {
        ValueParser(
            expected: "a size in octets from \(range.lowerBound) to \(range.upperBound), "
                + "e.g. 10485760, 10240KiB, 10MiB or 1GiB",
            parse: { text in
                let multipliers: [(String, Int)] = [
                    ("KiB", 1024), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1024), ("M", 1 << 20), ("G", 1 << 30),
                    ("", 1),
                ]
                for (suffix, multiplier) in multipliers where text.hasSuffix(suffix) {
                    let number = text.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
                    guard let value = Int(number), value >= 0 else { return nil }
                    let (octets, overflow) = value.multipliedReportingOverflow(by: multiplier)
                    return !overflow && range.contains(octets) ? octets : nil
                }
                return nil
            },
            render: { octets in
                if octets > 0, octets % (1 << 30) == 0 { return "\(octets >> 30)GiB" }
                if octets > 0, octets % (1 << 20) == 0 { return "\(octets >> 20)MiB" }
                if octets > 0, octets % 1024 == 0 { return "\(octets >> 10)KiB" }
                return String(octets)
            })
    }
}

extension ValueParser where Value == Double {
    /// A duration: seconds as a number, or with a unit ms, s, m, h or d ("500ms", "90s", "5m", "1h", "5d").
    static func duration(_ range: ClosedRange<Double>) -> ValueParser {
        ValueParser(
            expected: "a duration from \(render(range.lowerBound)) to \(render(range.upperBound)), "
                + "e.g. 30, 30s, 500ms, 5m, 1h or 5d",
            parse: { text in
                let units: [(String, Double)] = [
                    ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("", 1),
                ]
                for (suffix, scale) in units where text.hasSuffix(suffix) {
                    let number = text.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
                    guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
                        let value = Double(number)
                    else { return nil }
                    let seconds = value * scale
                    return seconds.isFinite && range.contains(seconds) ? seconds : nil
                }
                return nil
            },
            render: render)
    }

    /// A non-negative rate or amount, as a plain number.
    static func number(_ range: ClosedRange<Double>, unit: String) -> ValueParser {
        ValueParser(
            expected: "a number of \(unit) from \(render(range.lowerBound)) to \(render(range.upperBound))",
            parse: { text in
                guard let value = Double(text), value.isFinite, range.contains(value) else { return nil }
                return value
            },
            render: { $0 == $0.rounded() ? String(Int($0)) : String($0) })
    }

    private static func render(_ seconds: Double) -> String {
        if seconds >= 86_400, seconds.truncatingRemainder(dividingBy: 86_400) == 0 {
            return "\(Int(seconds / 86_400))d"
        }
        if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
        if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
        if seconds == seconds.rounded() { return "\(Int(seconds))s" }
        if (seconds * 1000) == (seconds * 1000).rounded() { return "\(Int(seconds * 1000))ms" }
        return "\(seconds)s"
    }
}

extension ValueParser where Value == Bool {
    /// YAML's usual spellings: true/false, yes/no, on/off.
    static let boolean = ValueParser(
        expected: "true or false",
        parse: { text in
            switch text.lowercased() {
            case "true", "yes", "on": true
            case "false", "no", "off": false
            default: nil
            }
        },
        render: { $0 ? "true" : "false" })
}

extension ValueParser where Value: RawRepresentable & CaseIterable & Sendable, Value.RawValue == String {
    /// One of the enumeration's raw values.
    static var choice: ValueParser {
        let names = Value.allCases.map(\.rawValue)
        let expected =
            names.count == 2
            ? "\(names[0]) or \(names[1])"
            : names.dropLast().joined(separator: ", ") + " or " + (names.last ?? "")
        return ValueParser(expected: expected, parse: { Value(rawValue: $0) }, render: { $0.rawValue })
    }
}
