// Networking, blobs and end-to-end messages: mirrors the Kotlin NetworkTest
// (bindings/kotlin/src/test/kotlin/org/starling/ffi/NetworkTest.kt). Two
// nodes in one process over real sockets on 127.0.0.1 only, mDNS off,
// bounded waits. Not run here (no Swift toolchain); see bindings/README.md.
import Foundation
import XCTest

@testable import Starling

extension StarlingTests {
    func loopback() -> NetworkConfig {
        NetworkConfig(listenAddresses: ["/ip4/127.0.0.1/tcp/0"], mdns: false, bootstrap: [], redialKnownPeers: false)
    }

    func started(_ name: String) async throws -> (StarlingNode, String) {
        let n = try await node(name)
        let id = try await n.createIdentity(name: name).authorId
        try await n.startNetwork(config: loopback())
        return (n, id)
    }

    func eventuallyAsync(_ what: String, timeout: TimeInterval = 30, _ check: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try await !check() {
            if Date() > deadline { XCTFail("timed out waiting for: \(what)"); return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// The first event matching `match`, or nil after `timeout` seconds.
    func firstEvent(
        _ node: StarlingNode, timeout: TimeInterval = 30, _ match: @escaping @Sendable (NodeEvent) -> Bool
    ) -> Task<NodeEvent?, Never> {
        let stream = node.events()
        let waiter = Task { () -> NodeEvent? in
            for await event in stream where match(event) { return event }
            return nil
        }
        Task {
            try? await Task.sleep(nanoseconds: UInt64(timeout * 1_000_000_000))
            waiter.cancel()
        }
        return waiter
    }

    func testTwoNodesSyncOverLoopback() async throws {
        let (a, aId) = try await started("a")
        let (b, bId) = try await started("b")
        let bPeer = try b.peerId()
        XCTAssertTrue(bPeer.hasPrefix("12D3Koo"))
        let bAddr = try b.listenAddresses()[0]
        XCTAssertTrue(bAddr.hasSuffix("/p2p/\(bPeer)"))
        _ = try await a.follow(authorId: bId)
        _ = try await b.follow(authorId: aId)
        let fromA = try await a.post(text: "hello from a")
        let atB = firstEvent(b) { if case let .entryAdded(id, _, _, _) = $0 { id == fromA } else { false } }
        let connected = firstEvent(a) { if case .peerConnected = $0 { true } else { false } }
        try await eventually("subscribed") { diagnostics().liveSubscriptions == 2 }

        let dialled = try await a.dial(multiaddr: bAddr)
        XCTAssertEqual(dialled, bPeer)
        guard case let .peerConnected(peer) = await connected.value else { return XCTFail("no PeerConnected") }
        XCTAssertEqual(peer, bPeer)
        guard case let .entryAdded(_, author, _, own) = await atB.value else { return XCTFail("no EntryAdded") }
        XCTAssertEqual(author, aId)
        XCTAssertFalse(own)
        let feed = try await b.feed(authorId: aId)
        XCTAssertEqual(feed.items.map(\.text), ["hello from a"])
        XCTAssertTrue(try a.peers().contains { $0.peerId == bPeer })
        try await eventuallyAsync("sync status names b") {
            try a.syncStatus().contains { $0.peerId == bPeer && $0.authorId == bId }
        }
        try await a.stopNetwork()
        XCTAssertFalse(a.isNetworkRunning())
        await assertThrows({ if case .NetworkNotRunning = $0 { true } else { false } }) { try a.peers() }
    }

    func testInviteConnectsAndFollows() async throws {
        let (a, aId) = try await started("a")
        let (b, bId) = try await started("b")
        let code = try await a.createInvite()
        let accepted = try await b.acceptInvite(code: code)
        XCTAssertEqual(accepted.inviterId, aId)
        let follows = try await b.follows(authorId: bId)
        XCTAssertTrue(follows.contains(aId))
        await assertThrows({ if case .InvalidInput = $0 { true } else { false } }) {
            try await b.acceptInvite(code: code)
        }
    }

    func testBlobAddedOnAFetchedByB() async throws {
        let (a, _) = try await started("a")
        let (b, _) = try await started("b")
        let bytes = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let ref = try await a.addBlob(bytes: bytes, mime: "image/jpeg")
        XCTAssertTrue(ref.id.hasPrefix("stlb1"))
        XCTAssertEqual(ref.size, 200_000)
        let fetched = firstEvent(b) { if case .blobFetched = $0 { true } else { false } }
        try await eventually("subscribed") { diagnostics().liveSubscriptions == 1 }
        _ = try await b.dial(multiaddr: try a.listenAddresses()[0])
        let got = try await b.fetchBlob(blobId: ref.id)
        XCTAssertEqual(got, bytes)
        let event = await fetched.value
        XCTAssertEqual(event, .blobFetched(blobId: ref.id, size: 200_000))
        let has = try await b.hasBlob(blobId: ref.id)
        XCTAssertTrue(has)
    }

    func testEncryptedDirectMessagesAndAGroup() async throws {
        let (a, aId) = try await started("a")
        let (b, bId) = try await started("b")
        _ = try await a.follow(authorId: bId)
        _ = try await b.follow(authorId: aId)
        _ = try await a.dial(multiaddr: try b.listenAddresses()[0])
        try await eventuallyAsync("a can message b") {
            do {
                try await a.sendDm(authorId: bId, text: "secret hello")
                return true
            } catch StarlingError.NoPrekeyBundle {
                return false
            }
        }
        try await eventuallyAsync("b reads a's message") {
            try await b.directMessages(authorId: aId).contains { $0.text == "secret hello" && !$0.outgoing }
        }
        try await b.sendDm(authorId: aId, text: "secret reply")
        try await eventuallyAsync("a reads the reply") {
            try await a.messages(conversation: .direct(authorId: bId)).contains { $0.text == "secret reply" }
        }
        let numberA = try await a.safetyNumber(authorId: bId)
        let numberB = try await b.safetyNumber(authorId: aId)
        XCTAssertEqual(numberA, numberB)

        let g = try await a.createGroup(name: "birds")
        try await a.addGroupMember(groupId: g, authorId: bId)
        let info = try await a.groupInfo(groupId: g)
        XCTAssertEqual(Set(info.members), [aId, bId])
        try await a.sendGroupMessage(groupId: g, text: "hello birds")
        try await eventuallyAsync("b reads the group message") {
            try await b.messages(conversation: .group(groupId: g)).contains { $0.text == "hello birds" }
        }
    }

    func testNetworkCallsOnAShutDownNodeGiveClosed() async throws {
        let (a, _) = try await started("a")
        await assertThrows({ if case .NetworkRunning = $0 { true } else { false } }) {
            try await a.startNetwork(config: self.loopback())
        }
        await assertThrows({ if case .Network = $0 { true } else { false } }) {
            try await a.dial(multiaddr: "/ip4/127.0.0.1/tcp/1")
        }
        let addr = try a.listenAddresses()[0]
        a.shutdown()
        await assertThrows({ if case .Closed = $0 { true } else { false } }) { try await a.dial(multiaddr: addr) }
        await assertThrows({ if case .Closed = $0 { true } else { false } }) { try a.peers() }
        await assertThrows({ if case .Closed = $0 { true } else { false } }) {
            try await a.fetchBlob(blobId: "stlb1qqqq")
        }
        try await eventually("network stopped", timeout: 15) { diagnostics().liveNetworks == 0 }
    }
}
