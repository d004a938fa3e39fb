import ACSClient
import Foundation
import Yams

/// Where a configuration value came from, for error messages and `check-config`.
public enum ConfigurationOrigin: Sendable, Equatable, CustomStringConvertible {
    case builtIn
    case file(path: String, line: Int)
    case environment(variable: String)
    case flag(String)

    public var description: String {
        switch self {
        case .builtIn: "built-in default"
        case .file(let path, let line): "\(path):\(line)"
        case .environment(let variable): "environment \(variable)"
        case .flag(let flag): flag
        }
    }
}

/// Everything wrong with a configuration, each problem on its own line, located as precisely as its source
/// allows: `FILE:LINE: section.key: expected …, got "…"`.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var problems: [String]
    public init(_ problems: [String]) { self.problems = problems }
    public var description: String { problems.joined(separator: "\n") }
}

/// A merged configuration and where each value came from.
public struct LoadedConfiguration: Sendable {
    public var settings: GatewaySettings
    /// Keyed by `section.key`; keys left at their built-in default are absent.
    public var origins: [String: ConfigurationOrigin]
    /// The file that was read, if any.
    public var file: String?

    public func origin(of key: ConfigurationKey) -> ConfigurationOrigin { origins[key.path] ?? .builtIn }
}

/// Reads the configuration: built-in defaults < file < environment (`ACSGW_…`) < command-line flags.
///
/// The file is YAML, read with Yams (libyaml) as a node tree so every value keeps its line; unknown
/// sections and keys are errors, so a typo cannot silently fall back to a default. Secrets are refused
/// in the file and in `ACSGW_…` variables: they come from `$CREDENTIALS_DIRECTORY`, a named file, or the
/// environment variables the ACS client reads (`ACS_CONNECTION_STRING`, `AZURE_CLIENT_SECRET`).
public enum ConfigurationLoader {
    /// Read when no `--config` is given and the file exists (the packaged location).
    public static let defaultPath = "/etc/acs-smtp-gateway/gateway.conf"
    /// Names the configuration file when `--config` is not given.
    public static let fileVariable = "ACSGW_CONFIG"
    /// Larger than any sensible configuration; a bigger file is a mistake (a log named by accident).
    static let maxFileSize = 1 << 20

    /// The file to read: `--config`, else `$ACSGW_CONFIG`, else ``defaultPath`` when it exists.
    /// `none` (or an empty name) reads no file.
    public static func filePath(flag: String?, environment: [String: String]) -> String? {
        let named = flag ?? environment[fileVariable]
        if let named { return named.isEmpty || named == "none" ? nil : named }
        return FileManager.default.fileExists(atPath: defaultPath) ? defaultPath : nil
    }

    /// Merges the layers and validates the result; throws every problem found, not just the first.
    public static func load(
        file: String?, environment: [String: String], flags: [(flag: String, values: [String])] = [],
        crossKeyChecks: Bool = true
    ) throws(ConfigurationError) -> LoadedConfiguration {
        var assignments: [Assignment] = []
        var problems: [String] = []
        if let file {
            do throws(ConfigurationError) {
                let (fromFile, fileProblems) = try fileAssignments(path: file)
                assignments += fromFile
                problems += fileProblems
            } catch {
                problems += error.problems
            }
        }
        let (fromEnvironment, environmentProblems) = environmentAssignments(environment)
        assignments += fromEnvironment
        problems += environmentProblems
        for (flag, values) in flags {
            guard let key = ConfigurationSchema.key(flag: flag) else {
                problems.append("--\(flag): not a configuration flag")
                continue
            }
            assignments.append(Assignment(key: key, values: values, origin: .flag(key.flagName)))
        }

        var settings = GatewaySettings()
        var origins: [String: ConfigurationOrigin] = [:]
        var listenEmptied = false
        for assignment in assignments {
            let key = assignment.key
            if assignment.values.isEmpty {
                key.reset(&settings)
                listenEmptied = listenEmptied || key.path == "smtp.listen"
            } else if !key.isList && assignment.values.count > 1 {
                problems.append("\(assignment.location)\(key.path): expected \(key.expected), not a list")
                continue
            } else if let bad = key.assign(&settings, assignment.values) {
                if SecretRedaction.looksSecret(bad) {
                    problems.append(
                        "\(assignment.location)\(key.path): expected \(key.expected), got \(SecretRedaction.placeholder); "
                            + "a secret goes in a file named by a *_file key, a systemd credential or the environment")
                } else {
                    problems.append(
                        "\(assignment.location)\(key.path): expected \(key.expected), got \(EscapedText.doubleQuoted(SecretRedaction.maskingURLPassword(bad)))"
                    )
                }
                continue
            }
            origins[key.path] = assignment.origin
        }
        if !settings.listeners.isEmpty && (origins["smtp.listen"] == nil || listenEmptied) {
            // Listeners given and smtp.listen left alone (or emptied, as check-config prints it then): its
            // built-in loopback listener is not wanted on top.
            settings.listen = []
        }
        let loaded = LoadedConfiguration(settings: settings, origins: origins, file: file)
        if crossKeyChecks { problems += ConfigurationValidation.problems(in: loaded, environment: environment) }
        guard problems.isEmpty else { throw ConfigurationError(problems) }
        return loaded
    }

