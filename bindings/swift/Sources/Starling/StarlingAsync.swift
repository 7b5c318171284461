// Hand-written Swift concurrency helpers over the generated bindings
// (Starling.swift).
import Foundation

/// Forwards listener calls into an `AsyncStream` continuation.
private final class StreamListener: NodeEventListener, @unchecked Sendable {
    private let continuation: AsyncStream<NodeEvent>.Continuation

    init(_ continuation: AsyncStream<NodeEvent>.Continuation) {
        self.continuation = continuation
    }

    func onEvent(event: NodeEvent) throws {
        continuation.yield(event)
    }
}

public extension StarlingNode {
    /// The node's events as an `AsyncStream`. Iterating subscribes; ending
    /// the iteration (or cancelling its task) cancels the subscription.
    ///
    /// ```swift
    /// for await event in node.events() {
    ///     switch event {
    ///     case .entryAdded: await refreshTimeline()
    ///     case .eventsMissed: await reloadEverything()
    ///     case .peerConnected, .peerDisconnected: await refreshPeers()
    ///     case let .syncProgress(_, received, remaining): showProgress(received, remaining)
    ///     @unknown default: break // kinds added by later releases
    ///     }
    /// }
    /// ```
    ///
    /// Up to `bufferSize` events are kept for a slow consumer; beyond that
    /// the oldest are dropped, so reload views after a gap.
    func events(bufferSize: Int = 64) -> AsyncStream<NodeEvent> {
        AsyncStream(bufferingPolicy: .bufferingNewest(bufferSize)) { continuation in
            do {
                let subscription = try self.subscribe(listener: StreamListener(continuation))
                continuation.onTermination = { _ in subscription.cancel() }
            } catch {
                continuation.finish()
            }
        }
    }
}

/// An `AtRestKeyProvider` holding the key in memory, for tests and tools.
/// Apps should keep the key in the Keychain instead (see the README).
public final class InMemoryAtRestKeyProvider: AtRestKeyProvider, @unchecked Sendable {
    private let key: Data

    public init(key: Data? = nil) throws {
        self.key = try key ?? generateAtRestKey()
    }

    public func atRestKey() throws -> Data {
        key
    }
}
