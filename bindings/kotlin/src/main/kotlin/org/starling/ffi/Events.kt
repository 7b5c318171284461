// Hand-written coroutine helpers over the generated bindings (starling.kt).
package org.starling.ffi

import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow

/**
 * The node's events as a cold [Flow]: collecting it subscribes, cancelling
 * the collecting coroutine cancels the subscription and releases it.
 *
 * Events are buffered ([capacity], default 64). When the collector is slower
 * than the node, the library's delivery waits for buffer space; if it falls
 * far behind, a [NodeEvent.EventsMissed] tells it to reload its views.
 *
 * ```kotlin
 * lifecycleScope.launch {
 *     node.events().collect { event ->
 *         when (event) {
 *             is NodeEvent.EntryAdded -> refreshTimeline()
 *             is NodeEvent.EventsMissed -> reloadEverything()
 *             is NodeEvent.PeerConnected, is NodeEvent.PeerDisconnected -> refreshPeers()
 *             is NodeEvent.SyncProgress -> showProgress(event.received, event.remaining)
 *             else -> {} // kinds added by later releases
 *         }
 *     }
 * }
 * ```
 */
fun StarlingNode.events(capacity: Int = 64): Flow<NodeEvent> =
    callbackFlow {
        val subscription =
            subscribe(
                object : NodeEventListener {
                    override fun onEvent(event: NodeEvent) {
                        // Blocks the library's delivery thread (never the
                        // caller's) while the buffer is full; fails quietly
                        // once the flow is closed.
                        trySendBlocking(event)
                    }
                },
            )
        awaitClose {
            subscription.cancel()
            subscription.close()
        }
    }.buffer(if (capacity <= 0) Channel.RENDEZVOUS else capacity)

/**
 * An [AtRestKeyProvider] holding the key in memory, for tests and tools.
 * Apps should use a provider backed by the Android Keystore or the iOS
 * Keychain instead (see the README).
 */
class InMemoryAtRestKeyProvider(
    key: ByteArray = generateAtRestKey(),
) : AtRestKeyProvider {
    private val key = key.copyOf()

    override fun atRestKey(): ByteArray = key.copyOf()
}
