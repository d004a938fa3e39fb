import Foundation

/// One double-quoted string syntax for every text the gateway writes for people and parsers: logfmt and JSON
/// log values, and YAML scalars in `check-config` output. `\"`, `\\`, `\n`, `\r`, `\t`, and `\uXXXX` for
/// other control characters, DEL and U+2028/U+2029, is valid JSON, valid YAML double-quoted text, and what
/// logfmt readers expect; so a client-controlled value can never start a new line or break out of its quotes.
enum EscapedText {
    static func doubleQuoted(_ value: String) -> String {
        var escaped = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    escaped += String(format: "\\u%04x", scalar.value)
                } else {
                    escaped.unicodeScalars.append(scalar)
                }
            }
        }
        return escaped + "\""
    }
}
