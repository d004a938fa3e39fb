import Foundation
import Testing

@testable import Gateway

/// The delivery scheduler's agenda: earliest due first, arrival order (the id) among equals.
struct DueOrderTests {
    private func drain(_ order: inout DueOrder) -> [(due: Date, id: String)] {
        var out: [(due: Date, id: String)] = []
        while let first = order.first {
            out.append(first)
            order.removeFirst()
        }
        return out
    }

    @Test func itemsComeOffEarliestFirstWhateverTheOrderTheyWentIn() {
        var generator = SystemRandomNumberGenerator()
        var order = DueOrder()
        var expected: [(due: Date, id: String)] = []
        for index in 0..<2_000 {
            let due = Date(timeIntervalSince1970: Double(Int.random(in: 0..<300, using: &generator)))
            let id = String(format: "%05d", index)
            order.insert(due, id)
            expected.append((due, id))
        }
        #expect(order.count == 2_000)
        expected.sort { $0.due != $1.due ? $0.due < $1.due : $0.id < $1.id }
        let drained = drain(&order)
        #expect(drained.map(\.id) == expected.map(\.id))
        #expect(order.count == 0 && order.first == nil)
    }

    @Test func messagesDueTogetherGoInArrivalOrderAndDuplicatesAreKept() {
        let now = Date(timeIntervalSince1970: 1_000)
        var order = DueOrder()
        for id in ["c", "a", "b", "a"] { order.insert(now, id) }
        order.insert(now.addingTimeInterval(-1), "z")
        #expect(drain(&order).map(\.id) == ["z", "a", "a", "b", "c"])
    }

    @Test func removingFromAnEmptyAgendaDoesNothing() {
        var order = DueOrder()
        order.removeFirst()
        #expect(order.count == 0)
        order.insert(Date(), "x")
        order.removeFirst()
        order.removeFirst()
        #expect(order.first == nil)
    }
}
