// XCTest suite mirroring the Kotlin JUnit tests (bindings/kotlin/src/test).
// Runs on macOS with `swift test` once `cargo run -p xtask -- ios` (plus a
// macOS slice, see bindings/README.md) has produced StarlingFFI.xcframework.
// Not run in CI: the CI machine has no Swift toolchain.
import Foundation
import XCTest

@testable import Starling

/// A key provider a test can lock.
final class SwitchableKeys: AtRestKeyProvider, @unchecked Sendable {
    private let key: Data
    private let lock = NSLock()
    private var _locked = false
    var locked: Bool {
        get { lock.withLock { _locked } }
        set { lock.withLock { _locked = newValue } }
    }

    init() throws { key = try generateAtRestKey() }

    func atRestKey() throws -> Data {
        if locked { throw StarlingError.Locked(detail: "device is locked (test)") }
        return key
    }
}

final class Collector: NodeEventListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _events: [NodeEvent] = []
    var events: [NodeEvent] { lock.withLock { _events } }
    func onEvent(event: NodeEvent) throws { lock.withLock { _events.append(event) } }
}

final class StarlingTests: XCTestCase {
    var tmp: URL!
    var nodes: [StarlingNode] = []

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        nodes.forEach { $0.shutdown() }
        nodes.removeAll()
        try await eventually("all nodes and networks released", timeout: 15) {
            diagnostics().liveNodes == 0 && diagnostics().liveNetworks == 0
        }
        try? FileManager.default.removeItem(at: tmp)
    }

    func node(_ name: String, keys: AtRestKeyProvider? = nil) async throws -> StarlingNode {
        let n = try await StarlingNode.open(
            config: NodeConfig(dataDir: tmp.appendingPathComponent(name).path),
            keys: try keys ?? InMemoryAtRestKeyProvider())
        nodes.append(n)
        return n
    }

    func alice() async throws -> StarlingNode {
        let a = try await node("alice")
        _ = try await a.createIdentity(name: "alice")
        return a
    }

    func eventually(_ what: String, timeout: TimeInterval = 5, _ check: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !check() {
            if Date() > deadline { XCTFail("timed out waiting for: \(what)"); return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    func assertThrows<T>(
        _ expected: (StarlingError) -> Bool, file: StaticString = #filePath, line: UInt = #line,
        _ body: () async throws -> T
    ) async {
        do {
            _ = try await body()
            XCTFail("no error thrown", file: file, line: line)
        } catch let e as StarlingError {
            XCTAssertTrue(expected(e), "unexpected error \(e)", file: file, line: line)
        } catch {
            XCTFail("not a StarlingError: \(error)", file: file, line: line)
        }
    }

    func testCreateShowAndRestoreIdentity() async throws {
        let a = try await node("a")
        let hasIdentity = try await a.hasIdentity()
        XCTAssertFalse(hasIdentity)
        let created = try await a.createIdentity(name: "alice")
        XCTAssertTrue(created.authorId.hasPrefix("stl1"))
        XCTAssertEqual(created.recoveryPhrase.split(separator: " ").count, 24)
        let me = try await a.authorId()
        XCTAssertEqual(me, created.authorId)
        let phrase = try await a.recoveryPhrase()
        XCTAssertEqual(phrase, created.recoveryPhrase)

        let b = try await node("b")
        let restored = try await b.restoreIdentity(phrase: created.recoveryPhrase)
        XCTAssertEqual(restored, created.authorId)
        let other = try await node("c").createIdentity(name: nil)
        await assertThrows({ if case .IdentityExists = $0 { true } else { false } }) {
            try await b.restoreIdentity(phrase: other.recoveryPhrase)
        }
    }

    func testPostAndPageThroughTheTimeline() async throws {
        let a = try await alice()
        var ids: [String] = []
        // Lists are ordered by (timestamp ms, id): space the posts out.
        for i in 1...5 {
            try await Task.sleep(nanoseconds: 3_000_000)
            ids.append(try await a.post(text: "post number \(i)"))
        }
        let first = try await a.timeline(limit: 2)
        XCTAssertEqual(first.items.map(\.text), ["post number 5", "post number 4"])
        let second = try await a.timeline(limit: 2, before: first.nextCursor)
        XCTAssertEqual(second.items.map(\.text), ["post number 3", "post number 2"])
        let third = try await a.timeline(limit: 2, before: second.nextCursor)
        XCTAssertEqual(third.items.map(\.id), [ids[0]])
        XCTAssertNil(third.nextCursor)
    }

    func testRepliesFormAThread() async throws {
        let a = try await alice()
        let root = try await a.post(text: "what is a starling?")
        try await Task.sleep(nanoseconds: 3_000_000)
        let r1 = try await a.reply(parent: root, text: "a bird")
        try await Task.sleep(nanoseconds: 3_000_000)
        let r2 = try await a.post(text: "a murmuration of them", replyTo: r1)
        let thread = try await a.thread(root: root)
        XCTAssertEqual(thread.map(\.id), [root, r1, r2])
        XCTAssertEqual(thread[2].root, root)
    }

    func testReactFollowBlockSearchDelete() async throws {
        let a = try await alice()
        let me = try await a.authorId()
        let p = try await a.post(text: "Hello Starling world")
        _ = try await a.react(target: p, emoji: "👍")
        let reactions = try await a.reactions(entryId: p)
        XCTAssertEqual(reactions, [ReactionCount(emoji: "👍", count: 1)])

        let bob = try await node("bob").createIdentity(name: "bob").authorId
        _ = try await a.follow(authorId: bob)
        let follows = try await a.follows(authorId: me)
        XCTAssertEqual(follows, [bob])
        _ = try await a.block(authorId: bob)
        _ = try await a.unblock(authorId: bob)

        let hits = try await a.search(query: "starling")
        XCTAssertEqual(hits.items.map(\.id), [p])
        _ = try await a.delete(target: p)
        let after = try await a.search(query: "starling")
        XCTAssertTrue(after.items.isEmpty)
        let deleted = try await a.timeline().items.first { $0.id == p }
        XCTAssertEqual(deleted?.deleted, true)
        XCTAssertNil(deleted?.text)
    }

    func testTypedErrors() async throws {
        let a = try await node("a")
        await assertThrows({ if case .NoIdentity = $0 { true } else { false } }) { try await a.timeline() }
        _ = try await a.createIdentity(name: nil)
        await assertThrows({ if case .InvalidId = $0 { true } else { false } }) {
            try await a.react(target: "not-an-id", emoji: "x")
        }
        await assertThrows({ if case .InvalidInput = $0 { true } else { false } }) {
            try await a.timeline(limit: 0)
        }
        let b = try await node("b")
        await assertThrows({ if case .InvalidInput = $0 { true } else { false } }) {
            try await b.restoreIdentity(phrase: "not a phrase at all")
        }
        a.shutdown()
        await assertThrows({ if case .Closed = $0 { true } else { false } }) { try await a.post(text: "late") }
    }

    func testLockedKeyProvider() async throws {
        let keys = try SwitchableKeys()
        keys.locked = true
        let a = try await node("a", keys: keys)
        await assertThrows({ if case .Locked = $0 { true } else { false } }) {
            try await a.createIdentity(name: nil)
        }
        keys.locked = false
        _ = try await a.createIdentity(name: nil)
    }

    func testEventsAsAsyncStream() async throws {
        let a = try await alice()
        let stream = a.events()
        let received = Task { () -> [String] in
            var ids: [String] = []
            for await event in stream {
                if case let .entryAdded(id, _, _, own) = event, own { ids.append(id) }
                if ids.count == 2 { break }
            }
            return ids
        }
        try await eventually("subscribed") { diagnostics().liveSubscriptions == 1 }
        let p1 = try await a.post(text: "one")
        let p2 = try await a.post(text: "two")
        let ids = await received.value
        XCTAssertEqual(ids, [p1, p2])
        try await eventually("subscription released") { diagnostics().liveSubscriptions == 0 }
    }

    func testListenerStopsOnCancel() async throws {
        let a = try await alice()
        let collector = Collector()
        let sub = try a.subscribe(listener: collector)
        _ = try await a.post(text: "seen")
        try await eventually("one event") { collector.events.count == 1 }
        sub.cancel()
        _ = try await a.post(text: "not seen")
        try await eventually("released") { diagnostics().liveSubscriptions == 0 }
        XCTAssertEqual(collector.events.count, 1)
    }
}
