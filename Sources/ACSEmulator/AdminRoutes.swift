import Foundation
import Hummingbird

/// The test-control routes under `/admin/` (no authentication: the emulator is meant for loopback):
///
/// | route | effect |
/// |---|---|
/// | `GET /admin/messages` | JSON array of ``RecordedMessage``, oldest first |
/// | `DELETE /admin/messages` | forgets them (204) |
/// | `GET /admin/requests` | `{"send":{"total":N,"statuses":{"202":N},"dropped":N,"replays":N,"httpVersions":{"2":N},…},…}` |
/// | `DELETE /admin/requests` | resets the counts (204) |
/// | `GET /admin/faults` | the faults not used up, `count` = what is left |
/// | `POST /admin/faults` | appends a ``Fault`` or a JSON array of them (200, the active list) |
/// | `DELETE /admin/faults` | removes all faults (204) |
/// | `GET /admin/quota` | the ``SendQuota`` and the sends counted: `{…,"used":{"minute":N,"hour":N}}` |
/// | `POST /admin/quota` | changes members of the ``SendQuota`` (`null` turns a limit off; 200, the new state) |
/// | `POST /admin/reset` | forgets operations, messages, faults, counts and quota history (204) |
struct AdminRoutes: Sendable {
    let store: EmulatorStore

    /// Larger than any sensible fault list, small enough that a mistaken upload cannot exhaust memory.
    static let maxAdminBodyBytes = 1 << 20

    func respond(method: HTTPRequest.Method, path: String, request: Request) async -> Response {
        switch (method, path) {
        case (.get, "/admin/messages"):
            let messages = await store.recordedMessages()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Self.json(200, (try? encoder.encode(messages)).map(Array.init) ?? Array("[]".utf8))
        case (.delete, "/admin/messages"):
            await store.clearMessages()
            return Response(status: .noContent)
        case (.get, "/admin/requests"):
            return Self.json(200, await store.requestCounts().serialized())
        case (.delete, "/admin/requests"):
            await store.clearRequestCounts()
            return Response(status: .noContent)
        case (.get, "/admin/faults"):
            return Self.json(200, Self.encode(await store.activeFaults()))
        case (.post, "/admin/faults"):
            return await addFaults(request)
        case (.delete, "/admin/faults"):
            await store.clearFaults()
            return Response(status: .noContent)
        case (.get, "/admin/quota"):
            return Self.json(200, await store.quotaState().serialized())
        case (.post, "/admin/quota"):
            return await updateQuota(request)
        case (.post, "/admin/reset"):
            await store.reset()
            return Response(status: .noContent)
        default:
            return Self.json(404, Array(#"{"error":{"code":"NotFound","message":"No such admin route."}}"#.utf8))
        }
    }

    private func addFaults(_ request: Request) async -> Response {
        guard let buffer = try? await request.body.collect(upTo: Self.maxAdminBodyBytes) else {
            return Self.problem("The fault list could not be read or is larger than 1 MiB.")
        }
        let data = Data(buffer.readableBytesView)
        let faults: [Fault]
        if let list = try? JSONDecoder().decode([Fault].self, from: data) {
            faults = list
        } else if let single = try? JSONDecoder().decode(Fault.self, from: data) {
            faults = [single]
        } else {
            return Self.problem("The body must be a fault object or a JSON array of them.")
        }
        if let (index, problem) = faults.enumerated().lazy.compactMap({ item in
            item.element.problem.map { (item.offset, $0) }
        })
        .first {
            return Self.problem("Fault \(index): \(problem).")
        }
        await store.addFaults(faults)
        return Self.json(200, Self.encode(await store.activeFaults()))
    }

    private func updateQuota(_ request: Request) async -> Response {
        guard let buffer = try? await request.body.collect(upTo: Self.maxAdminBodyBytes),
            let json = JSONValue(parsing: Array(buffer.readableBytesView))
        else {
            return Self.problem("The body must be a JSON object such as {\"perMinute\":30,\"minuteSeconds\":10}.")
        }
        switch await store.updateQuota(with: json) {
        case .success(let state): return Self.json(200, state.serialized())
        case .failure(let error): return Self.problem("Quota: \(error.message).")
        }
    }

    private static func encode(_ faults: [Fault]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(faults)).map(Array.init) ?? Array("[]".utf8)
    }

    private static func problem(_ message: String) -> Response {
        let body = JSONValue.object(["error": .object(["code": .string("BadRequest"), "message": .string(message)])])
        return json(400, body.serialized())
    }

    static func json(_ status: Int, _ body: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.contentLength] = String(body.count)
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