    // MARK: Layers

    struct Assignment {
        var key: ConfigurationKey
        /// Empty: back to the built-in default.
        var values: [String]
        var origin: ConfigurationOrigin

        /// The prefix of an error message: `FILE:LINE: `, `environment ACSGW_X: `, `--flag: `.
        var location: String {
            switch origin {
            case .builtIn: ""
            case .file(let path, let line): "\(path):\(line): "
            case .environment(let variable): "environment \(variable): "
            case .flag(let flag): "\(flag): "
            }
        }
    }

    /// The file's assignments and its structural problems (unknown keys…); unreadable or unparsable files throw.
    static func fileAssignments(path: String) throws(ConfigurationError) -> ([Assignment], [String]) {
        let text: String
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            if let type = attributes[.type] as? FileAttributeType, type != .typeRegular {
                throw ConfigurationError(["\(path): not a regular file (a configuration file is read whole, once)"])
            }
            if let size = attributes[.size] as? Int, size > maxFileSize {
                throw ConfigurationError(["\(path): \(size) octets; a configuration file is at most \(maxFileSize)"])
            }
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let decoded = String(data: data, encoding: .utf8) else {
                throw ConfigurationError(["\(path): not UTF-8 text"])
            }
            text = decoded
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(["\(path): cannot read the configuration file: \(Self.reason(error))"])
        }
        return try assignments(yaml: text, path: path)
    }

    /// The assignments a YAML document makes, each with its line, and the problems of its structure.
    static func assignments(yaml text: String, path: String) throws(ConfigurationError) -> ([Assignment], [String]) {
        // Anchors and aliases are refused before libyaml sees them: the configuration never needs them, and
        // an alias "bomb" (a few hundred octets expanding to 10^8 nodes) would cost minutes of CPU, during a
        // reload on the daemon's lifecycle queue
        // (`ConfigurationTests.anchorsAndAliasesAreRefusedBeforeParsing`).
        if let line = firstAnchorOrAlias(in: text) {
            throw ConfigurationError([
                "\(path):\(line): YAML anchors and aliases (&name, *name) are not supported in the configuration "
                    + "file; write the value out (quote it if it starts with * or &)"
            ])
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigurationError([syntaxError(error, path: path)])
        } catch {
            throw ConfigurationError(["\(path): \(error)"])
        }
        guard let root else { return ([], []) }  // empty, or only comments
        guard let sections = root.mapping else {
            throw ConfigurationError([
                "\(path):\(line(root)): expected sections (\(ConfigurationSchema.sections.map { "\($0):" }.joined(separator: ", "))) "
                    + "at the top level"
            ])
        }
        var assignments: [Assignment] = []
        var problems: [String] = []
        for (sectionNode, body) in sections {
            let here = "\(path):\(line(sectionNode)): "
            guard let section = sectionNode.scalar?.string else {
                problems.append("\(here)a section name must be plain text")
                continue
            }
            guard ConfigurationSchema.sections.contains(section) else {
                problems.append(here + unknownSection(section))
                continue
            }
            if body.scalar?.isNull == true { continue }  // `acs:` with every key commented out
            if let key = ConfigurationSchema.key(section: section, name: ""), let entries = body.mapping {
                let (items, entryProblems) = wholeSectionItems(entries, key: key, path: path)
                problems += entryProblems
                if entryProblems.isEmpty {
                    assignments.append(
                        Assignment(key: key, values: items, origin: .file(path: path, line: line(sectionNode))))
                }
                continue
            }
            guard let keys = body.mapping else {
                problems.append("\(here)\(section): expected the section's keys, indented below it (key: value)")
                continue
            }
            for (keyNode, value) in keys {
                let here = "\(path):\(line(keyNode)): "
                guard let name = keyNode.scalar?.string else {
                    problems.append("\(here)\(section): a key name must be plain text")
                    continue
                }
                guard let key = ConfigurationSchema.key(section: section, name: name) else {
                    problems.append(here + unknownKey(section: section, name: name))
                    continue
                }
                switch value {
                case .scalar(let scalar):
                    let values = scalar.isNull ? [] : [scalar.string.trimmingCharacters(in: .whitespaces)]
                    assignments.append(
                        Assignment(key: key, values: values, origin: .file(path: path, line: line(keyNode))))
                case .sequence(let sequence):
                    guard key.isList else {
                        problems.append("\(here)\(key.path): expected \(key.expected), not a list")
                        continue
                    }
                    var items: [String] = []
                    let problemsBefore = problems.count
                    for item in sequence {
                        if let fields = key.mappingFields, let mapping = item.mapping {
                            switch mappingItem(mapping, fields: fields) {
                            case .success(let text): items.append(text)
                            case .failure(let problem):
                                problems.append("\(path):\(line(item)): \(key.path): \(problem.text)")
                            }
                            continue
                        }
                        guard let scalar = item.scalar, !scalar.isNull else {
                            problems.append(
                                "\(path):\(line(item)): \(key.path): expected \(key.expected); each item a single value"
                            )
                            continue
                        }
                        items.append(scalar.string.trimmingCharacters(in: .whitespaces))
                    }
                    if problems.count > problemsBefore { continue }
                    if items.isEmpty {
                        assignments.append(
                            Assignment(key: key, values: [], origin: .file(path: path, line: line(keyNode))))
                        // An explicit empty list is "none", which for every list key is also the default
                        // except smtp.listen, which must not be empty.
                        let listenersToo = keys.contains { $0.key.scalar?.string == "listeners" }
                        if key.path == "smtp.listen" && !listenersToo {
                            problems.append("\(here)smtp.listen: expected at least one address (or socket activation)")
                        }
                    } else {
                        assignments.append(
                            Assignment(key: key, values: items, origin: .file(path: path, line: line(keyNode))))
                    }
                case .mapping:
                    problems.append(
                        "\(here)\(key.path): expected \(key.expected), not a mapping (check the indentation)")
                case .alias:  // refused before composing (firstAnchorOrAlias)
                    problems.append("\(here)\(key.path): YAML aliases are not supported")
                }
            }
        }
        return (assignments, problems)
    }

    struct Problem: Error { var text: String }

    /// The entries of a section that is one key (`aliases:`), as its `NAME=VALUE` items; each entry that does not
    /// parse is a problem at its own line.
    static func wholeSectionItems(
        _ entries: Node.Mapping, key: ConfigurationKey, path: String
    ) -> ([String], [String]) {
        var items: [String] = []
        var problems: [String] = []
        for (nameNode, valueNode) in entries {
            let here = "\(path):\(line(nameNode)): \(key.path): "
            guard let name = nameNode.scalar?.string, let value = valueNode.scalar, !value.isNull else {
                problems.append(here + "expected \(key.expected), one per line")
                continue
            }
            let item =
                "\(name.trimmingCharacters(in: .whitespaces))=\(value.string.trimmingCharacters(in: .whitespaces))"
            var scratch = GatewaySettings()
            if key.assign(&scratch, [item]) != nil {
                problems.append(
                    here + "expected \(key.expected), got \(EscapedText.doubleQuoted("\(name): \(value.string)"))")
                continue
            }
            items.append(item)
        }
        return (items, problems)
    }

    /// One mapping item of a list such as `smtp.listeners`, as the `VALUE field=value …` text its parser reads.
    static func mappingItem(_ mapping: Node.Mapping, fields: [String]) -> Result<String, Problem> {
        var parts: [String] = []
        for (fieldNode, valueNode) in mapping {
            guard let field = fieldNode.scalar?.string, fields.contains(field) else {
                let name = fieldNode.scalar?.string ?? "?"
                let suggestion = closest(name, among: fields).map { "; did you mean \($0)?" } ?? ""
                return .failure(
                    Problem(text: "unknown field \(name)\(suggestion) (takes \(fields.joined(separator: ", ")))"))
            }
            guard let value = valueNode.scalar, !value.isNull,
                !value.string.contains(where: { $0 == " " || $0 == "\t" || $0 == "=" })
            else {
                return .failure(Problem(text: "\(field): expected a single value without spaces"))
            }
            parts.append("\(field)=\(value.string.trimmingCharacters(in: .whitespaces))")
        }
        return .success(parts.joined(separator: " "))
    }

    static func environmentAssignments(_ environment: [String: String]) -> ([Assignment], [String]) {
        var assignments: [Assignment] = []
        var problems: [String] = []
        for (variable, value) in environment.sorted(by: { $0.key < $1.key })
        where variable.hasPrefix("ACSGW_") && variable != fileVariable {
            guard let key = ConfigurationSchema.key(environmentVariable: variable) else {
                let name = variable.dropFirst("ACSGW_".count).lowercased()
                if ConfigurationSchema.secretKeys.keys.contains(where: { name.hasSuffix($0) }) {
                    problems.append(
                        "environment \(variable): secrets are not configuration: use ACS_CONNECTION_STRING, "
                            + "ACS_ACCESS_KEY or AZURE_CLIENT_SECRET, a file named by a *_FILE key, or a systemd credential"
                    )
                } else {
                    let suggestion =
                        closest(name, among: ConfigurationSchema.keys.map { "\($0.section)_\($0.name)" })
                        .map { " (did you mean ACSGW_\($0.uppercased())?)" } ?? ""
                    problems.append("environment \(variable): not a configuration variable\(suggestion)")
                }
                continue
            }
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            let values: [String] =
                key.isList
                ? trimmed.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                : trimmed.isEmpty ? [] : [trimmed]
            assignments.append(Assignment(key: key, values: values, origin: .environment(variable: variable)))
        }
        return (assignments, problems)
    }

    // MARK: Messages

    static func unknownSection(_ section: String) -> String {
        if let key = ConfigurationSchema.keys.first(where: { $0.name == section }) {
            return "\(section): not a section; did you mean \(key.path) (\(key.name): inside \(key.section):)?"
        }
        let suggestion = closest(section, among: ConfigurationSchema.sections).map { "; did you mean \($0)?" } ?? ""
        return
            "\(section): unknown section\(suggestion) (sections: \(ConfigurationSchema.sections.joined(separator: ", ")))"
    }

    static func unknownKey(section: String, name: String) -> String {
        if let fileKey = ConfigurationSchema.secretKeys[name.lowercased()] {
            return "\(section).\(name): secrets are never read from the configuration file (it is not secret); "
                + "give a file with acs.\(fileKey), a systemd credential (LoadCredential=), or the environment"
        }
        if let elsewhere = ConfigurationSchema.keys.first(where: { $0.name == name }) {
            return
                "\(section).\(name): unknown key in \(section):; it belongs in \(elsewhere.section): (\(elsewhere.path))"
        }
        let names = ConfigurationSchema.keys.filter { $0.section == section }.map(\.name)
        let suggestion = closest(name, among: names).map { "; did you mean \($0)?" } ?? ""
        return "\(section).\(name): unknown key\(suggestion) (\(section): takes \(names.joined(separator: ", ")))"
    }

    static func syntaxError(_ error: YamlError, path: String) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let while_ = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return "\(path):\(mark.line):\(mark.column): not valid YAML: \(problem)\(while_)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "\(path):\(context.mark.line): \(duplicates.joined(separator: ", ")) given twice in the same section"
        case .reader(let problem, _, _, _):
            return "\(path): not valid YAML text: \(problem)"
        default:
            return "\(path): not valid YAML: \(error)"
        }
    }

    static func line(_ node: Node) -> Int { node.mark?.line ?? 0 }

    /// The line of the first `&anchor` or `*alias` that starts a YAML node (after indentation, `- `, `: `,
    /// `? `, `[`, `{` or `,`), outside quotes and comments; nil when there is none.
    static func firstAnchorOrAlias(in text: String) -> Int? {
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var quote: Character?
            var escaped = false
            var nodeStart = true  // at the start of the line, after the indentation
            var previous: Character = " "
            scan: for character in line {
                defer { previous = character }
                if let open = quote {
                    if escaped {
                        escaped = false
                    } else if open == "\"" && character == "\\" {
                        escaped = true
                    } else if character == open {
                        quote = nil
                    }
                    continue
                }
                if character == "#" && (previous == " " || previous == "\t" || nodeStart) { break scan }
                switch character {
                case "\"", "'":
                    if nodeStart { quote = character }
                    nodeStart = false
                case "&", "*":
                    if nodeStart { return index + 1 }
                case " ", "\t", "\r":
                    if "-:?,".contains(previous) { nodeStart = true }
                case "[", "{", ",":
                    nodeStart = true
                default:
                    nodeStart = false
                }
            }
        }
        return nil
    }

    static func reason(_ error: Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain
        {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if nsError.domain == NSCocoaErrorDomain,
            nsError.code == NSFileReadNoSuchFileError || nsError.code == NSFileNoSuchFileError
        {
            return "no such file"
        }
        return nsError.localizedDescription
    }

    /// The candidate within edit distance 2 of `word`, for "did you mean".
    static func closest(_ word: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0)) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension Node.Scalar {
    /// `key:`, `key: ~` or `key: null` (plain, not quoted).
    var isNull: Bool { style == .plain && ["", "~", "null", "Null", "NULL"].contains(string) }
}
