/// Writes an effective configuration back as YAML, every key with where its value came from. The output is
/// itself a valid configuration file (it loads to the same settings); nothing in it is secret, because the
/// settings hold only the names of secret files, and a password in a proxy URL is shown as `***`.
public enum ConfigurationRendering {
    public static func yaml(_ loaded: LoadedConfiguration) -> String {
        var lines: [String] = []
        let width = ConfigurationSchema.keys.map { "  \($0.name): ".count + ($0.isList ? 16 : 10) }.max() ?? 40
        for section in ConfigurationSchema.sections {
            lines.append("\(section):")
            let keys = ConfigurationSchema.keys.filter { $0.section == section }
            if let whole = keys.first(where: \.isWholeSection) {
                // `NAME: VALUE` lines, or nothing under the section name (a YAML null: no entries).
                for item in whole.render(loaded.settings) {
                    let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                    let text = "  \(scalar(parts[0])): \(scalar(parts.count > 1 ? parts[1] : ""))"
                    lines.append(
                        text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
                            + "  # \(loaded.origin(of: whole))")
                }
                continue
            }
            let rendered = keys.map { key -> (String, String) in
                let values = key.render(loaded.settings)
                let value: String
                if let fields = key.mappingFields {
                    let items = values.map { mapping($0, fields: fields) }
                    value = items.isEmpty ? "[]" : "[" + items.joined(separator: ", ") + "]"
                } else if key.isList {
                    value = values.isEmpty ? "[]" : "[" + values.map(scalar).joined(separator: ", ") + "]"
                } else {
                    value = values.first.map(scalar) ?? ""
                }
                return ("  \(key.name):" + (value.isEmpty ? "" : " \(value)"), "\(loaded.origin(of: key))")
            }
            for (text, origin) in rendered {
                lines.append(
                    text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) + "  # \(origin)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A flow mapping from an item's `VALUE field=value …` text: `{address: "[::1]:587", tls: starttls}`.
    static func mapping(_ text: String, fields: [String]) -> String {
        let pairs = text.split(separator: " ").map { token -> String in
            let parts = token.split(separator: "=", maxSplits: 1).map(String.init)
            let (field, value) = parts.count == 2 ? (parts[0], parts[1]) : (fields[0], parts[0])
            return "\(field): \(scalar(value))"
        }
        return "{" + pairs.joined(separator: ", ") + "}"
    }

    /// A YAML scalar: plain when that reads back unchanged, double-quoted otherwise.
    static func scalar(_ text: String) -> String {
        let plainSafe = text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                    || "._/@:+-*".unicodeScalars.contains(scalar))
        }
        let special = ["", "~", "null"]
        if plainSafe, let first = text.unicodeScalars.first, !"-:@*".unicodeScalars.contains(first),
            !special.contains(text.lowercased()), !text.hasSuffix(":")
        {
            return text
        }
        return EscapedText.doubleQuoted(text)
    }
}
