import Foundation
import Yams

@testable import GatewayConfiguration

/// The configuration loader on a fuzzed file (ConfigurationLoader.swift and the schema, settings, validation
/// and rendering files are the gateway's own, linked in with the real Yams).
///
/// Invariants: `load` returns settings or throws a ConfigurationError with at least one problem, and never
/// traps (libFuzzer's -timeout=1 bounds its time); a file it accepts has no anchor or alias anywhere in its
/// node tree; what `check-config` prints for accepted settings (ConfigurationRendering) loads again to the same
/// values.
func fuzzConfiguration(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = Data(bytes: data, count: size)
    guard let loaded = load(input) else { return 0 }

    // Accepted: the file had no anchor or alias (the loader refuses them before composing).
    if let text = String(data: input, encoding: .utf8), let root = try? Yams.compose(yaml: text) {
        precondition(!hasAnchorOrAlias(root), "a file with an anchor or alias was accepted")
    }

    // check-config's rendering is a configuration file with the same values.
    let rendered = ConfigurationRendering.yaml(loaded)
    guard let again = load(Data(rendered.utf8)) else {
        preconditionFailure("check-config output does not load:\n\(rendered)")
    }
    for key in ConfigurationSchema.keys {
        let before = key.values(in: loaded.settings)
        let after = key.values(in: again.settings)
        precondition(before == after, "\(key.path): \(before) rendered and read back as \(after)")
    }
    return 0
}

/// One file per process, rewritten for each input (the loader reads a path).
private let path = FileManager.default.temporaryDirectory
    .appendingPathComponent("fuzz-configuration-\(getpid()).conf").path

private func load(_ contents: Data) -> LoadedConfiguration? {
    guard FileManager.default.createFile(atPath: path, contents: contents) else {
        preconditionFailure("cannot write \(path)")
    }
    do {
        return try ConfigurationLoader.load(file: path, environment: [:])
    } catch {
        precondition(!error.problems.isEmpty, "a ConfigurationError without a problem")
        precondition(error.problems.allSatisfy { !$0.isEmpty }, "an empty problem: \(error.problems)")
        return nil
    }
}

private func hasAnchorOrAlias(_ node: Node) -> Bool {
    if node.anchor != nil { return true }
    switch node {
    case .alias: return true
    case .scalar: return false
    case .sequence(let sequence): return sequence.contains(where: hasAnchorOrAlias)
    case .mapping(let mapping): return mapping.contains { hasAnchorOrAlias($0.key) || hasAnchorOrAlias($0.value) }
    }
}
